"""Predictive distributions and the distribution classes of arrcoc.bayes.conjugate.

log_prob against scipy.stats; predictive of one observation == exp(log evidence) of that observation
(the evidence is checked by quadrature in test_conjugate.py); samplers reproducible with a generator and
their moments within 5 Monte Carlo standard errors.
"""
import math

import numpy as np
import pytest
import scipy.stats as st
import torch

from arrcoc.bayes.conjugate import (BetaBinomial, BetaBinomialDistribution, DirichletMultinomial,
                                    DirichletMultinomialDistribution, GammaPoisson, NormalInverseGamma,
                                    NormalInverseGammaDistribution, NormalNormal)

DT = torch.float64


def _t(x):
    return torch.as_tensor(np.asarray(x), dtype=DT)


@pytest.mark.parametrize("batch", [(), (3,), (2, 4)])
def test_beta_binomial_predictive_vs_scipy(gen, batch):
    prior = BetaBinomial(0.5 + 2 * torch.rand(batch, generator=gen, dtype=DT),
                         0.5 + 2 * torch.rand(batch, generator=gen, dtype=DT))
    k = torch.randint(0, 7, batch + (5,), generator=gen).to(DT)
    post = prior.update(k, 7)
    pred = post.predictive(9)
    assert pred.batch_shape == batch
    values = torch.arange(10, dtype=DT).reshape((10,) + (1,) * len(batch))
    ref = st.betabinom(9, post.alpha.numpy(), post.beta.numpy()).logpmf(values.numpy())
    torch.testing.assert_close(pred.log_prob(values), _t(ref), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pred.log_prob(values).exp().sum(0), torch.ones(batch, dtype=DT))
    torch.testing.assert_close(pred.mean, _t(st.betabinom(9, post.alpha.numpy(), post.beta.numpy()).mean()))
    torch.testing.assert_close(pred.variance, _t(st.betabinom(9, post.alpha.numpy(), post.beta.numpy()).var()))
    # predictive of one new observation == evidence of that observation under the posterior
    torch.testing.assert_close(pred.log_prob(_t(4.0)), post.log_evidence(torch.full(batch + (1,), 4.0,
                                                                                      dtype=DT), 9))


@pytest.mark.parametrize("batch", [(), (3,), (2, 4)])
def test_gamma_poisson_predictive_vs_scipy(gen, batch):
    prior = GammaPoisson(0.5 + 2 * torch.rand(batch, generator=gen, dtype=DT),
                         0.2 + torch.rand(batch, generator=gen, dtype=DT))
    post = prior.update(torch.poisson(torch.full(batch + (4,), 3.0, dtype=DT), generator=gen))
    for d in (prior, post):
        a, b = d.concentration.numpy(), d.rate.numpy()
        values = torch.arange(25, dtype=DT).reshape((25,) + (1,) * len(batch))
        # scipy's nbinom(n, p) counts failures before n successes with success probability p
        ref = st.nbinom(a, b / (b + 1)).logpmf(values.numpy())
        torch.testing.assert_close(d.predictive().log_prob(values), _t(ref), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(d.predictive().mean, _t(a / b))
        torch.testing.assert_close(d.predictive().log_prob(_t(2.0)),
                                   d.log_evidence(torch.full(batch + (1,), 2.0, dtype=DT)))


@pytest.mark.parametrize("batch", [(), (3,), (2, 4)])
def test_normal_normal_predictive_vs_scipy(gen, batch):
    prior = NormalNormal(torch.randn(batch, generator=gen, dtype=DT), 0.5 + torch.rand(batch, generator=gen, dtype=DT),
                         0.5 + torch.rand(batch, generator=gen, dtype=DT))
    post = prior.update(torch.randn(batch + (6,), generator=gen, dtype=DT))
    for d in (prior, post):
        v = torch.linspace(-3, 3, 7, dtype=DT).reshape((7,) + (1,) * len(batch))
        sd = np.sqrt(d.scale.numpy() ** 2 + d.noise_scale.numpy() ** 2)
        ref = st.norm(d.loc.numpy(), sd).logpdf(v.numpy())
        torch.testing.assert_close(d.predictive().log_prob(v), _t(ref), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(d.predictive().log_prob(_t(0.4)),
                                   d.log_evidence(torch.full(batch + (1,), 0.4, dtype=DT)))


@pytest.mark.parametrize("batch", [(), (3,), (2, 4)])
def test_normal_inverse_gamma_predictive_vs_scipy(gen, batch):
    prior = NormalInverseGamma(torch.randn(batch, generator=gen, dtype=DT), 0.5 + torch.rand(batch, generator=gen, dtype=DT),
                               1 + torch.rand(batch, generator=gen, dtype=DT), 0.5 + torch.rand(batch, generator=gen, dtype=DT))
    post = prior.update(torch.randn(batch + (6,), generator=gen, dtype=DT))
    for d in (prior, post):
        m, k, a, b = (t.numpy() for t in (d.loc, d.kappa, d.alpha, d.beta))
        v = torch.linspace(-3, 3, 7, dtype=DT).reshape((7,) + (1,) * len(batch))
        ref = st.t(df=2 * a, loc=m, scale=np.sqrt(b * (k + 1) / (a * k))).logpdf(v.numpy())
        torch.testing.assert_close(d.predictive().log_prob(v), _t(ref), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(d.predictive().log_prob(_t(0.4)),
                                   d.log_evidence(torch.full(batch + (1,), 0.4, dtype=DT)))
    # Jeffreys posterior predictive: t_{n-1}(xbar, s^2 (1 + 1/n))
    x = torch.randn(5, generator=gen, dtype=DT)
    pred = NormalInverseGamma.jeffreys(dtype=DT).update(x).predictive()
    torch.testing.assert_close(pred.df, _t(4.0))
    torch.testing.assert_close(pred.scale, (x.var() * (1 + 1 / 5)).sqrt())


@pytest.mark.parametrize("batch", [(), (3,), (2, 4)])
def test_dirichlet_multinomial_predictive_vs_scipy(gen, batch):
    prior = DirichletMultinomial(0.5 + 2 * torch.rand(batch + (3,), generator=gen, dtype=DT))
    counts = torch.randint(0, 4, batch + (2, 3), generator=gen).to(DT)
    post = prior.update(counts)
    pred = post.predictive(6)
    assert pred.batch_shape == batch and pred.event_shape == (3,)
    # every composition of 6 into 3 parts
    vals = _t([[i, j, 6 - i - j] for i in range(7) for j in range(7 - i)])  # (28, 3)
    v = vals.reshape((28,) + (1,) * len(batch) + (3,))
    alpha = post.concentration.reshape(-1, 3).numpy()
    ref = np.stack([st.dirichlet_multinomial(a, 6).logpmf(vals.numpy()) for a in alpha], -1).reshape((28,) + batch)
    torch.testing.assert_close(pred.log_prob(v), _t(ref), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pred.log_prob(v).exp().sum(0), torch.ones(batch, dtype=DT))
    ref_mean = np.stack([st.dirichlet_multinomial(a, 6).mean() for a in alpha]).reshape(batch + (3,))
    ref_var = np.stack([st.dirichlet_multinomial(a, 6).var() for a in alpha]).reshape(batch + (3,))
    torch.testing.assert_close(pred.mean, _t(ref_mean))
    torch.testing.assert_close(pred.variance, _t(ref_var))
    obs = _t([1.0, 3.0, 2.0])
    torch.testing.assert_close(pred.log_prob(obs), post.log_evidence(obs.expand(batch + (1, 3))))


def test_beta_binomial_for_binary_trials_is_bernoulli():
    post = BetaBinomial(2.0, 3.0).update(torch.tensor([1.0, 0, 1, 1]), 1)
    pred = post.predictive()
    assert math.isclose(float(pred.log_prob(torch.tensor(1.0)).exp()), 5 / 9, rel_tol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# samplers: reproducible, moments within 5 Monte Carlo standard errors

def _check_mean(draws, mean, var):
    n = draws.shape[0]
    se = (var / n).sqrt()
    assert bool(((draws.mean(0) - mean).abs() <= 5 * se + 1e-12).all()), (draws.mean(0), mean, se)


def test_beta_binomial_sampler(gen):
    d = BetaBinomialDistribution(_t([5.0, 12.0]), _t([0.7, 3.0]), _t([1.5, 2.0]))
    x = d.sample((20000,), generator=gen)
    assert x.shape == (20000, 2) and bool(((x >= 0) & (x <= d.total_count)).all())
    _check_mean(x, d.mean, d.variance)
    g2 = torch.Generator().manual_seed(7)
    g3 = torch.Generator().manual_seed(7)
    assert torch.equal(d.sample((5,), generator=g2), d.sample((5,), generator=g3))
    with pytest.raises(NotImplementedError):  # heterogeneous total_count
        d.enumerate_support()
    same = BetaBinomialDistribution(_t([4.0, 4.0]), _t([0.7, 3.0]), _t([1.5, 2.0]))
    support = same.enumerate_support()  # (5, 2)
    assert support.shape == (5, 2)
    torch.testing.assert_close(same.log_prob(support).exp().sum(0), torch.ones(2, dtype=DT))


def test_dirichlet_multinomial_sampler(gen):
    d = DirichletMultinomialDistribution(_t([10.0, 3.0]), _t([[1.0, 2.0, 0.5], [4.0, 4.0, 4.0]]))
    x = d.sample((20000,), generator=gen)
    assert x.shape == (20000, 2, 3)
    torch.testing.assert_close(x.sum(-1), d.total_count.expand(20000, 2))
    _check_mean(x, d.mean, d.variance)
    assert torch.isfinite(d.log_prob(x[:100])).all()


def test_normal_inverse_gamma_distribution(gen):
    d = NormalInverseGammaDistribution(_t([0.5, -1.0]), _t([2.0, 0.5]), _t([3.5, 5.0]), _t([2.0, 1.0]))
    assert d.event_shape == (2,) and d.batch_shape == (2,)
    v = _t([[0.3, 0.8], [-0.5, 0.2]])
    for i in range(2):
        ref = (st.norm.logpdf(v[i, 0], d.loc[i], math.sqrt(v[i, 1] / d.kappa[i]))
               + st.invgamma.logpdf(v[i, 1], d.alpha[i], scale=d.beta[i]))
        assert math.isclose(float(d.log_prob(v)[i]), float(ref), rel_tol=1e-12)
    x = d.sample((40000,), generator=gen)
    assert x.shape == (40000, 2, 2) and bool((x[..., 1] > 0).all())
    _check_mean(x, d.mean, d.variance)
    # marginals
    torch.testing.assert_close(d.marginal_mu().log_prob(_t(0.1)),
                               _t(st.t(df=2 * d.alpha.numpy(), loc=d.loc.numpy(),
                                       scale=np.sqrt(d.beta.numpy() / (d.alpha.numpy() * d.kappa.numpy()))).logpdf(0.1)))
    torch.testing.assert_close(d.marginal_sigma2().mean, d.mean[..., 1])
    # infinite moments are reported as inf, not NaN
    heavy = NormalInverseGammaDistribution(_t(0.0), _t(1.0), _t(0.8), _t(1.0))
    assert torch.isinf(heavy.mean[1]) and torch.isinf(heavy.variance).all()
    # rsample carries gradients to the parameters
    loc = _t(0.0).requires_grad_()
    NormalInverseGammaDistribution(loc, _t(1.0), _t(3.0), _t(1.0)).rsample((10,), generator=gen)[..., 0].sum().backward()
    assert float(loc.grad) == 10.0


def test_family_samplers_through_dist(gen):
    """The posterior dist() draws match the closed-form posterior mean (a numbers check, not shapes)."""
    post = NormalInverseGamma.jeffreys(dtype=DT).update(1 + 2 * torch.randn(30, generator=gen, dtype=DT))
    d = post.dist()
    _check_mean(d.sample((20000,), generator=gen), d.mean, d.variance)
