"""eval.scenes / eval.sources: deterministic builder, targets where the builder says, offline sources."""
import re
import socket

import numpy as np
import pytest
from PIL import Image

from eval.scenes import CORNERS, CheckSetConfig, build_checkset, build_scene, overlap_areas, region_coverage
from eval.sources import (OBJECTS, SAMPLE_BOXES, SKIMAGE_FILLER_FILES, SKIMAGE_OBJECT_FILES, object_crop,
                          render_sign, sample_scene, skimage_data_dir, skimage_photo)

SPECS = {o.key: o for o in OBJECTS}
POSITION_WORDS = re.compile(r"\b(left|right|top|bottom|corner|centre|center|middle|above|below|upper|lower)\b",
                            re.IGNORECASE)


@pytest.fixture(scope="module")
def scenes():
    return build_checkset(CheckSetConfig())


def _pixels(scene):
    return np.asarray(scene.image)


def test_same_seed_same_scenes_and_prefix(scenes):
    again = build_checkset(CheckSetConfig(num_scenes=3))
    for a, b in zip(scenes[:3], again):
        assert np.array_equal(_pixels(a), _pixels(b))
        assert a.questions == b.questions and a.objects == b.objects and a.clutter == b.clutter


def test_different_seed_different_scenes(scenes):
    other = build_scene(CheckSetConfig(seed=1), 0)
    assert not np.array_equal(_pixels(scenes[0]), _pixels(other))
    assert [q.text for q in scenes[0].questions] != [q.text for q in other.questions] or \
        scenes[0].objects != other.objects
    assert not np.array_equal(_pixels(scenes[0]), _pixels(scenes[1]))  # scenes of one set differ too


def test_default_size_and_subsets(scenes):
    obj = [q for s in scenes for q in s.questions if q.kind == "object"]
    spatial = [q for s in scenes for q in s.questions if q.kind == "spatial"]
    assert 40 <= len(obj) <= 60 and len(spatial) == len(scenes)
    assert any(q.reading for q in obj) and not all(q.reading for q in obj)
    keys = {q.object_key for q in obj}
    assert len(keys) >= 12  # the set exercises most of the object library


def test_object_questions_name_the_object_never_a_position(scenes):
    for s in scenes:
        for q, o in zip(s.questions, s.objects):
            assert q.kind == "object" and q.object_key == o.key
            assert not POSITION_WORDS.search(q.text), q.text
            noun = o.name.split("_")[-1] if o.key != "photographer" else "camera|photographer"
            assert re.search(noun.replace(" ", ".*"), q.text.lower()) or o.key == "bar_chart" and "chart" in q.text, \
                (o.name, q.text)
        names = [o.name for o in s.objects]
        assert len(set(names)) == len(names)  # one object of a kind per scene: the question is unambiguous


def test_targets_are_where_the_builder_says(scenes):
    for s in scenes:
        px = _pixels(s)
        G, S = s.grid, s.image.width
        used = set()
        for o in s.objects:
            assert o.regions == o.slot_cells and not used & set(o.slot_cells)
            used |= set(o.slot_cells)
            cov = region_coverage(o.box, S, G)
            assert all(cov[r] >= 0.5 for r in o.regions), (o, cov)  # the object dominates its regions
            assert all(cov[r] == 0 for r in range(G * G) if r not in o.slot_cells)
            # the pixels in the box are the object's own crop, resized (nothing pasted over it)
            colour = o.name.split()[0] if o.key == "sign" else None
            x0, y0, x1, y1 = o.box
            crop = object_crop(SPECS[o.key], o.shape, colour, o.words).resize((x1 - x0, y1 - y0),
                                                                             Image.Resampling.BICUBIC)
            assert np.array_equal(px[y0:y1, x0:x1], np.asarray(crop))
        assert [c == "" for c in s.clutter] == [r in used for r in range(G * G)]


def test_targets_line_up_with_the_model_regions(scenes):
    from arrcoc.modeling import ARRCOCImageProcessor
    from arrcoc.modeling.regions import grid_edges

    from eval.scenes import _edges

    for size in (480, 512, 640, 333):
        assert _edges(size, 4) == grid_edges(size, 4)
    proc = ARRCOCImageProcessor(size=640, grid=4)
    s = scenes[0]
    boxes = proc(s.image)["region_boxes"][0]  # (R, 4) in the 640 x 640 frame
    k = 640 / s.image.width
    for o in s.objects:
        x0, y0, x1, y1 = (v * k for v in o.box)
        for r in o.regions:
            bx0, by0, bx1, by1 = boxes[r].tolist()
            inter = max(0, min(x1, bx1) - max(x0, bx0)) * max(0, min(y1, by1) - max(y0, by0))
            assert inter >= 0.5 * (bx1 - bx0) * (by1 - by0)


def test_spatial_question_targets_its_corner(scenes):
    corner_cells = {"top left": 0, "top right": 3, "bottom left": 12, "bottom right": 15}
    assert set(CORNERS) == set(corner_cells)
    seen = set()
    for s in scenes:
        q = s.questions[-1]
        assert q.kind == "spatial"
        name = next(n for n in corner_cells if n in q.text)
        seen.add(name)
        assert q.targets == (corner_cells[name],) and corner_cells[name] in s.objects[0].slot_cells
    assert len(seen) >= 3  # the corner is drawn at random, not always the same


def test_builder_never_touches_the_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the check-set builder opened a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    skimage_photo.cache_clear()
    sample_scene.cache_clear()
    build_scene(CheckSetConfig(seed=7), 3)


def test_every_source_file_is_bundled_in_the_wheel():
    d = skimage_data_dir()
    for f in list(SKIMAGE_OBJECT_FILES) + list(SKIMAGE_FILLER_FILES):
        assert (d / f).is_file(), f
        img = skimage_photo(f)
        assert img.mode == "RGB" and min(img.size) >= 64


def test_crop_boxes_fit_their_sources():
    for spec in OBJECTS:
        for shape, (x0, y0, x1, y1) in spec.crops.items():
            if spec.source == "sign":
                continue
            kind, _, name = spec.source.partition(":")
            w, h = (skimage_photo(name) if kind == "skimage" else sample_scene()).size
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (spec.key, shape)
            aspect, slot = (x1 - x0) / (y1 - y0), shape[1] / shape[0]
            assert 0.5 < aspect / slot < 1.6, (spec.key, shape)  # the crop roughly fills its slot


# colour drawn by make_sample.py for each object (the box must hold all of that colour's pixels)
_SAMPLE_COLOURS = {"blue_sign": (20, 70, 160), "stop_sign": (200, 20, 20), "bar_chart": (245, 245, 235),
                   "house": (120, 40, 40), "tree": (40, 110, 40), "text_line": (20, 20, 20)}


@pytest.mark.parametrize("key", sorted(_SAMPLE_COLOURS))
def test_sample_boxes_hold_the_drawn_objects(key):
    px = np.asarray(sample_scene()).astype(int)
    m = np.abs(px - np.array(_SAMPLE_COLOURS[key])).sum(-1) < 12  # (H, W)
    ys, xs = np.nonzero(m)
    x0, y0, x1, y1 = SAMPLE_BOXES[key]
    assert len(xs) > 50
    assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
    assert xs.min() - x0 <= 12 and x1 - 1 - xs.max() <= 12  # tight (the house box includes the eaves)


def test_overlap_areas_partition_the_box():
    box = (100, 30, 401, 250)
    areas = overlap_areas(box, 640, 480, 4)
    assert sum(areas) == 301 * 220
    assert areas[0] == 60 * 90 and areas[3] == 0


def test_render_sign_and_bad_input():
    img = render_sign("green", "BUS STOP", 240, 112)
    a = np.asarray(img)
    assert img.size == (240, 112)
    assert (np.abs(a.astype(int) - [20, 120, 60]).sum(-1) < 5).mean() > 0.4  # mostly plate
    assert (a.min(-1) > 240).mean() > 0.02  # white letters
    with pytest.raises(ValueError, match="colour must be one of"):
        render_sign("blue", "EXIT", 100, 50)
    with pytest.raises(ValueError, match="words must be"):
        render_sign("green", " ", 100, 50)
    with pytest.raises(ValueError, match="name must be one of"):
        skimage_photo("brain.tif")


@pytest.mark.parametrize("kw, err, match", [
    (dict(canvas=510), ValueError, "multiple of grid"),
    (dict(num_scenes=0), ValueError, "num_scenes must be >= 1"),
    (dict(min_objects=4, max_objects=3), ValueError, "max_objects must be >= 4"),
    (dict(scale_range=(0.9,)), TypeError, "scale_range"),
    (dict(scale_range=(1.0, 0.9)), ValueError, "scale_range"),
    (dict(min_cell_coverage=0.0), ValueError, "min_cell_coverage"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(spatial=1), TypeError, "spatial must be a bool"),
])
def test_config_bad_input(kw, err, match):
    with pytest.raises(err, match=match):
        CheckSetConfig(**kw)
