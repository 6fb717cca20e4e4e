"""eval.metrics on hand-made allocations: exact values, chance levels (exact vs Monte Carlo), bad input."""
import math

import pytest
import torch

from eval.metrics import (binomial_se, hit_at_top, hit_at_top_chance, question_moved, question_moved_chance,
                          target_mask, target_share, target_tokens, top_level_mask, uniform_share)

R = 16


def _alloc(*rows):
    """Rows given as {region: tokens} dicts -> (N, R) long."""
    out = torch.zeros(len(rows), R, dtype=torch.long)
    for i, row in enumerate(rows):
        for r, v in row.items():
            out[i, r] = v
    return out


def test_hit_at_top_single_ties_spread_and_empty():
    a = _alloc({0: 400, 1: 64}, {1: 256, 2: 256, 3: 64}, {0: 64, 1: 64, 2: 64}, {}, {4: 400, 0: 256},
               {1: 256, 2: 256})
    t = target_mask([(0,), (1,), (0,), (0,), (0,), (5, 6)], R)
    assert hit_at_top(a, t).tolist() == [True, True, False, False, False, False]
    # three regions share the top level: a miss at max_ties=2, a hit at max_ties=3
    assert hit_at_top(a, t, max_ties=3).tolist() == [True, True, True, False, False, False]
    assert top_level_mask(a).sum(1).tolist() == [1, 2, 3, 0, 1, 2]


def test_hit_at_top_chance_exact_values():
    a = _alloc({0: 400, 1: 64}, {1: 256, 2: 256}, {1: 256, 2: 256}, {0: 64, 1: 64, 2: 64}, {}, {7: 100})
    t = target_mask([(3,), (3,), (3, 4), (0,), (0,), (3, 4)], R)
    expect = [1 / 16, 1 - math.comb(15, 2) / math.comb(16, 2), 1 - math.comb(14, 2) / math.comb(16, 2),
              0.0, 0.0, 2 / 16]
    assert hit_at_top_chance(a, t).tolist() == pytest.approx(expect, abs=1e-15)
    assert expect[1] == pytest.approx(1 / 8) and expect[2] == pytest.approx(29 / 120)


def test_hit_at_top_chance_matches_permutations(gen):
    a = _alloc({0: 400, 1: 64, 5: 100}, {1: 256, 2: 256, 9: 64}, {3: 400, 4: 400, 5: 100}, {0: 64, 1: 64, 2: 64})
    t = target_mask([(3,), (3, 7), (0, 1), (2,)], R)
    exact = hit_at_top_chance(a, t)
    n = 20_000
    mc = hit_at_top_chance(a, t, method="monte_carlo", generator=gen, num_draws=n)
    mcse = (exact * (1 - exact) / n).sqrt()
    assert ((mc - exact).abs() <= 4 * mcse + 1e-12).all(), (mc, exact)


def test_share_and_uniform_share():
    a = _alloc({0: 400, 1: 100, 2: 64}, {0: 400, 1: 100, 2: 64}, {})
    t = target_mask([(0,), (0, 1), (0,)], R)
    assert target_tokens(a, t).tolist() == [400, 500, 0]
    assert target_share(a, t).tolist() == pytest.approx([400 / 564, 500 / 564, 0.0])
    assert uniform_share(t).tolist() == [1 / 16, 2 / 16, 1 / 16]


def test_question_moved_strict():
    own = _alloc({0: 400}, {0: 256, 1: 64}, {0: 64})
    other = _alloc({1: 400}, {0: 256, 2: 64}, {0: 100})
    t = target_mask([(0,), (0,), (0,)], R)
    assert question_moved(own, other, t).tolist() == [True, False, False]  # a tie does not count


def test_question_moved_chance_by_hand(gen):
    # R = 3: own levels {2, 0, 0}, other {1, 1, 0}. One target: X = 2 w.p. 1/3 and always beats
    # Y <= 1 -> 1/3. Two targets: X in {2, 2, 0}, Y in {2, 1, 1}: P(X = 2) P(Y < 2) = 2/3 * 2/3.
    own = torch.tensor([[2, 0, 0], [2, 0, 0]])
    other = torch.tensor([[1, 1, 0], [0, 1, 1]])
    t = target_mask([(1,), (0, 2)], 3)
    exact = question_moved_chance(own, other, t)
    assert exact.tolist() == pytest.approx([1 / 3, 4 / 9], abs=1e-15)
    n = 20_000
    mc = question_moved_chance(own, other, t, method="monte_carlo", generator=gen, num_draws=n)
    mcse = (exact * (1 - exact) / n).sqrt()
    assert ((mc - exact).abs() <= 4 * mcse).all(), (mc, exact)


def test_question_moved_chance_realistic_rows_match_monte_carlo(gen):
    own = _alloc({0: 400, 3: 64, 7: 64}, {k: 64 for k in range(9)})
    other = _alloc({2: 256, 5: 256}, {k: 64 for k in range(4, 13)})
    t = target_mask([(0, 1), (3,)], R)
    exact = question_moved_chance(own, other, t)
    n = 20_000
    mc = question_moved_chance(own, other, t, method="monte_carlo", generator=gen, num_draws=n)
    mcse = (exact * (1 - exact) / n).sqrt()
    assert ((mc - exact).abs() <= 4 * mcse + 1e-12).all(), (mc, exact)
    # identical 9 x 64 spreads: X > Y exactly when X = 64, Y = 0: 9/16 * 7/16
    assert exact[1].item() == pytest.approx(9 / 16 * 7 / 16)


def test_binomial_se():
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert binomial_se(0.0, 10) == 0.0
    with pytest.raises(ValueError, match="n must be"):
        binomial_se(0.5, 0)


def test_bad_input_is_named():
    a = _alloc({0: 64})
    t = target_mask([(0,)], R)
    with pytest.raises(TypeError, match="allocation must hold integer"):
        hit_at_top(a.float(), t)
    with pytest.raises(ValueError, match="non-negative"):
        hit_at_top(-a, t)
    with pytest.raises(ValueError, match="shape"):
        hit_at_top(a[0], t)
    with pytest.raises(TypeError, match="targets must be a bool"):
        hit_at_top(a, t.long())
    with pytest.raises(ValueError, match="no target region"):
        hit_at_top(a, torch.zeros(1, R, dtype=torch.bool))
    with pytest.raises(ValueError, match="targets must have shape"):
        hit_at_top(a, target_mask([(0,)], 4))
    with pytest.raises(ValueError, match="max_ties"):
        hit_at_top(a, t, max_ties=0)
    with pytest.raises(ValueError, match="method must be"):
        hit_at_top_chance(a, t, method="approx")
    with pytest.raises(TypeError, match="generator"):
        question_moved_chance(a, a, t, method="monte_carlo")
    with pytest.raises(ValueError, match="same shape"):
        question_moved(a, _alloc({0: 64}, {1: 64}), t)
    with pytest.raises(ValueError, match=r"regions\[0\] has 16"):
        target_mask([(16,)], R)
    with pytest.raises(ValueError, match="is empty"):
        target_mask([()], R)
