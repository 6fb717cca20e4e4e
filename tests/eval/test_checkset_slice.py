"""The check set on the real pretrained default (EfficientNet-Lite0 + MiniLM, offline): a small slice.

The instrument itself must work (records complete, reproducible, the allocation-only shortcut equal
to the full forward pass), and the question-aware default must score well above chance: hit@top on
the slice above ``FLOOR`` (4x the one-region chance), and on the bundled scene every asked-about
object (the blue sign, the stop sign, the house, the chart, the line of small print) gets the top
level at both budgets. The stop sign and the small print need the OCR channels (the drawn octagon
is no ImageNet class; it is found because it reads STOP): without rapidocr-onnxruntime only the
other three are asserted.
"""
import dataclasses

import pytest

from eval.bundled import BUNDLED_QUESTIONS, bundled_check, sample_regions
from eval.report import one_region_chance, summarise
from eval.runner import EvalConfig, policy_names, run_checkset
from eval.scenes import CheckSetConfig, build_checkset

FLOOR = 0.5  # hit@top on the slice's object questions; one random top region hits ~0.09 of them
SLICE = CheckSetConfig(num_scenes=3)
CONFIG = EvalConfig(budgets=(640,), modes=("deterministic",), baselines=("uniform", "top_k_salience"),
                    no_query=False)


@pytest.fixture(scope="module")
def default_model():
    from arrcoc.modeling import load_default_model

    return load_default_model(grid=4)


@pytest.fixture(scope="module")
def slice_scenes():
    return build_checkset(SLICE)


@pytest.fixture(scope="module")
def slice_records(default_model, slice_scenes):
    model, proc = default_model
    return run_checkset(model, proc, slice_scenes, CONFIG, progress=False)


def test_floor_is_well_above_chance(slice_scenes):
    n = sum(q.kind == "object" for s in slice_scenes for q in s.questions)
    assert n >= 10
    assert FLOOR >= 4 * one_region_chance(slice_scenes, "object")


def test_slice_records_complete_and_reproducible(default_model, slice_scenes, slice_records):
    model, proc = default_model
    levels = set(model.config.levels)
    n_q = sum(len(s.questions) for s in slice_scenes)
    by_policy = {}
    for r in slice_records:
        by_policy.setdefault(r.policy, []).append(r)
        assert len(r.allocation) == 16 and set(r.allocation) <= levels
        assert sum(r.allocation) <= 640 - model.config.global_tokens
    assert sorted(by_policy) == sorted(policy_names(CONFIG))
    assert all(len(v) == n_q for v in by_policy.values())
    assert all(sum(r.allocation) == 0 for r in by_policy["uniform"])  # 16 x 64 > 576: nothing fits
    # top-k fills the region budget with the largest levels that fit: 400 + 100 + 64 of 576
    assert all(sum(r.allocation) == 564 for r in by_policy["top_k_salience"])
    again = run_checkset(model, proc, slice_scenes[:1], CONFIG, progress=False)
    assert again == [r for r in slice_records if r.scene == slice_scenes[0].index]


def test_allocation_only_equals_full_forward(default_model, slice_scenes, slice_records):
    model, proc = default_model
    scene = dataclasses.replace(slice_scenes[1], questions=slice_scenes[1].questions[:2])
    cfg = dataclasses.replace(CONFIG, full_forward=True, baselines=())
    full = run_checkset(model, proc, [scene], cfg, progress=False)
    fast = [r for r in slice_records if r.scene == scene.index and r.question < 2 and r.policy.startswith("arrcoc")]
    assert [(r.allocation, r.relevance) for r in full] == [(r.allocation, r.relevance) for r in fast]


def test_slice_hit_at_top_above_floor(slice_scenes, slice_records):
    m = {x.policy: x for x in summarise(slice_records, slice_scenes, policy_names(CONFIG), CONFIG.budgets)
         if x.subset == "object"}["arrcoc/deterministic"]
    assert m.hit_at_top >= FLOOR, str(m)


def test_bundled_regions_from_the_known_boxes():
    assert {k: sample_regions(k) for k, _ in BUNDLED_QUESTIONS} == {
        "blue_sign": (8, 9), "stop_sign": (11, 15), "house": (6, 7), "bar_chart": (2, 3), "text_line": (12, 13)}


def test_bundled_scene_objects_get_the_top_level(default_model):
    model, proc = default_model
    result = bundled_check(model, proc, budgets=(640, 1024), full_forward=False)
    hits = {(r.object, r.budget) for r in result.rows if r.hit}
    # the blue sign and the house are recognised (street sign; boathouse / barn / mobile home by
    # their glosses), the chart by its content; the stop sign by what it says (OCR), the small print
    # by the amount of text read there and the position phrase
    keys = ["blue_sign", "house", "bar_chart"]
    if model.scene_text_reader is not None:
        keys += ["stop_sign", "text_line"]
    for key in keys:
        assert {(key, 640), (key, 1024)} <= hits, str(result)
