"""Model comparison: bridge sampling / Bayes factors vs exact conjugate evidence; WAIC / PSIS-LOO vs ArviZ."""
import math
import warnings

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from arrcoc.bayes import compare as C
from arrcoc.bayes.conjugate import NormalInverseGamma, NormalNormal
from arrcoc.bayes.laplace import laplace

F64 = torch.float64



def _data(gen, n=25, shift=1.3):
    return torch.randn(n, generator=gen, dtype=F64) + shift


# ------------------------------------------------------------------------------ evidence / Bayes factors
def _nn_bridge(x, prior_scale, gen, n_draws=4000):
    model = NormalNormal(torch.tensor(0.0, dtype=F64), torch.tensor(prior_scale, dtype=F64), torch.tensor(1.0, dtype=F64))
    post = model.update(x).dist()
    draws = post.loc + post.scale * torch.randn(n_draws, 1, generator=gen, dtype=F64)  # exact posterior draws

    def log_q(t):  # (n, 1) -> (n,)  log p(x | mu) + log p(mu)
        return Normal(t, 1.0).log_prob(x).sum(-1) + Normal(torch.tensor(0.0, dtype=F64), prior_scale).log_prob(t[:, 0])
    return C.bridge_sampling(log_q, draws, generator=gen), float(model.log_evidence(x)), log_q


def test_bridge_sampling_normal_normal_exact(gen):
    x = _data(gen)
    res, exact, _ = _nn_bridge(x, 2.0, gen)
    assert res.converged and abs(res.log_evidence - exact) < 0.05
    assert math.sqrt(res.rel_mse) < 0.05
    assert "log_evidence" in str(res)


def test_bridge_sampling_normal_inverse_gamma_exact(gen):
    """Non-Gaussian 2-d posterior on (mu, log sigma^2), with the log-Jacobian in the density."""
    x = _data(gen, n=15) * 1.7
    prior = NormalInverseGamma(torch.tensor(0.0, dtype=F64), torch.tensor(0.5, dtype=F64),
                               torch.tensor(2.0, dtype=F64), torch.tensor(2.0, dtype=F64))
    exact = float(prior.log_evidence(x))
    post = prior.update(x)
    n = 6000
    s2 = post.beta / torch._standard_gamma(post.alpha.expand(n).contiguous(), generator=gen)  # InvGamma draws
    mu = post.loc + (s2 / post.kappa).sqrt() * torch.randn(n, generator=gen, dtype=F64)
    draws = torch.stack([mu, s2.log()], -1)

    def log_q(t):
        m, ls2 = t[:, 0], t[:, 1]
        s2 = ls2.exp()
        lp = torch.distributions.InverseGamma(prior.alpha, prior.beta).log_prob(s2) + ls2  # + log-Jacobian
        lp = lp + Normal(prior.loc, (s2 / prior.kappa).sqrt()).log_prob(m)
        return lp + Normal(m[:, None], s2.sqrt()[:, None]).log_prob(x).sum(-1)
    res = C.bridge_sampling(log_q, draws, generator=gen)
    assert abs(res.log_evidence - exact) < 0.05


def test_bayes_factor_bridge_vs_exact(gen):
    x = _data(gen)
    r1, e1, _ = _nn_bridge(x, 1.0, gen)
    r2, e2, _ = _nn_bridge(x, 10.0, gen)
    bf = C.bayes_factor(r1, r2)
    assert abs(float(bf.log_bf) - (e1 - e2)) < 0.05
    exact = C.bayes_factor(e1, e2)
    assert float(exact.log_bf) == pytest.approx(e1 - e2)
    assert "M1" in exact.interpretation() and "BF_12" in str(exact)


def test_bayes_factor_laplace_evidence_exact_for_gaussian(gen):
    x = _data(gen)
    ev = []
    for scale in (1.0, 10.0):
        res = laplace(lambda t: Normal(t, 1.0).log_prob(x).sum() + Normal(torch.tensor(0.0, dtype=F64), scale).log_prob(t).sum(),
                      torch.zeros(1, dtype=F64))
        exact = float(NormalNormal(torch.tensor(0.0, dtype=F64), torch.tensor(scale, dtype=F64),
                                   torch.tensor(1.0, dtype=F64)).log_evidence(x))
        assert res.log_evidence == pytest.approx(exact, abs=1e-8)
        ev.append((res, exact))
    bf = C.bayes_factor(ev[0][0], ev[1][0])
    assert float(bf.log_bf) == pytest.approx(ev[0][1] - ev[1][1], abs=1e-8)


def test_bridge_and_bayes_factor_bad_input(gen):
    x = _data(gen)
    _, _, log_q = _nn_bridge(x, 2.0, gen, n_draws=10)
    with pytest.raises(ValueError, match="draws"):
        C.bridge_sampling(log_q, torch.tensor([[float("nan")]] * 100, dtype=F64), generator=gen)
    with pytest.raises(ValueError, match="at least"):
        C.bridge_sampling(log_q, torch.zeros(3, 1, dtype=F64), generator=gen)
    with pytest.raises(ValueError, match=r"\(n,\)"):
        C.bridge_sampling(lambda t: t, torch.randn(100, 1, generator=gen, dtype=F64), generator=gen)
    with pytest.raises(ValueError, match="finite"):
        C.bayes_factor(float("nan"), 1.0)


# ---------------------------------------------------------------------------------------- WAIC / LOO
def _log_lik(gen, chains=4, draws=500, outlier=6.0, n=20):
    """Pointwise log-lik (chain, draw, n) of a normal-mean model under exact posterior draws."""
    y = torch.cat([torch.randn(n - 1, generator=gen, dtype=F64), torch.tensor([outlier], dtype=F64)])
    pv = 1 / (1 + n)
    mu = pv * y.sum() + math.sqrt(pv) * torch.randn(chains, draws, generator=gen, dtype=F64)
    return Normal(mu[..., None], 1.0).log_prob(y)


def _idata(ll):
    az = pytest.importorskip("arviz")
    ll = np.asarray(ll)
    return az.from_dict(posterior={"mu": ll[..., 0]}, log_likelihood={"y": ll})


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


@pytest.mark.parametrize("r_eff", [1.0, 0.7])
def test_loo_matches_arviz_legacy(gen, r_eff):
    az = pytest.importorskip("arviz")
    ll = _log_lik(gen, outlier=12.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = az.loo(_idata(ll), pointwise=True, reff=r_eff)
        mine = C.loo(ll, r_eff=r_eff)
    assert _rel(mine.elpd, ref.elpd_loo) < 1e-6 and _rel(mine.p, ref.p_loo) < 1e-6 and _rel(mine.se, ref.se) < 1e-6
    assert _rel(mine.elpd_i, ref.loo_i.values) < 1e-6
    assert _rel(mine.pareto_k, ref.pareto_k.values) < 1e-6
    assert mine.warning == bool(ref.warning)
    assert float(mine.pareto_k[-1]) > 0.5 > float(mine.pareto_k[:-1].max())  # the outlier stands out


def test_loo_matches_arviz_stats(gen):
    array_stats = pytest.importorskip("arviz_stats.base").array_stats
    ll = _log_lik(gen)
    elpd_i, k, p_i = array_stats.loo(np.moveaxis(ll.numpy(), -1, 0), chain_axis=-2, draw_axis=-1, r_eff=1.0)
    mine = C.loo(ll, tail="arviz_stats")
    assert _rel(mine.elpd_i, elpd_i) < 1e-6 and _rel(mine.pareto_k, k) < 1e-6 and _rel(mine.p_i, p_i) < 1e-6
    # arviz-stats' psislw takes log-likelihood values and smooths the ratios 1 / p(y | θ) (= exp(-input))
    lw, kk = array_stats.psislw(np.moveaxis(ll.numpy(), -1, 0).reshape(20, -1), r_eff=1.0)
    mlw, mk = C.psis(-ll.reshape(-1, 20).T, 1.0, tail="arviz_stats")
    assert _rel(mlw, lw) < 1e-6 and _rel(mk, kk) < 1e-6


def test_waic_matches_arviz(gen):
    az = pytest.importorskip("arviz")
    ll = _log_lik(gen, outlier=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = az.waic(_idata(ll), pointwise=True)
    mine = C.waic(ll)
    assert _rel(mine.elpd, ref.elpd_waic) < 1e-6 and _rel(mine.p, ref.p_waic) < 1e-6 and _rel(mine.se, ref.se) < 1e-6
    assert _rel(mine.elpd_i, ref.waic_i.values) < 1e-6
    # WAIC and LOO agree closely for a well-behaved model
    assert abs(mine.elpd - C.loo(ll).elpd) < 0.1
    assert "elpd_waic" in str(mine)


def test_loo_warns_on_large_pareto_k(gen):
    ll = _log_lik(gen, draws=250, outlier=40.0)
    with pytest.warns(UserWarning, match="Pareto k"):
        res = C.loo(ll)
    assert res.warning and float(res.pareto_k.max()) > 0.7
    assert "WARNING" in str(res) and "Pareto k" in str(res)


def test_gpd_fit_recovers_shape(gen):
    k_true, sigma_true = 0.3, 2.0
    u = torch.rand(4000, generator=gen, dtype=F64)
    x = torch.sort(sigma_true * torch.expm1(-k_true * torch.log1p(-u)) / k_true).values
    k, sigma = C.gpd_fit(x)
    assert abs(float(k) - k_true) < 0.06 and abs(float(sigma) - sigma_true) < 0.2


def test_compare_matches_arviz(gen):
    az = pytest.importorskip("arviz")
    y = torch.randn(30, generator=gen, dtype=F64) * 1.5 + 0.5
    n = len(y)
    lls = {}
    for name, (sd, prior_mean_zero) in {"good": (1.5, False), "narrow": (0.7, False), "fixed": (1.5, True)}.items():
        if prior_mean_zero:
            mu = torch.zeros(1, 2000, dtype=F64)
        else:
            pv = 1 / (1 / 100 + n / sd ** 2)
            mu = pv * y.sum() / sd ** 2 + math.sqrt(pv) * torch.randn(1, 2000, generator=gen, dtype=F64)
        lls[name] = Normal(mu[..., None], sd).log_prob(y)  # (1, 2000, n): one chain -> ArviZ uses reff = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = az.compare({k: _idata(v) for k, v in lls.items()}, ic="loo")
        res = C.compare(lls)
    assert [r.name for r in res.rows] == list(ref.index)
    for r in res.rows:
        assert _rel(r.elpd, ref.loc[r.name, "elpd_loo"]) < 1e-6
        assert abs(r.elpd_diff - ref.loc[r.name, "elpd_diff"]) < 1e-6 * max(1, abs(r.elpd))
        assert abs(r.dse - ref.loc[r.name, "dse"]) < 1e-6 * max(1, r.dse)
    assert res.best == "good" and "narrow" in str(res)


def test_elpd_bad_input(gen):
    ll = _log_lik(gen)
    bad = ll.clone()
    bad[0, 3, 2] = float("nan")
    for fn in (C.loo, C.waic):
        with pytest.raises(ValueError, match="NaN"):
            fn(bad)
        with pytest.raises(ValueError, match="observation axis"):
            fn(ll[..., 0])
    with pytest.raises(ValueError, match="r_eff"):
        C.loo(ll, r_eff=torch.ones(3))
    with pytest.raises(ValueError, match="different numbers of observations"):
        C.compare({"a": ll, "b": ll[..., :10]})
    with pytest.raises(ValueError, match="same method"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        C.compare({"a": C.loo(ll), "b": C.waic(ll)})
    with pytest.raises(TypeError):
        C.loo("not an array")


# ------------------------------------------------------------- degenerate draws and -inf log-likelihoods
def _std_normal_log_q(t):  # (n, d) -> (n,): a normalised N(0, I) density, so the true log evidence is 0
    return Normal(torch.tensor(0.0, dtype=F64), 1.0).log_prob(t).sum(-1)


@pytest.mark.parametrize("case", ["constant", "constant_2d", "collinear"])
def test_bridge_sampling_refuses_degenerate_draws(gen, case):
    """Constant or collinear draws used to give a confident wrong log Z (about -13 for a true 0) with converged=True."""
    x = {"constant": torch.zeros(200, 1, dtype=F64), "constant_2d": torch.full((200, 2), 0.5, dtype=F64),
         "collinear": torch.randn(400, 1, generator=gen, dtype=F64).expand(400, 2).clone()}[case]
    with pytest.raises(ValueError, match="draws"):
        C.bridge_sampling(_std_normal_log_q, x, generator=gen)


@pytest.mark.parametrize("case", ["narrow", "flat", "wide", "shifted", "too_few"])
def test_bridge_sampling_flags_draws_that_do_not_fit_the_density(gen, case):
    """Draws that are not draws of log_density: converged=False with the reason, and a RuntimeWarning."""
    z = torch.randn(400, 1, generator=gen, dtype=F64)
    x = {"narrow": 0.01 * z, "flat": 3.0 + 1e-6 * z, "wide": 3.0 * z, "shifted": 2.0 + z, "too_few": z[:30]}[case]
    with pytest.warns(RuntimeWarning, match="bridge_sampling"):
        res = C.bridge_sampling(_std_normal_log_q, x, generator=gen)
    assert not res.converged and res.reason and "NOT CONVERGED" in str(res)
    assert ("too few" in res.reason) == (case == "too_few")


def test_bridge_sampling_good_draws_converge_without_reason(gen):
    for d in (1, 3):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = C.bridge_sampling(_std_normal_log_q, torch.randn(2000, d, generator=gen, dtype=F64), generator=gen)
        assert res.converged and res.reason == "" and abs(res.log_evidence) < 0.05


def test_bridge_sampling_bad_settings(gen):
    x = torch.randn(200, 1, generator=gen, dtype=F64)
    with pytest.raises(TypeError, match="generator"):
        C.bridge_sampling(_std_normal_log_q, x, generator="seed")
    with pytest.raises(TypeError, match="generator"):
        C.bridge_sampling(_std_normal_log_q, x, generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match="max_iter"):
        C.bridge_sampling(_std_normal_log_q, x, generator=gen, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        C.bridge_sampling(_std_normal_log_q, x, generator=gen, tol=float("nan"))
    with pytest.raises(TypeError, match="num_proposal"):
        C.bridge_sampling(_std_normal_log_q, x, generator=gen, num_proposal=10.5)
    with pytest.raises(ValueError, match="-inf"):  # posterior draws where the posterior has no density
        C.bridge_sampling(lambda t: torch.where(t[:, 0] > 0, _std_normal_log_q(t), -math.inf), x, generator=gen)


def test_waic_and_loo_name_the_infinite_log_lik_entries(gen):
    """waic returned NaN for one -inf entry and loo blamed "log_ratios"; both now name log_lik[(0, 3, 2)]."""
    ll = _log_lik(gen)
    for value, what in ((-math.inf, "-inf"), (math.inf, r"\+inf"), (math.nan, "NaN")):
        bad = ll.clone()
        bad[0, 3, 2] = value
        for fn in (C.waic, C.loo):
            with pytest.raises(ValueError, match=rf"log_lik contains {what} values at entries \(0, 3, 2\)"):
                fn(bad)
    with pytest.raises(TypeError, match="draw_axis"):
        C.waic(ll, draw_axis=1.5)
    with pytest.raises(ValueError, match="chain_axis"):
        C.loo(ll, chain_axis=7)
