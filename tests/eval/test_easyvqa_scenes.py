"""eval.easyvqa_scenes: seeded scenes from easy-vqa's real images, questions by property, splits by source."""
import json
import os
import re

import numpy as np
import pytest

pytest.importorskip("easy_vqa")

from eval.easyvqa_scenes import (ANSWERS, COLOURS, SHAPES, EasyVQAScenesConfig, _colour, _pool, build_scene,
                                 build_scenes, load_sources, thumbnail_px, to_dataset)

POSITION_WORDS = re.compile(r"\b(left|right|top|bottom|corner|centre|center|middle|above|below|upper|lower|first|"
                            r"second|row|column)\b", re.IGNORECASE)
CFG = EasyVQAScenesConfig(num_train=4, num_validation=2, num_test=3)


@pytest.fixture(scope="module")
def scenes():
    return build_scenes(CFG)


def test_labels_agree_with_easy_vqa_own_answers():
    import easy_vqa

    base = os.path.join(os.path.dirname(easy_vqa.__file__), "data", "test")
    with open(os.path.join(base, "questions.json")) as f:
        rows = json.load(f)
    by_id = {s.image_id: s for s in load_sources("test")}
    checked = 0
    for text, answer, image_id in rows:
        src = by_id.get(image_id)
        if src is None:
            continue
        if text in ("what color is the shape?", "what is the color of the shape?"):
            assert src.colour == answer, (image_id, text, answer, src.colour)
            checked += 1
        elif text.startswith("what shape") or (text.startswith("what is the ") and answer in SHAPES):
            assert src.shape == answer, (image_id, text, answer, src.shape)
            checked += 1
    assert checked > 500
    assert len(by_id) > 800  # of easy-vqa's 1,000 test images (the rest have no shape-naming question)


def test_same_seed_same_scenes_prefix_and_other_seed_differs(scenes):
    again = build_scenes(EasyVQAScenesConfig(num_train=2, num_validation=1, num_test=1), ("train",))
    for a, b in zip(scenes[:2], again):
        assert np.array_equal(a.image, b.image) and a.questions == b.questions
    other = build_scene(EasyVQAScenesConfig(seed=1), "train", 0)
    assert not np.array_equal(other.image, scenes[0].image)


def test_splits_use_disjoint_source_images():
    train = {s.image_id for s in _pool(CFG, "train")}
    val = {s.image_id for s in _pool(CFG, "validation")}
    assert train and val and not (train & val)
    assert abs(len(val) / (len(train) + len(val)) - CFG.validation_fraction) < 0.01
    test_ids = {s.image_id for s in load_sources("test")}
    for split, pool in (("train", train), ("validation", val), ("test", test_ids)):
        for i in range(3):
            sc = build_scene(CFG, split, i)
            assert {it.source_id for it in sc.items} <= pool
            assert sc.split == split


def test_questions_name_a_unique_property_never_a_position(scenes):
    kinds = set()
    for sc in scenes:
        assert CFG.min_items <= len(sc.items) <= CFG.max_items
        colours = [it.colour for it in sc.items]
        shapes = [it.shape for it in sc.items]
        assert len(set(colours)) == len(colours)
        for q, a, target, kind in sc.questions:
            kinds.add(kind)
            assert not POSITION_WORDS.search(q), q
            assert a in ANSWERS
            named = [c for c in COLOURS if re.search(rf"\b{c}\b", q)] + [s for s in SHAPES if re.search(rf"\b{s}\b", q)]
            assert len(named) == 1, q
            item = [it for it in sc.items if named[0] in (it.colour, it.shape)]
            assert len(item) == 1, (q, sc.items)  # the property names exactly one item of the scene
            it = item[0]
            assert a == (it.shape if kind == "shape" else it.colour)
            assert target == [it.cell]
    assert kinds == {"shape", "colour"}


def test_items_sit_inside_their_target_cell_in_their_colour(scenes):
    cell = CFG.canvas // CFG.grid
    for sc in scenes:
        assert sc.image.shape == (CFG.canvas, CFG.canvas, 3) and sc.image.dtype == np.uint8
        for it in sc.items:
            x0, y0, x1, y1 = it.box
            row, col = divmod(it.cell, CFG.grid)
            assert col * cell <= x0 < x1 <= (col + 1) * cell and row * cell <= y0 < y1 <= (row + 1) * cell
            assert CFG.item_px[0] - 1 <= max(x1 - x0, y1 - y0) <= CFG.item_px[1] + 1
            h, w = y1 - y0, x1 - x0
            centre = sc.image[y0 + h // 3: y0 + 2 * h // 3 + 1, x0 + w // 3: x0 + 2 * w // 3 + 1]  # inside any of the shapes
            opaque = np.concatenate([centre, np.full(centre.shape[:2] + (1,), 255, np.uint8)], -1)
            assert _colour(opaque) == it.colour


def test_shapes_are_a_few_pixels_in_the_thumbnail_and_whole_in_a_top_level_cell():
    lo, hi = thumbnail_px(CFG, 64)  # the benchmark's 2 x 2-token global view: a 64-px look at the canvas
    assert hi <= 5.0
    assert CFG.item_px[0] * 160 / (CFG.canvas // CFG.grid) >= 36  # a 5 x 5-token region look: native pixels


def test_dataset_columns_and_loader_compatibility(scenes, tmp_path):
    ds = to_dataset(scenes)
    assert set(ds.column_names) == {"image", "question", "answer", "target_regions", "split", "scene_id", "kind"}
    assert len(ds) == sum(len(sc.questions) for sc in scenes)
    row = ds[0]
    assert row["image"].size == (CFG.canvas, CFG.canvas) and row["question"] == scenes[0].questions[0][0]
    assert row["target_regions"] == scenes[0].questions[0][2] and row["split"] == "train"
    assert set(ds["split"]) == {"train", "validation", "test"}
    from arrcoc.training.data import load_vqa_dataset

    ds.save_to_disk(str(tmp_path / "scenes"))
    loaded = load_vqa_dataset(str(tmp_path / "scenes"), target_column="target_regions")
    assert len(loaded) == len(ds) and loaded[0]["question"] == row["question"]


@pytest.mark.parametrize("kw, arg", [
    ({"num_train": -1}, "num_train"), ({"grid": 1}, "grid"), ({"canvas": 650}, "canvas"),
    ({"min_items": 0}, "min_items"), ({"max_items": 9}, "max_items"), ({"item_px": (40, 200)}, "item_px"),
    ({"item_px": 40}, "item_px"), ({"strokes": 2.5}, "strokes"), ({"validation_fraction": 1.5}, "validation_fraction"),
    ({"seed": -3}, "seed")])
def test_config_rejects_bad_values_by_name(kw, arg):
    with pytest.raises((TypeError, ValueError), match=arg.split("[")[0]):
        EasyVQAScenesConfig(**kw)


def test_bad_split_and_index():
    with pytest.raises(ValueError, match="split"):
        build_scene(CFG, "dev", 0)
    with pytest.raises((TypeError, ValueError), match="index"):
        build_scene(CFG, "train", -1)
    with pytest.raises(ValueError, match="source"):
        load_sources("validation")
    with pytest.raises(TypeError, match="config"):
        build_scenes({"num_train": 1})
