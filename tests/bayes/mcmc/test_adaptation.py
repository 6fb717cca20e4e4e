"""Warmup pieces: Stan's window schedule, dual averaging, Welford covariance."""
import pytest
import torch

from arrcoc.bayes.mcmc import (AdaptationConfig, dual_averaging_final, dual_averaging_init, dual_averaging_update,
                               welford_covariance, welford_init, welford_update, window_schedule)


def test_window_schedule_matches_stan_for_1000_warmup():
    collect, end = window_schedule(1000, AdaptationConfig())
    # Stan: init buffer 75, slow windows 25, 50, 100, 200, 500, terminal buffer 50
    assert [i for i, e in enumerate(end) if e] == [99, 149, 249, 449, 949]
    assert collect.index(True) == 75 and max(i for i, c in enumerate(collect) if c) == 949


def test_window_schedule_short_warmup_uses_fractions_and_tiny_warmup_has_none():
    collect, end = window_schedule(100, AdaptationConfig())
    assert [i for i, e in enumerate(end) if e] == [89]        # 15 + 75 slow + 10
    assert sum(collect) == 75
    collect, end = window_schedule(10, AdaptationConfig())
    assert not any(collect) and not any(end)


def test_dual_averaging_finds_step_size_for_target_acceptance():
    # toy acceptance curve a(eps) = exp(-eps^2): target 0.8 at eps* = sqrt(-log 0.8)
    cfg = AdaptationConfig()
    s = dual_averaging_init(torch.tensor([1.0, 0.01, 5.0], dtype=torch.float64))
    for _ in range(2000):
        eps = s.log_step.exp()
        s = dual_averaging_update(s, torch.exp(-eps ** 2), 0.8, cfg)
    eps_star = torch.sqrt(-torch.log(torch.tensor(0.8, dtype=torch.float64)))
    assert torch.allclose(dual_averaging_final(s), eps_star.expand(3), rtol=0.02)


@pytest.mark.parametrize("dense", [False, True])
def test_welford_matches_torch_cov_and_regularises(dense):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 50, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    s = welford_init(2, 3, dense, torch.float64, None)
    for t in range(50):
        s = welford_update(s, x[:, t])
    cov = welford_covariance(s, regularize=0.0)
    for c in range(2):
        ref = torch.cov(x[c].T) * 50 / 55
        assert torch.allclose(cov[c], ref if dense else ref.diagonal(), atol=1e-12)
    reg = welford_covariance(s, regularize=1e-3)
    extra = 1e-3 * 5 / 55
    d = reg[0].diagonal() if dense else reg[0]
    d0 = cov[0].diagonal() if dense else cov[0]
    assert torch.allclose(d - d0, torch.full((3,), extra, dtype=torch.float64))
    pooled = welford_covariance(s, regularize=0.0, pool=True)
    assert torch.allclose(pooled[0], cov.mean(0)) and torch.allclose(pooled[1], cov.mean(0))
