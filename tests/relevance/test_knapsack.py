"""Property tests of the knapsack solvers and baselines."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from arrcoc.relevance.knapsack import (allocate_random, allocate_top_k, allocate_uniform, exclude_regions,
                                         information_gain, solve_brute_force, solve_dp, solve_greedy,
                                         utility_table)
from arrcoc.relevance.config import validate_levels
from arrcoc.relevance.posterior import hierarchical_posterior
from arrcoc.relevance.thompson import sample_relevance

DT = torch.float64
DEFAULT = (0, 64, 100, 256, 400)
SETTINGS = settings(max_examples=40, deadline=None)

level_sets = st.one_of(
    st.just(DEFAULT),
    st.lists(st.integers(1, 60), min_size=1, max_size=4, unique=True).map(lambda v: tuple([0] + sorted(v))),
)


@st.composite
def problems(draw, max_regions=4):
    levels = draw(level_sets)
    B = draw(st.integers(1, 3))
    R = draw(st.integers(1, max_regions))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    g = torch.Generator().manual_seed(seed)
    prob = torch.rand(B, R, generator=g, dtype=DT)
    var = torch.rand(B, R, generator=g, dtype=DT) * 3
    scale = levels[-1] / 400
    table = utility_table(prob, var, levels, cost=draw(st.sampled_from([0.0, 1e-3, 3e-3])) / scale,
                          gain_ref_tokens=64 * scale)
    budget = torch.randint(0, R * levels[-1] + 2, (B,), generator=g)
    return table, levels, budget, g


@SETTINGS
@given(problems())
def test_dp_equals_brute_force(p):
    table, levels, budget, _ = p
    dp, bf = solve_dp(table, levels, budget), solve_brute_force(table, levels, budget)
    torch.testing.assert_close(dp.utility, bf.utility, rtol=0, atol=1e-12)
    assert (dp.tokens_used <= budget).all()


@SETTINGS
@given(problems(max_regions=8))
def test_feasible_and_only_configured_levels(p):
    table, levels, budget, g = p
    lv = torch.tensor(levels)
    results = [solve_dp(table, levels, budget), solve_greedy(table, levels, budget),
               allocate_uniform(table, levels, budget), allocate_random(table, levels, budget, g),
               allocate_top_k(table, levels, budget, torch.rand(table.shape[:2], generator=g, dtype=DT))]
    best = results[0].utility
    for a in results:
        assert (a.tokens_used <= budget).all(), a.solver
        assert torch.isin(a.levels, lv).all(), a.solver
        torch.testing.assert_close(a.levels, lv[a.level_index])
        torch.testing.assert_close(a.tokens_used, a.levels.sum(-1))
        torch.testing.assert_close(a.utility, table.gather(-1, a.level_index[..., None]).squeeze(-1).sum(-1))
        assert (a.utility <= best + 1e-9).all(), a.solver  # nothing beats the exact optimum


@SETTINGS
@given(level_sets, st.integers(0, 10 ** 6), st.integers(1, 6))
def test_tiny_budget_allocates_nothing_and_says_so(levels, seed, R):
    g = torch.Generator().manual_seed(seed)
    table = utility_table(torch.rand(2, R, generator=g, dtype=DT), torch.rand(2, R, generator=g, dtype=DT),
                          levels, cost=0.0)
    budget = torch.randint(0, levels[1], (2,), generator=g)
    for a in (solve_dp(table, levels, budget), solve_greedy(table, levels, budget),
              allocate_top_k(table, levels, budget, table[..., -1]), allocate_uniform(table, levels, budget)):
        assert (a.levels == 0).all() and a.insufficient_budget.all()
        assert a.notes and "nothing allocated" in a.notes[0] and "nothing allocated" in str(a)
    ok = solve_dp(table, levels, levels[1])
    assert not ok.insufficient_budget.any() and ok.notes == ()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10 ** 6), st.integers(0, 4), st.floats(0.1, 3.0))
def test_raising_a_mean_never_lowers_its_allocation(seed, j, delta):
    """Thompson draws with common random numbers; the posterior mean of region j raised by delta."""
    g = torch.Generator().manual_seed(seed)
    B, K, R, S = 2, 2, 5, 16
    obs = torch.randn(B, K, R, generator=g, dtype=DT)
    post = hierarchical_posterior(obs, precision=torch.tensor([1.0, 0.5], dtype=DT))
    draws = sample_relevance(post, S, g).clamp(-4, 4)  # (B, S, R)
    raised = draws.clone()
    raised[..., j] += delta
    var = post.var[:, None, :].expand(B, S, R).reshape(B * S, R)
    budget = int(torch.randint(64, 1200, (1,), generator=g))

    def per_draw(d):
        table = utility_table(torch.sigmoid(d).reshape(B * S, R), var, DEFAULT, cost=1e-3)
        return solve_dp(table, DEFAULT, budget).levels.reshape(B, S, R)

    lo, hi = per_draw(draws), per_draw(raised)
    assert (hi[..., j] >= lo[..., j]).all()
    assert (hi[..., j].to(DT).mean(1) >= lo[..., j].to(DT).mean(1)).all()  # expected allocation


def test_gain_is_concave_increasing_and_grows_with_variance():
    v = torch.tensor([[0.0, 1.0, 4.0]], dtype=DT)
    gain = information_gain(DEFAULT, v)  # (1, 3, 5)
    lv = torch.tensor(DEFAULT, dtype=DT)
    slopes = gain.diff(dim=-1) / lv.diff()
    assert (gain[..., 0] == 0).all() and (gain.diff(dim=-1) > 0).all()
    assert (slopes.diff(dim=-1) < 0).all()  # concave on the level grid
    assert (gain[0, 1:, 1:] > gain[0, :-1, 1:]).all()  # more relevance uncertainty, more gain
    torch.testing.assert_close(gain[0, 1, 1], torch.tensor(0.5 * math.log(1 + 64 * 2.0 / 64), dtype=DT))


def test_exclude_and_budget_per_image():
    table = utility_table(torch.full((2, 3), 0.9, dtype=DT), torch.ones(2, 3, dtype=DT), DEFAULT, cost=1e-4)
    ex = torch.tensor([[True, False, False], [False, False, False]])
    a = solve_dp(exclude_regions(table, ex), DEFAULT, torch.tensor([1200, 500]))
    assert a.levels[0, 0] == 0 and a.levels[0].sum() == 800
    assert a.tokens_used[1] <= 500
    b = solve_greedy(exclude_regions(table, ex), DEFAULT, torch.tensor([1200, 500]))
    assert b.levels[0, 0] == 0


def test_bad_input():
    table = utility_table(torch.rand(2, 3, dtype=DT), torch.rand(2, 3, dtype=DT), DEFAULT, cost=1e-3)
    with pytest.raises(ValueError, match="budget"):
        solve_dp(table, DEFAULT, -1)
    with pytest.raises(ValueError, match="budget"):
        solve_greedy(table, DEFAULT, torch.tensor([10, -5]))
    with pytest.raises(TypeError, match="budget"):
        solve_dp(table, DEFAULT, 10.5)
    with pytest.raises(TypeError, match="budget"):
        solve_dp(table, DEFAULT, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="budget"):
        solve_dp(table, DEFAULT, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="sorted"):
        solve_dp(table, (0, 100, 64, 256, 400), 100)
    with pytest.raises(ValueError, match="duplicates"):
        validate_levels((0, 64, 64, 100))
    with pytest.raises(ValueError, match="include 0"):
        validate_levels((64, 100))
    with pytest.raises(ValueError, match="table"):
        solve_dp(table[..., :4], DEFAULT, 100)
    with pytest.raises(ValueError, match="empty batch"):
        solve_dp(table[:0], DEFAULT, 100)
    bad = table.clone(); bad[0, 0, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        solve_greedy(bad, DEFAULT, 100)
    with pytest.raises(ValueError, match="prob"):
        utility_table(torch.full((1, 2), 1.5), torch.ones(1, 2), DEFAULT, cost=0.0)
    with pytest.raises(ValueError, match="var"):
        utility_table(torch.full((1, 2), 0.5), torch.full((1, 2), float("inf")), DEFAULT, cost=0.0)
    with pytest.raises(ValueError, match="scores"):
        allocate_top_k(table, DEFAULT, 100, torch.rand(2, 4))
