"""Variational inference: ELBO vs exact log evidence, CAVI vs exact posteriors, minibatch scaling, Pyro."""
import itertools
import math
import warnings

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from arrcoc.bayes.conjugate import NormalNormal
from arrcoc.bayes.vi import (FullRankNormal, MeanFieldNormal, cavi_gaussian_mixture, cavi_linear_regression, elbo,
                             VIConfig, fit_pyro, fit_vi, gaussian_kl, minibatch, relative_change)

F64 = torch.float64



def _regression(gen, n=40, d=3, sig=0.7, prior_sd=2.0):
    X = torch.randn(n, d, generator=gen, dtype=F64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=F64)[:d] + sig * torch.randn(n, generator=gen, dtype=F64)
    logz = MultivariateNormal(torch.zeros(n, dtype=F64), prior_sd ** 2 * X @ X.T + sig ** 2 * torch.eye(n, dtype=F64)).log_prob(y)
    prec = X.T @ X / sig ** 2 + torch.eye(d, dtype=F64) / prior_sd ** 2
    cov = torch.linalg.inv(prec)
    return X, y, float(logz), cov @ X.T @ y / sig ** 2, cov


def _lik(sig):
    return lambda z, Xb, yb: Normal(z @ Xb.T, sig).log_prob(yb)  # (S, b)


@pytest.mark.parametrize("kl,opts", [("stl", {}), ("mc", {"num_samples": 64}),
                                     # analytic KL: gradient noise never vanishes, so run the full lr decay
                                     ("analytic", {"num_samples": 64, "num_steps": 1500, "tol": 0.0})])
def test_fullrank_elbo_reaches_log_evidence(gen, kl, opts):
    X, y, logz, mean, cov = _regression(gen)
    prior = Normal(torch.zeros(3, dtype=F64), 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # tol = 0 never "converges"
        res = fit_vi(_lik(0.7), prior, data=(X, y), generator=gen, family="fullrank", kl=kl, **opts)
    assert res.converged or kl == "analytic"
    assert res.elbo <= logz + 3 * res.elbo_se + 1e-9
    assert logz - res.elbo < 1e-2
    torch.testing.assert_close(res.mean, mean, atol=2e-2, rtol=0)
    torch.testing.assert_close(res.covariance(), cov, atol=2e-3, rtol=0)
    draws = res.sample(20000, torch.Generator().manual_seed(1))
    assert draws.shape == (20000, 3)
    torch.testing.assert_close(draws.mean(0), res.mean, atol=0.01, rtol=0)
    assert torch.equal(draws, res.sample(20000, torch.Generator().manual_seed(1)))


def test_meanfield_elbo_normal_normal(gen):
    x = torch.randn(30, generator=gen, dtype=F64) + 1.0
    model = NormalNormal(torch.tensor(0.0, dtype=F64), torch.tensor(3.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    logz = float(model.log_evidence(x))
    post = model.update(x).dist()
    res = fit_vi(lambda z: Normal(z, 1.0).log_prob(x), Normal(torch.zeros(1, dtype=F64), 3.0), generator=gen,
                 family="meanfield", kl="stl")
    assert res.elbo <= logz + 3 * res.elbo_se + 1e-9 and logz - res.elbo < 1e-2
    assert abs(float(res.mean[0]) - float(post.loc)) < 5e-3
    assert abs(float(res.covariance()[0, 0].sqrt()) - float(post.scale)) < 5e-3
    assert "meanfield" in str(res) and "ELBO" in str(res)


def test_elbo_estimators_agree_and_kl_is_exact(gen):
    q = FullRankNormal(2, loc=torch.tensor([0.3, -0.2], dtype=F64), scale=0.5)
    with torch.no_grad():
        q.tril_offdiag.copy_(torch.tensor([[0.0, 0.0], [0.2, 0.0]], dtype=F64))
    prior = MultivariateNormal(torch.zeros(2, dtype=F64), torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=F64))
    torch.testing.assert_close(q.kl_to(prior.loc, prior.scale_tril), torch.distributions.kl_divergence(q.dist(), prior))
    mf = MeanFieldNormal(2, scale=0.7)
    torch.testing.assert_close(gaussian_kl(mf.loc, mf.scale_tril(), prior.loc, prior.scale_tril),
                               torch.distributions.kl_divergence(MultivariateNormal(mf.loc, mf.covariance()), prior))
    torch.testing.assert_close(q.log_prob(torch.ones(4, 2, dtype=F64)), q.dist().log_prob(torch.ones(4, 2, dtype=F64)))
    torch.testing.assert_close(q.entropy(), q.dist().entropy())
    ll = lambda z: -0.5 * (z ** 2).sum(-1) * 3.0  # noqa: E731
    with torch.no_grad():
        a = elbo(q, ll, prior, num_samples=200000, generator=gen, kl="analytic")
        m = elbo(q, ll, prior, num_samples=200000, generator=gen, kl="mc")
    assert abs(float(a - m)) < 0.02


def test_minibatch_scaling_unbiased(gen):
    X, y, logz, *_ = _regression(gen, n=60)
    prior = Normal(torch.zeros(3, dtype=F64), 2.0)
    q = FullRankNormal(3, loc=torch.tensor([1.0, -2.0, 0.5], dtype=F64), scale=0.1)
    from arrcoc.bayes.vi import minibatch
    full = elbo(q, _lik(0.7), prior, num_samples=4000, generator=torch.Generator().manual_seed(0), batch=(X, y)).item()
    vals = []
    for _ in range(200):
        batch, scale = minibatch((X, y), 10, gen)
        assert scale == 6.0 and batch[0].shape == (10, 3)
        vals.append(elbo(q, _lik(0.7), prior, num_samples=64, generator=gen, batch=batch, scale=scale).item())
    v = torch.tensor(vals)
    assert abs(float(v.mean()) - full) < 4 * float(v.std()) / math.sqrt(len(v)) + 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_vi(_lik(0.7), prior, data=(X, y), generator=gen, family="fullrank", batch_size=15, num_steps=1000)
    assert res.elbo <= logz + 3 * res.elbo_se + 1e-9 and logz - res.elbo < 0.1


def test_cavi_linear_regression_known_noise_is_exact(gen):
    X, y, logz, mean, cov = _regression(gen)
    res = cavi_linear_regression(X, y, prior_precision=0.25, noise_precision=1 / 0.7 ** 2)
    torch.testing.assert_close(res.mean, mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(res.cov, cov, rtol=1e-10, atol=1e-12)
    assert float(res.elbo) == pytest.approx(logz, abs=1e-9)


def test_cavi_linear_regression_unknown_noise(gen):
    X, y, *_ = _regression(gen, n=30)
    a0, b0 = 2.0, 1.0
    res = cavi_linear_regression(X, y, prior_precision=0.25, a0=a0, b0=b0)
    assert res.converged and (res.elbo_trace.diff() > -1e-10).all()  # CAVI never decreases the ELBO
    # exact posterior by quadrature over tau: w | tau, y is Gaussian
    taus = torch.linspace(1e-3, 12, 12001, dtype=F64)
    cov_y = 4.0 * X @ X.T + torch.eye(30, dtype=F64) / taus[:, None, None]
    lp = torch.distributions.Gamma(a0, b0).log_prob(taus) + MultivariateNormal(torch.zeros(30, dtype=F64), cov_y).log_prob(y)
    logz = float(torch.logsumexp(lp, 0) + math.log(float(taus[1] - taus[0])))
    w = torch.softmax(lp, 0)
    mw = torch.linalg.solve(0.25 * torch.eye(3, dtype=F64) + taus[:, None, None] * (X.T @ X), taus[:, None] * (X.T @ y))
    assert float(res.elbo) <= logz and logz - float(res.elbo) < 0.2
    torch.testing.assert_close(res.mean, (w[:, None] * mw).sum(0), atol=5e-3, rtol=0)
    assert float(res.tau_mean) == pytest.approx(float((w * taus).sum()), rel=0.02)
    s = res.sample(20000, gen)
    assert s["w"].shape == (20000, 3) and s["tau"].shape == (20000,)
    assert abs(float(s["tau"].mean()) - float(res.tau_mean)) < 4 * float(s["tau"].std()) / math.sqrt(20000)
    # batched == one at a time
    X2, y2 = torch.stack([X, X.flip(0)]), torch.stack([y, y + 1])
    rb = cavi_linear_regression(X2, y2, prior_precision=0.25, a0=a0, b0=b0)
    torch.testing.assert_close(rb.mean[0], res.mean)
    torch.testing.assert_close(rb.mean[1], cavi_linear_regression(X.flip(0), y + 1, prior_precision=0.25, a0=a0, b0=b0).mean)


def test_cavi_gmm_one_component_is_exact(gen):
    x = torch.randn(25, generator=gen, dtype=F64) * 0.8 + 2.0
    res = cavi_gaussian_mixture(x, 1, sigma=0.8, prior_mean=0.0, prior_scale=3.0, generator=gen)
    exact = NormalNormal(torch.tensor(0.0, dtype=F64), torch.tensor(3.0, dtype=F64), torch.tensor(0.8, dtype=F64))
    post = exact.update(x).dist()
    assert float(res.means[0, 0]) == pytest.approx(float(post.loc), abs=1e-10)
    assert float(res.variances[0]) == pytest.approx(float(post.scale) ** 2, abs=1e-12)
    assert float(res.elbo) == pytest.approx(float(exact.log_evidence(x)), abs=1e-9)


def test_cavi_gmm_two_components_bounded_by_exact_evidence(gen):
    x = torch.tensor([-2.1, -1.7, -2.6, -1.2, 1.9, 2.4, 1.5, 2.8], dtype=F64)
    sig, s0 = 0.7, 3.0
    res = cavi_gaussian_mixture(x, 2, sigma=sig, prior_scale=s0, init_means=torch.tensor([[-1.0], [1.0]], dtype=F64))
    assert res.converged and (res.elbo_trace.diff() > -1e-9).all()
    # exact evidence: sum over all 2^8 assignments of (1/2)^n p(x | assignment)
    terms = []
    for assign in itertools.product([0, 1], repeat=len(x)):
        a = torch.tensor(assign)
        lz = len(x) * math.log(0.5)
        for k in (0, 1):
            xs = x[a == k]
            if len(xs):
                lz += float(MultivariateNormal(torch.zeros(len(xs), dtype=F64),
                                               s0 ** 2 * torch.ones(len(xs), len(xs), dtype=F64) + sig ** 2 * torch.eye(len(xs), dtype=F64)).log_prob(xs))
        terms.append(lz)
    logz = float(torch.logsumexp(torch.tensor(terms), 0))
    assert float(res.elbo) <= logz + 1e-9
    assert logz - float(res.elbo) < math.log(2) + 0.1  # label switching costs at most log 2 (+ small)
    torch.testing.assert_close(res.means[:, 0], torch.tensor([x[:4].mean(), x[4:].mean()], dtype=F64), atol=0.05, rtol=0)
    s = res.sample(100, gen)
    assert s["mu"].shape == (100, 2, 1) and s["c"].shape == (100, 8)
    assert (s["c"][:, :4] == 0).float().mean() > 0.95


def test_pyro_svi_same_result_object(gen):
    pyro = pytest.importorskip("pyro")
    import pyro.distributions as pdist
    from pyro.infer.autoguide import AutoNormal
    x = torch.randn(20, generator=gen, dtype=F64) + 1.5

    def model(x):
        mu = pyro.sample("mu", pdist.Normal(torch.tensor(0.0, dtype=F64), 2.0))
        with pyro.plate("n", len(x)):
            pyro.sample("x", pdist.Normal(mu, 1.0), obs=x)
    exact = NormalNormal(torch.tensor(0.0, dtype=F64), torch.tensor(2.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    post = exact.update(x).dist()
    res = fit_pyro(model, AutoNormal(model, init_scale=0.1), x, generator=torch.Generator().manual_seed(0),
                   num_steps=200, lr=0.05, num_particles=8, min_steps=100, window=50, tol=1e-3)
    assert type(res).__name__ == "VIResult" and res.method == "pyro-svi"
    logz = float(exact.log_evidence(x))
    assert res.elbo <= logz + 4 * res.elbo_se and logz - res.elbo < 0.05
    draws = res.sample(2000, torch.Generator().manual_seed(1))["mu"]
    assert abs(float(draws.mean()) - float(post.loc)) < 0.03
    assert abs(float(draws.std()) - float(post.scale)) < 0.03
    assert torch.equal(draws, res.sample(2000, torch.Generator().manual_seed(1))["mu"])


def test_convergence_check_and_progress(gen, capsys):
    assert relative_change([1.0] * 10, 10) == math.inf
    assert relative_change([10.0] * 10 + [10.1] * 10, 10) == pytest.approx(0.1 / 10.1)
    res = fit_vi(lambda z: Normal(z, 1.0).log_prob(torch.tensor([0.5], dtype=F64)), Normal(torch.zeros(1, dtype=F64), 1.0),
                 generator=gen, kl="stl", progress=True, num_steps=2000)
    assert res.converged and res.num_steps < 2000 and len(res.elbo_trace) == res.num_steps
    assert "VI" in capsys.readouterr().err


def test_vi_bad_input(gen):
    prior = Normal(torch.zeros(2, dtype=F64), 1.0)
    ll = lambda z: -(z ** 2).sum(-1)  # noqa: E731
    with pytest.raises(ValueError, match="family"):
        fit_vi(ll, prior, generator=gen, family="banana")
    with pytest.raises(ValueError, match="analytic"):
        fit_vi(ll, lambda z: -(z ** 2).sum(-1), 2, generator=gen, kl="analytic")
    with pytest.raises(ValueError, match="dim"):
        fit_vi(ll, lambda z: -(z ** 2).sum(-1), generator=gen)
    with pytest.raises(ValueError, match="first dimension"):
        fit_vi(lambda z, a, b: a.sum() + z.sum(-1), prior, data=(torch.zeros(5), torch.zeros(4)), generator=gen)
    with pytest.raises(ValueError, match="log_likelihood must return"):
        fit_vi(lambda z: z[:, :, None], prior, generator=gen)
    with pytest.raises(ValueError, match="y must have shape"):
        cavi_linear_regression(torch.zeros(5, 2, dtype=F64), torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match="num_components"):
        cavi_gaussian_mixture(torch.zeros(5, dtype=F64), 6)
    with pytest.raises(ValueError, match="NaN"):
        cavi_gaussian_mixture(torch.tensor([0.0, float("nan")], dtype=F64), 1)


# -------------------------------------------------------------------------------- boundary checks
def _std_normal_prior():
    return Normal(torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64))


def test_fit_vi_refuses_zero_steps_and_bad_settings(gen):
    """fit_vi(num_steps=0) returned the initial guess as a fitted result."""
    prior = _std_normal_prior()
    ll = lambda z: -(z ** 2).sum(-1)  # noqa: E731
    for bad, err, msg in (({"num_steps": 0}, ValueError, "num_steps must be >= 1"), ({"num_steps": 2.5}, TypeError, "num_steps"),
                          ({"lr": float("nan")}, ValueError, "lr"), ({"lr": -0.1}, ValueError, "lr"),
                          ({"num_samples": 0}, ValueError, "num_samples"), ({"window": 0}, ValueError, "window"),
                          ({"batch_size": 0}, ValueError, "batch_size"), ({"init_scale": 0.0}, ValueError, "init_scale"),
                          ({"final_lr_fraction": 1.5}, ValueError, "final_lr_fraction"), ({"final_samples": 1}, ValueError, "final_samples"),
                          ({"tol": float("inf")}, ValueError, "tol"), ({"kl": "exact"}, ValueError, "kl"),
                          ({"dim": 0}, ValueError, "dim"), ({"config": "fast"}, TypeError, "config")):
        with pytest.raises(err, match=msg):
            fit_vi(ll, prior, generator=gen, **bad)
    with pytest.raises(ValueError, match="num_steps"):
        VIConfig(num_steps=0)


@pytest.mark.parametrize("bad", ["seed", None, 3, "numpy"])
def test_vi_entry_points_require_a_torch_generator(gen, bad):
    import numpy as np
    bad = np.random.default_rng(0) if bad == "numpy" else bad
    prior = _std_normal_prior()
    ll = lambda z: -(z ** 2).sum(-1)  # noqa: E731
    q = MeanFieldNormal(2)
    calls = [lambda: fit_vi(ll, prior, generator=bad), lambda: q.rsample(3, bad), lambda: q.sample(3, bad),
             lambda: elbo(q, ll, prior, num_samples=2, generator=bad),
             lambda: minibatch((torch.zeros(10, 1),), 3, bad),
             lambda: cavi_gaussian_mixture(torch.randn(10, generator=gen, dtype=F64), 2, generator=bad)]
    state = torch.get_rng_state()
    for call in calls:
        with pytest.raises(TypeError, match="generator must be a torch.Generator"):
            call()
    assert torch.equal(state, torch.get_rng_state())  # the global RNG was not touched
