"""Issue 14 findings in arrcoc.relevance: each bad input is a clear error naming its argument, the
internal cores stay importable but out of ``__all__``, and solve_dp short-cuts a budget that never binds."""
import math
import time

import pytest
import torch

from arrcoc.relevance import (CalibrationResult, QueryScorer, hierarchical_posterior, log_evidence, solve_dp,
                              utility_table)
from arrcoc.relevance import knapsack, posterior, scorers
from arrcoc.relevance.calibration import hierarchical_log_likelihood, laplace_head_covariance
from arrcoc.relevance.knapsack import information_gain, resolution_gain
from arrcoc.relevance.thompson import sample_relevance

LEVELS = (0, 64, 100, 256, 400)


def test_dp_short_cuts_a_budget_that_never_binds(gen):
    R = 2000
    table = torch.rand(2, R, len(LEVELS), generator=gen)
    table[0, :100, 3] = table[0, :100, 4] = 2.0  # ties: the smallest of the tied levels is taken
    solve_dp(table[:, :4], LEVELS, R * 400)  # warm up
    t0 = time.perf_counter()
    alloc = solve_dp(table, LEVELS, R * 400)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, f"solve_dp took {elapsed:.2f} s for R={R} with a non-binding budget"
    first_argmax = (table == table.amax(-1, keepdim=True)).to(torch.uint8).argmax(-1)  # (B, R)
    assert torch.equal(alloc.level_index, first_argmax)
    assert (alloc.level_index[0, :100] == 3).all()
    assert torch.allclose(alloc.utility, table.amax(-1).sum(-1))
    assert (alloc.tokens_used <= R * 400).all()


@pytest.mark.parametrize("name", ["utility_unchecked", "solve_unchecked", "dp_levels", "greedy_levels"])
def test_knapsack_cores_are_internal(name):
    assert name not in knapsack.__all__ and callable(getattr(knapsack, name))


@pytest.mark.parametrize("name", ["evidence", "build_posterior", "add_evidence", "log_evidence_unchecked"])
def test_posterior_cores_are_internal(name):
    assert name not in posterior.__all__ and callable(getattr(posterior, name))


def test_scorers_do_not_re_export_the_checks():
    assert not {"all_finite", "check_features", "check_pixels"} & set(scorers.__all__)


def _prob_var(gen):
    return torch.rand(1, 16, generator=gen), torch.ones(1, 16)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, None, "1e-3"])
def test_utility_table_cost(gen, bad):
    p, v = _prob_var(gen)
    with pytest.raises((TypeError, ValueError), match="cost"):
        utility_table(p, v, LEVELS, cost=bad)


@pytest.mark.parametrize("arg", ["gain_half_tokens", "gain_steepness", "gain_ref_tokens"])
def test_utility_table_gain_settings(gen, arg):
    p, v = _prob_var(gen)
    with pytest.raises(ValueError, match=arg):
        utility_table(p, v, LEVELS, cost=1e-3, **{arg: math.nan})


def test_gains_refuse_bad_inputs(gen):
    with pytest.raises(ValueError, match="half_tokens"):
        resolution_gain(LEVELS, half_tokens=math.nan)
    with pytest.raises(ValueError, match="var"):
        information_gain(LEVELS, torch.tensor([[0.5, math.nan]]))
    with pytest.raises(ValueError, match="var"):
        information_gain(LEVELS, torch.tensor([[0.5, -1.0]]))


@pytest.mark.parametrize("tau", [math.nan, 0.0, -1.0, math.inf])
def test_calibration_result_tau(tau):
    with pytest.raises(ValueError, match="tau"):
        CalibrationResult(torch.ones(6), torch.zeros(6), torch.ones(6), 0.0, tau, 1.0, 0.0, "x")


def test_calibration_result_keeps_a_nan_log_likelihood():  # "not computed": fit_empirical_bayes' default init
    r = CalibrationResult(torch.ones(6), torch.zeros(6), torch.ones(6), 0.0, 1.0, 1.0, float("nan"), "init")
    assert math.isnan(r.log_likelihood) and r.tau == 1.0


def test_calibration_precisions_and_prior(gen):
    phi = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    for arg in ("noise_precision", "prior_precision"):
        kw = {"noise_precision": 1.0, "prior_precision": 1.0, arg: None}
        with pytest.raises(TypeError, match=arg):
            laplace_head_covariance(phi, **kw)
    with pytest.raises(ValueError, match="tau"):
        hierarchical_log_likelihood(torch.randn(2, 16, generator=gen), 0.0, math.nan, 1.0)


@pytest.mark.parametrize("arg,bad", [("num_heads", 2.5), ("head_dim", 0), ("feature_dim", "8"), ("prior_precision", -1.0)])
def test_query_scorer_settings(arg, bad):
    kw = {"feature_dim": 8, arg: bad}
    with pytest.raises((TypeError, ValueError), match=arg):
        QueryScorer(**kw)


def test_grid_adjacency_grid():
    for bad in (-181, 0, 2.5):
        with pytest.raises((TypeError, ValueError), match="grid"):
            scorers.grid_adjacency(bad)
    assert scorers.grid_adjacency(3).sum() == 2 * (3 * 2 * 2 + 2 * 2 * 2)  # 8-neighbour edges of a 3x3 grid, both ways


def test_grey_scorers_refuse_nan_unless_told_the_input_is_checked(gen):
    grey = torch.rand(1, 16, 8, 8, generator=gen)
    bad = grey.clone()
    bad[0, 3, 2, 2] = math.nan
    with pytest.raises(ValueError, match="region_grey"):
        scorers.grey_entropy(bad)
    with pytest.raises(ValueError, match="grey"):
        scorers.grey_spectral_saliency(bad, grid=4)
    with pytest.raises(ValueError, match="grey"):
        scorers.spectral_residual_map(bad[0, 2:4])  # (N, H, W)
    # validate=False (the allocator's path, inputs checked once at its boundary) gives the same numbers
    assert torch.equal(scorers.grey_entropy(grey), scorers.grey_entropy(grey, validate=False))
    assert torch.equal(scorers.grey_spectral_saliency(grey, 4), scorers.grey_spectral_saliency(grey, 4, validate=False))


@pytest.mark.parametrize("arg", ["tau", "sigma", "mu_global", "precision"])
def test_posterior_parameters_of_the_wrong_type(gen, arg):
    obs = torch.randn(1, 6, 16, generator=gen)
    for bad in (None, "1.0", True):
        with pytest.raises(TypeError, match=arg):
            hierarchical_posterior(obs, **{arg: bad})
        with pytest.raises(TypeError, match=arg):
            log_evidence(obs, **{arg: bad})


def test_sample_relevance_needs_a_torch_generator(gen):
    post = hierarchical_posterior(torch.randn(1, 6, 16, generator=gen))
    for bad in (None, "seed", 0):
        with pytest.raises(TypeError, match="generator"):
            sample_relevance(post, 2, bad)
    with pytest.raises(TypeError, match="num_samples"):
        sample_relevance(post, 2.5, gen)
    assert sample_relevance(post, 3, gen).shape == (1, 3, 16)
