"""Posterior predictive: exact predictive distributions of conjugate models, total-variance split."""
import math

import pytest
import torch
from torch.distributions import Normal, Poisson, StudentT

from arrcoc.bayes import predictive as P
from arrcoc.bayes.conjugate import GammaPoisson, NormalNormal

F64 = torch.float64



def test_normal_normal_predictive_and_variance_split(gen):
    x = torch.randn(10, generator=gen, dtype=F64) + 2.0
    sig = 1.5
    post = NormalNormal(torch.tensor(0.0, dtype=F64), torch.tensor(3.0, dtype=F64), torch.tensor(sig, dtype=F64)).update(x)
    pd = post.dist()
    s = 20000
    mu = pd.loc + pd.scale * torch.randn(s, generator=gen, dtype=F64)  # exact posterior draws
    lik = lambda m: Normal(m[:, None], sig)  # noqa: E731  (S, 1): one new observation
    mean, alea, epi = P.variance_decomposition(lik, mu)
    assert float(alea) == pytest.approx(sig ** 2)  # aleatoric = noise variance, exactly
    v = float(pd.scale) ** 2
    assert abs(float(epi) - v) < 4 * v * math.sqrt(2 / s)  # epistemic = posterior variance
    assert abs(float(mean) - float(pd.loc)) < 4 * math.sqrt(v / s)
    summ = P.predictive_summary(lik, mu, generator=gen, prob=0.9, num_per_draw=2)
    assert summ.samples.shape == (2 * s, 1)
    exact = post.predictive()  # N(loc, scale^2 + noise^2)
    sd = float(exact.stddev)
    assert float(summ.total) == pytest.approx(float(alea + epi))
    assert abs(float(summ.samples.std()) - sd) < 0.02 * sd
    lo, hi = summ.interval[0]
    q = exact.icdf(torch.tensor([0.05, 0.95], dtype=F64))
    assert abs(float(lo - q[0])) < 0.05 * sd and abs(float(hi - q[1])) < 0.05 * sd
    assert "aleatoric" in str(summ)


def test_gamma_poisson_predictive_is_negative_binomial(gen):
    counts = torch.tensor([3.0, 5, 2, 4, 6], dtype=F64)
    post = GammaPoisson(torch.tensor(2.0, dtype=F64), torch.tensor(1.0, dtype=F64)).update(counts)
    g = post.dist()
    s = 40000
    lam = torch._standard_gamma(g.concentration.expand(s).contiguous(), generator=gen) / g.rate
    lik = lambda l: Poisson(l[:, None])  # noqa: E731
    mean, alea, epi = P.variance_decomposition(lik, lam)
    # NB predictive: mean a/b, variance a/b + a/b^2 (aleatoric a/b, epistemic a/b^2)
    a, b = float(g.concentration), float(g.rate)
    assert abs(float(alea) - a / b) < 0.02 * a / b and abs(float(epi) - a / b ** 2) < 0.05 * a / b ** 2
    ys = P.posterior_predictive(lik, lam, generator=gen)
    pred = post.predictive()
    for k in range(4):
        assert abs(float((ys == k).double().mean()) - float(pred.log_prob(torch.tensor(float(k), dtype=F64)).exp())) < 0.01


def test_reproducible_and_fallback_sampling(gen):
    draws = {"df": torch.full((50,), 4.0, dtype=F64), "loc": torch.linspace(-1, 1, 50, dtype=F64)}
    lik = lambda d: StudentT(d["df"][:, None], d["loc"][:, None], 1.0)  # noqa: E731 - generic fallback path
    a = P.posterior_predictive(lik, draws, generator=torch.Generator().manual_seed(4), num_per_draw=3)
    b = P.posterior_predictive(lik, draws, generator=torch.Generator().manual_seed(4), num_per_draw=3)
    assert a.shape == (150, 1) and torch.equal(a, b)
    state = torch.get_rng_state()
    P.posterior_predictive(lik, draws, generator=torch.Generator().manual_seed(5))
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched


def test_credible_intervals(gen):
    x = torch.randn(200000, generator=gen, dtype=F64)
    eti = P.credible_interval(x, 0.95)
    torch.testing.assert_close(eti, torch.tensor([-1.96, 1.96], dtype=F64), atol=0.03, rtol=0)
    hdi = P.credible_interval(x, 0.95, method="hdi")
    torch.testing.assert_close(hdi, eti, atol=0.03, rtol=0)  # symmetric: HDI = ETI
    e = torch.distributions.Exponential(torch.tensor(1.0, dtype=F64)).icdf(torch.rand(100000, generator=gen, dtype=F64))
    h = P.credible_interval(e, 0.9, method="hdi")
    assert float(h[0]) < 0.01 and abs(float(h[1]) - math.log(10)) < 0.05  # HDI of Exp(1): [0, log 10]
    batch = P.credible_interval(torch.randn(1000, 3, generator=gen, dtype=F64), 0.5)
    assert batch.shape == (3, 2)


def test_bad_input(gen):
    mu = torch.zeros(10, dtype=F64)
    with pytest.raises(TypeError, match="Distribution"):
        P.posterior_predictive(lambda m: m, mu, generator=gen)
    with pytest.raises(ValueError, match="draw axis"):
        P.posterior_predictive(lambda m: Normal(0.0, 1.0), mu, generator=gen)
    with pytest.raises(ValueError, match="same number of draws"):
        P.variance_decomposition(lambda d: Normal(d["a"], 1.0), {"a": mu, "b": torch.zeros(3)})
    with pytest.raises(ValueError, match="not finite"):
        P.variance_decomposition(lambda m: StudentT(torch.full((10,), 1.5, dtype=F64), m, 1.0), mu)
    with pytest.raises(ValueError, match="prob"):
        P.credible_interval(mu, 1.5)
    with pytest.raises(ValueError, match="NaN"):
        P.credible_interval(torch.tensor([0.0, float("nan")]), 0.5)


def test_predictive_requires_a_torch_generator_and_checks_counts(gen):
    import numpy as np
    draws = torch.randn(20, generator=gen, dtype=F64)
    lik = lambda mu: Normal(mu[:, None], 1.0)  # noqa: E731
    state = torch.get_rng_state()
    for bad in (None, "seed", np.random.default_rng(0)):
        with pytest.raises(TypeError, match="generator must be a torch.Generator"):
            P.posterior_predictive(lik, draws, generator=bad)
        with pytest.raises(TypeError, match="generator must be a torch.Generator"):
            P.sample_distribution(Normal(0.0, 1.0), (3,), bad)
        with pytest.raises(TypeError, match="generator must be a torch.Generator"):
            P.predictive_summary(lik, draws, generator=bad)
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(TypeError, match="num_per_draw"):
        P.posterior_predictive(lik, draws, generator=gen, num_per_draw=1.5)
    with pytest.raises(ValueError, match="prob"):
        P.credible_interval(draws, float("nan"))
    with pytest.raises(ValueError, match="method"):
        P.credible_interval(draws, 0.5, method="mode")
