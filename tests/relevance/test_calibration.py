"""Empirical Bayes calibration: closed-form supervised MLE and marginal-likelihood fits."""
import math

import pytest
import torch

from arrcoc.relevance.config import CHANNELS

from arrcoc.relevance import RelevanceAllocator, RelevanceConfig
from arrcoc.relevance.calibration import (fit_empirical_bayes, fit_supervised, hierarchical_log_likelihood)
from arrcoc.relevance.posterior import log_evidence

DT = torch.float64
TRUE = dict(slope=torch.tensor([1.0, -0.6, 2.0], dtype=DT), offset=torch.tensor([0.5, 0.0, -1.0], dtype=DT),
            precision=torch.tensor([1.0, 4.0, 0.5], dtype=DT), mu_global=0.0, tau=0.8, sigma=1.0)


def _simulate(N, R, seed, p_obs=0.8):
    g = torch.Generator().manual_seed(seed)
    a, b, lam = TRUE["slope"], TRUE["offset"], TRUE["precision"]
    mu = TRUE["mu_global"] + TRUE["tau"] * torch.randn(N, generator=g, dtype=DT)
    r = mu[:, None] + TRUE["sigma"] * torch.randn(N, R, generator=g, dtype=DT)
    obs = a[None, :, None] * r[:, None] + b[None, :, None] + torch.randn(N, 3, R, generator=g, dtype=DT) / lam.sqrt()[None, :, None]
    mask = torch.rand(N, 3, R, generator=g) < p_obs
    return obs, mask, r


def test_hierarchical_log_likelihood_matches_dense(gen):
    r = torch.randn(4, 6, generator=gen, dtype=DT)
    cov = 1.3 ** 2 * torch.eye(6, dtype=DT) + 0.7 ** 2
    ref = torch.distributions.MultivariateNormal(torch.full((6,), 0.2, dtype=DT), cov).log_prob(r)
    torch.testing.assert_close(hierarchical_log_likelihood(r, 0.2, 0.7, 1.3), ref)


def test_supervised_fit_is_the_mle_and_recovers_the_truth():
    obs, mask, r = _simulate(600, 8, seed=1)
    fit = fit_supervised(obs, mask, r)
    # stationary point of the exact joint log-likelihood
    params = [fit.slope.clone().requires_grad_(), fit.offset.clone().requires_grad_(),
              fit.precision.log().requires_grad_(), torch.tensor(fit.mu_global, dtype=DT, requires_grad=True),
              torch.tensor(math.log(fit.tau), dtype=DT, requires_grad=True),
              torch.tensor(math.log(fit.sigma), dtype=DT, requires_grad=True)]
    a, b, loglam, mu, lt, ls = params
    resid = obs - a[None, :, None] * r[:, None] - b[None, :, None]
    ll = (mask * 0.5 * (loglam[None, :, None] - math.log(2 * math.pi) - loglam.exp()[None, :, None] * resid ** 2)).sum()
    ll = ll + hierarchical_log_likelihood(r, mu, lt.exp(), ls.exp()).sum()
    assert abs(ll.item() - fit.log_likelihood) < 1e-6
    grads = torch.autograd.grad(ll, params)
    assert max(gr.abs().max().item() for gr in grads) < 1e-6
    # and close to the generating values
    torch.testing.assert_close(fit.slope, TRUE["slope"], atol=0.08, rtol=0)
    torch.testing.assert_close(fit.offset, TRUE["offset"], atol=0.1, rtol=0)
    torch.testing.assert_close(fit.precision, TRUE["precision"], atol=0, rtol=0.1)
    assert abs(fit.tau - TRUE["tau"]) < 0.1 and abs(fit.sigma - TRUE["sigma"]) < 0.05
    assert "supervised" in str(fit)


def test_empirical_bayes_maximises_the_evidence():
    obs, mask, _ = _simulate(400, 8, seed=2)
    fit = fit_empirical_bayes(obs, mask, fix=("mu_global", "sigma"), orient_channel=0)
    at_truth = log_evidence(obs, mask, **TRUE).sum().item()
    at_fit = log_evidence(obs, mask, **fit.kwargs()).sum().item()
    assert abs(at_fit - fit.log_likelihood) < 1e-6
    assert at_fit >= at_truth  # the MLE beats the generating parameters
    assert at_fit - at_truth < 10  # ... by O(#parameters), not more
    torch.testing.assert_close(fit.slope, TRUE["slope"], atol=0.15, rtol=0)
    torch.testing.assert_close(fit.offset, TRUE["offset"], atol=0.2, rtol=0)
    torch.testing.assert_close(fit.precision, TRUE["precision"], atol=0, rtol=0.25)
    assert abs(fit.tau - TRUE["tau"]) < 0.2
    assert fit.sigma == 1.0 and fit.mu_global == 0.0  # held fixed


def test_apply_to_allocator_and_bad_input():
    obs, mask, r = _simulate(50, 4, seed=3)
    K = len(CHANNELS)
    full = torch.zeros(50, K, 4, dtype=DT)
    fmask = torch.zeros(50, K, 4, dtype=torch.bool)
    full[:, :3], fmask[:, :3] = obs, mask
    fit = fit_supervised(full, fmask, r)
    assert len(fit.notes) == K - 3  # the channels without data kept their defaults
    m = RelevanceAllocator(RelevanceConfig(num_heads=2, head_dim=4), feature_dim=8)
    fit.apply(m)
    cal = m.calibration(full)
    torch.testing.assert_close(cal["slope"].double(), fit.slope, atol=1e-6, rtol=1e-6)
    assert abs(cal["tau"].item() - fit.tau) < 1e-5
    with pytest.raises(ValueError, match="relevance"):
        fit_supervised(obs, mask, r[:, :3])
    with pytest.raises(ValueError, match="relevance"):
        fit_supervised(obs, mask, r.masked_fill(r > 0, float("nan")))
    with pytest.raises(ValueError, match="fix"):
        fit_empirical_bayes(obs, mask, fix=("bogus",))
    with pytest.raises(ValueError, match="obs"):
        fit_empirical_bayes(obs.masked_fill(torch.ones_like(mask), float("nan")), mask)
