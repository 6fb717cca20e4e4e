"""RelevanceConfig validation and JSON round trip."""
import json

import pytest

from arrcoc.relevance.config import RelevanceConfig


def test_json_round_trip():
    cfg = RelevanceConfig(levels=[0, 16, 64], budget=300, solver="greedy", init_precision={"query": 3.0})
    assert cfg.levels == (0, 16, 64) and cfg.init_precision["query"] == 3.0
    again = RelevanceConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(cfg.to_json())["levels"] == [0, 16, 64]


@pytest.mark.parametrize("kwargs, match", [
    (dict(levels=(0, 100, 64)), "sorted"),
    (dict(levels=(0, 64, 64)), "duplicates"),
    (dict(levels=(64, 100)), "include 0"),
    (dict(levels=(0,)), "levels"),
    (dict(levels=(0, 64.5)), "levels"),
    (dict(budget=-1), "budget"),
    (dict(budget=1.5), "budget"),
    (dict(solver="lp"), "solver"),
    (dict(cost=-1.0), "cost"),
    (dict(num_thompson=0), "num_thompson"),
    (dict(tau=0.0), "tau"),
    (dict(standardize="global"), "standardize"),
    (dict(init_precision={"nope": 1.0}), "init_precision"),
    (dict(init_precision={"query": -1.0}), "init_precision"),
])
def test_validation(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RelevanceConfig(**kwargs)


def test_unknown_field():
    with pytest.raises(ValueError, match="unknown"):
        RelevanceConfig.from_dict({"levels": [0, 64], "bogus": 1})
