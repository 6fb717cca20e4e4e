"""Conjugate families: posteriors against closed forms, log evidence against quadrature over the prior,
Jeffreys / uniform posteriors, sequential == batch updates, and Bayes' rule tying them together.

Everything here runs in float64. Quadrature: scipy.integrate.quad (1-D) and dblquad (NIG over
(mu, log sigma^2); Dirichlet K = 3 over the 2-simplex), with the integrand scaled by a constant c
(any c gives the same answer; it only keeps the numbers representable) and epsrel = 1e-10. The log
evidence must agree to 1e-6 absolute on the log scale, i.e. the evidence to 1e-6 relative.
"""
import math

import numpy as np
import pytest
import scipy.integrate as si
import scipy.stats as st
import torch

from arrcoc.bayes.conjugate import (BetaBinomial, DirichletMultinomial, GammaPoisson, NormalInverseGamma,
                                    NormalNormal)

DT = torch.float64
BATCHES = [(), (3,), (2, 4)]
N_OBS = 5
EV_TOL = 1e-6  # |log evidence - log quadrature| = relative error of the evidence


def _u(gen, shape, lo, hi):
    return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=DT)


def _items(batch):
    return list(np.ndindex(*batch)) if batch else [()]


def _log_quad(logf, lo, hi):
    """log of the integral of exp(logf) over [lo, hi]; logf maps an array of points to an array.

    The integrand is scaled by exp(-c), c = max of logf on a grid (only to keep it representable).
    """
    c = float(np.max(logf(np.linspace(lo, hi, 401)[1:-1])))
    val, _ = si.quad(lambda v: math.exp(float(logf(np.array([v]))[0]) - c), lo, hi, epsabs=0, epsrel=1e-10,
                     limit=500)
    return math.log(val) + c


# ---------------------------------------------------------------------------------------------------------
# data makers (seeded via the `gen` fixture)

def bb_case(gen, batch):
    prior = BetaBinomial(_u(gen, batch, 0.6, 3.0), _u(gen, batch, 0.6, 3.0))
    n = torch.randint(1, 9, batch + (N_OBS,), generator=gen).to(DT)
    k = torch.binomial(n, _u(gen, batch + (N_OBS,), 0.2, 0.8), generator=gen)
    return prior, (k, n)


def gp_case(gen, batch):
    prior = GammaPoisson(_u(gen, batch, 0.6, 3.0), _u(gen, batch, 0.3, 2.0))
    x = torch.poisson(_u(gen, batch + (N_OBS,), 0.5, 4.0), generator=gen)
    return prior, (x,)


def nn_case(gen, batch):
    prior = NormalNormal(_u(gen, batch, -1, 1), _u(gen, batch, 0.5, 2.0), _u(gen, batch, 0.5, 1.5))
    x = 0.7 + torch.randn(batch + (N_OBS,), generator=gen, dtype=DT)
    return prior, (x,)


def nig_case(gen, batch):
    prior = NormalInverseGamma(_u(gen, batch, -1, 1), _u(gen, batch, 0.3, 2.0), _u(gen, batch, 0.8, 3.0),
                               _u(gen, batch, 0.5, 2.0))
    x = 0.5 + 1.3 * torch.randn(batch + (N_OBS,), generator=gen, dtype=DT)
    return prior, (x,)


def dm_case(gen, batch, k=3):
    prior = DirichletMultinomial(_u(gen, batch + (k,), 0.8, 3.0))
    p = torch.distributions.Dirichlet(torch.full((k,), 3.0, dtype=DT)).sample(batch + (N_OBS,))
    n = torch.randint(1, 6, batch + (N_OBS,), generator=gen)
    x = torch.stack([torch.multinomial(pi, int(ni), replacement=True, generator=gen).bincount(minlength=k)
                     for pi, ni in zip(p.reshape(-1, k), n.reshape(-1))]).reshape(batch + (N_OBS, k)).to(DT)
    return prior, (x,)


CASES = {"beta_binomial": bb_case, "gamma_poisson": gp_case, "normal_normal": nn_case,
         "normal_inverse_gamma": nig_case, "dirichlet_multinomial": dm_case}


# ---------------------------------------------------------------------------------------------------------
# closed-form posteriors (written out independently of the package)

@pytest.mark.parametrize("batch", BATCHES)
def test_beta_binomial_posterior_closed_form(gen, batch):
    prior, (k, n) = bb_case(gen, batch)
    post = prior.update(k, n)
    assert post.batch_shape == batch and post.alpha.dtype == DT
    torch.testing.assert_close(post.alpha, prior.alpha + k.sum(-1), rtol=1e-14, atol=0)
    torch.testing.assert_close(post.beta, prior.beta + (n - k).sum(-1), rtol=1e-14, atol=0)


@pytest.mark.parametrize("batch", BATCHES)
def test_gamma_poisson_posterior_closed_form(gen, batch):
    prior, (x,) = gp_case(gen, batch)
    post = prior.update(x)
    torch.testing.assert_close(post.concentration, prior.concentration + x.sum(-1), rtol=1e-14, atol=0)
    torch.testing.assert_close(post.rate, prior.rate + N_OBS, rtol=1e-14, atol=0)


@pytest.mark.parametrize("batch", BATCHES)
def test_normal_normal_posterior_closed_form(gen, batch):
    prior, (x,) = nn_case(gen, batch)
    post = prior.update(x)
    t0, t = prior.scale ** -2, prior.noise_scale ** -2
    var = 1 / (t0 + N_OBS * t)
    torch.testing.assert_close(post.scale, var.sqrt(), rtol=1e-13, atol=0)
    torch.testing.assert_close(post.loc, var * (t0 * prior.loc + t * x.sum(-1)), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(post.noise_scale, prior.noise_scale)


@pytest.mark.parametrize("batch", BATCHES)
def test_normal_inverse_gamma_posterior_closed_form(gen, batch):
    prior, (x,) = nig_case(gen, batch)
    post = prior.update(x)
    m, k, a, b = prior.loc, prior.kappa, prior.alpha, prior.beta
    xbar = x.mean(-1)
    s = ((x - xbar[..., None]) ** 2).sum(-1)
    torch.testing.assert_close(post.kappa, k + N_OBS, rtol=1e-14, atol=0)
    torch.testing.assert_close(post.loc, (k * m + N_OBS * xbar) / (k + N_OBS), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(post.alpha, a + N_OBS / 2, rtol=1e-14, atol=0)
    torch.testing.assert_close(post.beta, b + s / 2 + k * N_OBS * (xbar - m) ** 2 / (2 * (k + N_OBS)), rtol=1e-13, atol=0)


@pytest.mark.parametrize("batch", BATCHES)
def test_dirichlet_multinomial_posterior_closed_form(gen, batch):
    prior, (x,) = dm_case(gen, batch)
    post = prior.update(x)
    assert post.batch_shape == batch and post.concentration.shape == batch + (3,)
    torch.testing.assert_close(post.concentration, prior.concentration + x.sum(-2), rtol=1e-14, atol=0)


# ---------------------------------------------------------------------------------------------------------
# Jeffreys and uniform priors: posteriors in closed form

def test_beta_binomial_jeffreys_and_uniform(gen):
    k = torch.tensor([[2., 0, 5], [1, 1, 1]], dtype=DT)
    n = torch.tensor([[4., 3, 5], [2, 2, 2]], dtype=DT)
    ks, ns = k.sum(-1), n.sum(-1)
    post = BetaBinomial.jeffreys(dtype=DT).update(k, n)
    torch.testing.assert_close(post.alpha, ks + 0.5)
    torch.testing.assert_close(post.beta, ns - ks + 0.5)
    d = post.dist()
    p = torch.tensor([0.3, 0.6], dtype=DT)
    torch.testing.assert_close(d.log_prob(p), torch.from_numpy(st.beta(ks + 0.5, ns - ks + 0.5).logpdf(p)))
    post = BetaBinomial.uniform(dtype=DT).update(k, n)
    torch.testing.assert_close(post.alpha, ks + 1)
    torch.testing.assert_close(post.beta, ns - ks + 1)
    wi = BetaBinomial.weakly_informative(batch_shape=(2,), dtype=DT)
    assert wi.batch_shape == (2,) and torch.equal(wi.alpha, torch.full((2,), 2.0, dtype=DT))


def test_gamma_poisson_jeffreys_and_uniform(gen):
    x = torch.poisson(torch.full((2, 3, 7), 2.5, dtype=DT), generator=gen)
    prior = GammaPoisson.jeffreys(batch_shape=(2, 3), dtype=DT)
    assert prior.allow_improper and not prior.is_proper.any()
    post = prior.update(x)
    assert post.is_proper.all()
    torch.testing.assert_close(post.concentration, x.sum(-1) + 0.5)
    torch.testing.assert_close(post.rate, torch.full((2, 3), 7.0, dtype=DT))
    lam = torch.tensor(2.0, dtype=DT)
    ref = st.gamma(a=(x.sum(-1) + 0.5).numpy(), scale=1 / 7).logpdf(2.0)
    torch.testing.assert_close(post.dist().log_prob(lam), torch.from_numpy(ref))
    post = GammaPoisson.uniform(dtype=DT).update(x)
    torch.testing.assert_close(post.concentration, x.sum(-1) + 1)
    wi = GammaPoisson.weakly_informative(4.0, dtype=DT)
    torch.testing.assert_close(wi.dist().mean, torch.tensor(4.0, dtype=DT))
    torch.testing.assert_close(wi.concentration, torch.tensor(1.0, dtype=DT))


def test_normal_normal_jeffreys_and_uniform(gen):
    x = torch.randn(4, 6, generator=gen, dtype=DT)
    sigma = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=DT)
    for prior in (NormalNormal.jeffreys(sigma), NormalNormal.uniform(sigma)):
        assert not prior.is_proper.any()
        post = prior.update(x)
        torch.testing.assert_close(post.loc, x.mean(-1))
        torch.testing.assert_close(post.scale, sigma / math.sqrt(6))
    wi = NormalNormal.weakly_informative(sigma)
    torch.testing.assert_close(wi.scale, 10 * sigma)


@pytest.mark.parametrize("n", [2, 3, 8])
def test_normal_inverse_gamma_jeffreys(gen, n):
    x = 1.0 + 2.0 * torch.randn(3, n, generator=gen, dtype=DT)
    post = NormalInverseGamma.jeffreys(dtype=DT).update(x)
    xbar, s2 = x.mean(-1), x.var(-1, correction=1)
    marg = post.dist().marginal_mu()
    torch.testing.assert_close(marg.df, torch.full((3,), n - 1.0, dtype=DT))
    torch.testing.assert_close(marg.loc, xbar)
    torch.testing.assert_close(marg.scale, (s2 / n).sqrt())
    mu = torch.tensor(0.7, dtype=DT)
    ref = st.t(df=n - 1, loc=xbar.numpy(), scale=(s2 / n).sqrt().numpy()).logpdf(0.7)
    torch.testing.assert_close(marg.log_prob(mu), torch.from_numpy(ref))
    # sigma^2 | x ~ Scaled-Inv-chi^2(n - 1, s^2) = InvGamma((n - 1)/2, (n - 1) s^2 / 2)
    ref = st.invgamma(a=(n - 1) / 2, scale=((n - 1) * s2 / 2).numpy()).logpdf(1.3)
    torch.testing.assert_close(post.dist().marginal_sigma2().log_prob(torch.tensor(1.3, dtype=DT)),
                               torch.from_numpy(ref))


def test_normal_inverse_gamma_jeffreys_needs_two_points(gen):
    post = NormalInverseGamma.jeffreys(dtype=DT).update(torch.tensor([1.5], dtype=DT))
    assert not post.is_proper
    with pytest.raises(ValueError, match="improper"):
        post.dist()


def test_normal_inverse_gamma_uniform_and_weak(gen):
    n = 9
    x = torch.randn(2, n, generator=gen, dtype=DT)
    post = NormalInverseGamma.uniform(dtype=DT).update(x)
    s = ((x - x.mean(-1, keepdim=True)) ** 2).sum(-1)
    marg = post.dist().marginal_mu()  # flat prior on (mu, sigma^2): t_{n-3}(xbar, S / ((n - 3) n))
    torch.testing.assert_close(marg.df, torch.full((2,), n - 3.0, dtype=DT))
    torch.testing.assert_close(marg.scale, (s / ((n - 3) * n)).sqrt())
    wi = NormalInverseGamma.weakly_informative(scale=2.0, dtype=DT)
    torch.testing.assert_close(torch.stack([wi.kappa, wi.alpha, wi.beta]),
                               torch.tensor([0.01, 0.5, 2.0], dtype=DT))


def test_dirichlet_multinomial_jeffreys_and_uniform(gen):
    counts = torch.tensor([[[1., 0, 3, 2], [0, 0, 1, 1]], [[5, 0, 0, 0], [1, 1, 1, 1]]], dtype=DT)  # (2, N=2, 4)
    post = DirichletMultinomial.jeffreys(4, dtype=DT).update(counts)
    torch.testing.assert_close(post.concentration, counts.sum(-2) + 0.5)
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=DT)
    ref = [st.dirichlet(a.numpy()).logpdf(p.numpy()) for a in counts.sum(-2) + 0.5]
    torch.testing.assert_close(post.dist().log_prob(p), torch.tensor(ref, dtype=DT))
    torch.testing.assert_close(DirichletMultinomial.uniform(4, dtype=DT).update(counts).concentration,
                               counts.sum(-2) + 1)
    assert torch.equal(DirichletMultinomial.weakly_informative(2).concentration, torch.full((2,), 2.0))


# ---------------------------------------------------------------------------------------------------------
# log evidence against quadrature over the prior

def _bb_quad(a, b, k, n):
    def logf(p):  # (P,) -> (P,)
        return st.binom.logpmf(k[:, None], n[:, None], p).sum(0) + st.beta.logpdf(p, a, b)
    return _log_quad(logf, 0.0, 1.0)


def _gp_quad(a, b, x):
    # substitute lam = exp(u): integral of p(x | lam) p(lam) lam du
    a_n, b_n = a + x.sum(), b + len(x)
    centre = math.log(a_n / b_n)

    def logf(u):  # (P,) -> (P,)
        lam = np.exp(u)
        return st.poisson.logpmf(x[:, None], lam).sum(0) + st.gamma.logpdf(lam, a, scale=1 / b) + u
    return _log_quad(logf, centre - 5 - 60 / a_n, centre + 6)


def _nn_quad(m, s0, s, x):
    t_n = 1 / s0 ** 2 + len(x) / s ** 2
    m_n = (m / s0 ** 2 + x.sum() / s ** 2) / t_n
    sd = t_n ** -0.5

    def logf(mu):  # (P,) -> (P,)
        return st.norm.logpdf(x[:, None], mu, s).sum(0) + st.norm.logpdf(mu, m, s0)
    return _log_quad(logf, m_n - 40 * sd, m_n + 40 * sd)


def _nig_logf(m, k, a, b, x):
    """log [p(x | mu, s2) p(mu, s2) s2] at (mu, t = log s2), from sufficient statistics."""
    n, xbar = len(x), x.mean()
    ss = ((x - xbar) ** 2).sum()
    const = a * math.log(b) - math.lgamma(a) + 0.5 * math.log(k) - 0.5 * (n + 1) * math.log(2 * math.pi)

    def logf(mu, t):
        s2 = math.exp(t)
        return (const - 0.5 * (n + 1) * t - (ss + n * (xbar - mu) ** 2 + k * (mu - m) ** 2) / (2 * s2)
                - (a + 1) * t - b / s2 + t)
    return logf


def _nig_quad(m, k, a, b, x):
    logf = _nig_logf(m, k, a, b, x)
    # the scalar integrand must be the real density: check it against scipy at two points
    for mu, s2 in ((0.3, 0.8), (-1.0, 2.5)):
        ref = (st.norm.logpdf(x, mu, math.sqrt(s2)).sum() + st.norm.logpdf(mu, m, math.sqrt(s2 / k))
               + st.invgamma.logpdf(s2, a, scale=b) + math.log(s2))
        assert abs(logf(mu, math.log(s2)) - ref) < 1e-10
    n, xbar = len(x), x.mean()
    k_n, a_n = k + n, a + n / 2
    m_n = (k * m + n * xbar) / k_n
    b_n = b + 0.5 * ((x - xbar) ** 2).sum() + k * n * (xbar - m) ** 2 / (2 * k_n)
    t0 = math.log(b_n / a_n)  # a point near the mode of log sigma^2
    c = logf(m_n, t0)

    def g(mu, t):
        return math.exp(logf(mu, t) - c)
    val, _ = si.dblquad(g, t0 - 6, t0 + 45 / a_n, lambda t: m_n - 12 * math.sqrt(math.exp(t) / k_n),
                        lambda t: m_n + 12 * math.sqrt(math.exp(t) / k_n), epsabs=0, epsrel=1e-10)
    return math.log(val) + c


def _dm_quad(alpha, x):
    """2-D integral over the simplex (K = 3) of prod_i Mult(x_i | p) Dir(p | alpha)."""
    assert alpha.shape == (3,)
    xs = x.sum(0)
    log_coef = sum(math.lgamma(r.sum() + 1) - sum(math.lgamma(v + 1) for v in r) for r in x)
    log_norm = sum(math.lgamma(v) for v in alpha) - math.lgamma(alpha.sum())
    e = xs + alpha - 1

    def logf(p1, p2):
        p3 = 1 - p1 - p2
        return log_coef - log_norm + e[0] * math.log(p1) + e[1] * math.log(p2) + e[2] * math.log(p3)
    p = np.array([0.2, 0.3, 0.5])
    ref = sum(st.multinomial.logpmf(r, r.sum(), p) for r in x) + st.dirichlet.logpdf(p, alpha)
    assert abs(logf(p[0], p[1]) - ref) < 1e-10
    q = (xs + alpha) / (xs + alpha).sum()
    c = logf(q[0], q[1])

    def g(p2, p1):
        if p1 + p2 >= 1:
            return 0.0
        return math.exp(logf(p1, p2) - c)
    val, _ = si.dblquad(g, 0, 1, 0, lambda p1: 1 - p1, epsabs=0, epsrel=1e-10)
    return math.log(val) + c


def _quad_ref(family, prior, data, idx):
    pick = lambda t: t[idx].numpy()  # noqa: E731
    if family == "beta_binomial":
        return _bb_quad(pick(prior.alpha), pick(prior.beta), pick(data[0]), pick(data[1]))
    if family == "gamma_poisson":
        return _gp_quad(float(pick(prior.concentration)), float(pick(prior.rate)), pick(data[0]))
    if family == "normal_normal":
        return _nn_quad(float(pick(prior.loc)), float(pick(prior.scale)), float(pick(prior.noise_scale)),
                        pick(data[0]))
    if family == "normal_inverse_gamma":
        return _nig_quad(*(float(pick(t)) for t in (prior.loc, prior.kappa, prior.alpha, prior.beta)),
                         pick(data[0]))
    return _dm_quad(pick(prior.concentration), pick(data[0]))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("family", list(CASES))
def test_log_evidence_matches_quadrature(gen, family, batch):
    prior, data = CASES[family](gen, batch)
    got = prior.log_evidence(*data)
    assert got.shape == batch and got.dtype == DT
    ref = torch.tensor([_quad_ref(family, prior, data, idx) for idx in _items(batch)], dtype=DT).reshape(batch)
    torch.testing.assert_close(got, ref, rtol=0, atol=EV_TOL)


def test_log_evidence_proper_jeffreys_matches_quadrature():
    """The proper Jeffreys priors (Beta(1/2,1/2), Dir(1/2,...)) have a finite evidence; check it too."""
    k, n = torch.tensor([3.0, 1.0, 4.0], dtype=DT), torch.tensor([5.0, 2.0, 6.0], dtype=DT)
    got = BetaBinomial.jeffreys(dtype=DT).log_evidence(k, n)
    assert abs(float(got) - _bb_quad(0.5, 0.5, k.numpy(), n.numpy())) < EV_TOL
    x = torch.tensor([[2.0, 1, 0], [0, 1, 3], [1, 0, 0]], dtype=DT)
    got = DirichletMultinomial.jeffreys(3, dtype=DT).log_evidence(x)
    assert abs(float(got) - _dm_quad(np.full(3, 0.5), x.numpy())) < EV_TOL


@pytest.mark.parametrize("family", ["gamma_poisson", "normal_normal", "normal_inverse_gamma"])
def test_improper_prior_evidence_raises(family):
    """Jeffreys and uniform priors of these families are improper (those of the other two are proper)."""
    improper = {"gamma_poisson": GammaPoisson.jeffreys(dtype=DT), "normal_normal": NormalNormal.jeffreys(1.0),
                "normal_inverse_gamma": NormalInverseGamma.jeffreys(dtype=DT)}
    improper_uniform = {"gamma_poisson": GammaPoisson.uniform(), "normal_normal": NormalNormal.uniform(1.0),
                        "normal_inverse_gamma": NormalInverseGamma.uniform()}
    data = torch.tensor([1.0, 2.0, 4.0, 0.0], dtype=DT)
    for prior in (improper[family], improper_uniform[family]):
        with pytest.raises(ValueError, match="log_evidence is undefined for an improper"):
            prior.log_evidence(data)
        with pytest.raises(ValueError, match="improper"):
            prior.predictive()
        # ... but the posterior from enough data is proper and has a finite evidence for new data
        post = prior.update(data)
        assert post.is_proper.all()
        assert torch.isfinite(post.log_evidence(torch.tensor([3.0], dtype=DT)))


# ---------------------------------------------------------------------------------------------------------
# sequential == batch, chain rule of the evidence, Bayes' rule

def _split(family, data, cut):
    ax = -2 if family == "dirichlet_multinomial" else -1
    first = tuple(d.narrow(ax, 0, cut) for d in data)
    second = tuple(d.narrow(ax, cut, d.shape[ax] - cut) for d in data)
    return first, second


@pytest.mark.parametrize("family", list(CASES))
def test_sequential_equals_batch_and_evidence_chain_rule(gen, family):
    prior, data = CASES[family](gen, (2, 3))
    first, second = _split(family, data, 2)
    once = prior.update(*data)
    twice = prior.update(*first).update(*second)
    one_by_one = prior
    ax = -2 if family == "dirichlet_multinomial" else -1
    for i in range(N_OBS):
        one_by_one = one_by_one.update(*(d.narrow(ax, i, 1) for d in data))
    for k in once._fields:
        torch.testing.assert_close(getattr(twice, k), getattr(once, k), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(getattr(one_by_one, k), getattr(once, k), rtol=1e-12, atol=1e-12)
    # log p(x1, x2) = log p(x1) + log p(x2 | x1)
    torch.testing.assert_close(prior.log_evidence(*data),
                               prior.log_evidence(*first) + prior.update(*first).log_evidence(*second),
                               rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("family", ["gamma_poisson", "normal_normal", "normal_inverse_gamma"])
def test_sequential_equals_batch_from_improper_prior(gen, family):
    prior = {"gamma_poisson": GammaPoisson.jeffreys(dtype=DT), "normal_normal": NormalNormal.jeffreys(
        torch.tensor(1.5, dtype=DT)), "normal_inverse_gamma": NormalInverseGamma.jeffreys(dtype=DT)}[family]
    x = torch.poisson(torch.full((4, 6), 3.0, dtype=DT), generator=gen)
    once, twice = prior.update(x), prior.update(x[:, :1]).update(x[:, 1:])
    for k in once._fields:
        torch.testing.assert_close(getattr(twice, k), getattr(once, k), rtol=1e-12, atol=1e-12)


def _log_lik(family, data, theta):
    """Independent log-likelihood from scipy.stats at one parameter value (per batch element)."""
    if family == "beta_binomial":
        return st.binom.logpmf(data[0], data[1], theta).sum()
    if family == "gamma_poisson":
        return st.poisson.logpmf(data[0], theta).sum()
    if family == "normal_normal":
        mu, s = theta
        return st.norm.logpdf(data[0], mu, s).sum()
    if family == "normal_inverse_gamma":
        return st.norm.logpdf(data[0], theta[0], math.sqrt(theta[1])).sum()
    return sum(st.multinomial.logpmf(r, r.sum(), theta) for r in data[0])


@pytest.mark.parametrize("family", list(CASES))
def test_bayes_rule_identity(gen, family):
    """log posterior(theta) = log prior(theta) + log lik(theta) - log evidence, at several theta."""
    prior, data = CASES[family](gen, (3,))
    post = prior.update(*data)
    ev = prior.log_evidence(*data)
    thetas = {"beta_binomial": [torch.tensor(v, dtype=DT) for v in (0.3, 0.55)],
              "gamma_poisson": [torch.tensor(v, dtype=DT) for v in (1.2, 3.0)],
              "normal_normal": [torch.tensor(v, dtype=DT) for v in (0.1, 0.9)],
              "normal_inverse_gamma": [torch.tensor(v, dtype=DT) for v in ([0.2, 1.1], [1.0, 2.0])],
              "dirichlet_multinomial": [torch.tensor(v, dtype=DT) for v in ([0.2, 0.3, 0.5], [0.4, 0.4, 0.2])]}
    for theta in thetas[family]:
        lhs = post.dist().log_prob(theta)
        for i in range(3):
            d_i = tuple(d[i].numpy() for d in data)
            th = theta.numpy()
            if family == "normal_normal":
                th = (float(theta), float(prior.noise_scale[i]))
            rhs = float(prior.dist().log_prob(theta)[i]) + _log_lik(family, d_i, th) - float(ev[i])
            assert abs(float(lhs[i]) - rhs) < 1e-9
