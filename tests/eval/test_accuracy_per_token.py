"""eval.accuracy_per_token: the summary's numbers (tokens to 95 %, bootstrap intervals), config checks, the CLI."""
import numpy as np
import pytest

from eval.accuracy_per_token import RunConfig, bootstrap_interval, main, summarise, tokens_to_reach
from eval.policies import POLICIES


def test_tokens_to_reach_interpolates_the_first_crossing():
    assert tokens_to_reach([40, 60, 100], [0.5, 0.7, 0.9], 0.8) == pytest.approx(80.0)
    assert tokens_to_reach([100, 40, 60], [0.9, 0.5, 0.7], 0.8) == pytest.approx(80.0)  # any order
    assert tokens_to_reach([40, 60], [0.85, 0.9], 0.8) == 40.0  # already there at the fewest tokens
    assert tokens_to_reach([40, 60], [0.5, 0.6], 0.8) is None
    assert tokens_to_reach([40, 60, 100], [0.5, 0.9, 0.7], 0.8) == pytest.approx(55.0)  # the first crossing


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_questions():
    rng = np.random.default_rng(0)
    small = rng.random((3, 100)) < 0.7
    big = rng.random((3, 2000)) < 0.7
    lo, hi = bootstrap_interval(small, 500)
    assert lo < small.mean() < hi
    assert 0.1 < hi - lo < 0.25  # ~ 2 x 1.96 x sqrt(0.21 / 300)
    blo, bhi = bootstrap_interval(big, 500)
    assert bhi - blo < (hi - lo) / 3
    assert bootstrap_interval(small, 500, seed=4) == bootstrap_interval(small, 500, seed=4)


def test_summarise_pools_seeds_and_reports_tokens_to_95_percent():
    rng = np.random.default_rng(1)
    cfg = RunConfig(bootstrap=50)
    per_seed = []
    for _ in range(2):
        r = {}
        for p in POLICIES:
            for b in ([404] if p in ("full", "global_only") else [40, 101, 404]):
                acc = 0.9 if p == "full" else (0.3 if p == "global_only" else min(0.9, 0.3 + b / 400))
                r[(p, b)] = (rng.random(400) < acc, np.full(400, float(min(b, 4 if p == "global_only" else b))))
        per_seed.append(r)
    s = summarise(per_seed, cfg, 404)
    assert abs(s["full_detail_accuracy"] - 0.9) < 0.03
    row = next(r for r in s["rows"] if r["policy"] == "uniform" and r["budget"] == 101)
    assert row["questions"] == 400 and len(row["accuracy_per_seed"]) == 2
    assert row["ci95"][0] < row["accuracy"] < row["ci95"][1]
    assert s["tokens_to_95pct_of_full"]["global_only"] is None
    assert 150 < s["tokens_to_95pct_of_full"]["uniform"] <= 404


@pytest.mark.parametrize("kw, arg", [
    ({"budget_fractions": (0.1, 1.5)}, "budget_fractions"), ({"budget_fractions": ()}, "budget_fractions"),
    ({"seeds": (-1,)}, "seeds"), ({"epochs": 0}, "epochs"), ({"allocation_mix": {"fastv": 1.0}}, "allocation_mix"),
    ({"allocation_mix": {"full": 0.0}}, "allocation_mix"), ({"learning_rate": float("nan")}, "learning_rate"),
    ({"scenes": {"num_train": 3}}, "scenes"), ({"reader_dim": 0}, "reader_dim")])
def test_run_config_rejects_bad_values_by_name(kw, arg):
    with pytest.raises((TypeError, ValueError), match=arg):
        RunConfig(**kw)


def test_cli_bad_sizes_are_one_line_errors(capsys):
    assert main(["--train-scenes", "-2"]) == 2
    err = capsys.readouterr().err
    assert "num_train" in err and "Traceback" not in err
