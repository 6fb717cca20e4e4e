"""Normal-normal hierarchical model: exact conditionals, tau grid posterior vs posteriordb eight schools."""
import json
import math
import zipfile
from pathlib import Path

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from arrcoc.bayes import hierarchical as H

F64 = torch.float64
Y = torch.tensor([28.0, 8, -3, 7, -1, 1, 18, 12], dtype=F64)
SIGMA = torch.tensor([15.0, 10, 16, 11, 9, 11, 10, 18], dtype=F64)


_DRAWS = Path(__file__).resolve().parents[1] / "data" / "posteriordb" / "draws" / \
    "eight_schools-eight_schools_noncentered.json.zip"  # vendored in the repository (posteriordb, BSD-3)


def _reference():
    with zipfile.ZipFile(_DRAWS) as z:
        chains = json.loads(z.read(z.namelist()[0]))
    return {k: torch.tensor(sum((c[k] for c in chains), []), dtype=F64) for k in chains[0]}


def test_eight_schools_matches_posteriordb():
    ref = _reference()
    # posteriordb's model: mu ~ N(0, 5), tau ~ HalfCauchy(0, 5)
    post = H.hierarchical_normal(Y, SIGMA, tau_prior="half_cauchy", tau_scale=5.0, mu_loc=0.0, mu_scale=5.0)
    n_ref = ref["mu"].numel()
    tm, ts = post.theta_mean(), post.theta_sd()
    for j in range(8):
        r = ref[f"theta[{j + 1}]"]
        mcse = r.std() / math.sqrt(n_ref)  # reference draws are nearly independent; quadrature is exact
        assert abs(float(tm[j] - r.mean())) < 4 * float(mcse)
        assert abs(float(ts[j] - r.std())) < 4 * float(r.std()) / math.sqrt(2 * n_ref) * 1.5
    for name, m, s in (("mu", post.mu_mean(), post.mu_sd()), ("tau", post.tau_mean(), post.tau_sd())):
        r = ref[name]
        assert abs(float(m - r.mean())) < 4 * float(r.std()) / math.sqrt(n_ref)
    # exact draws from the grid posterior agree too
    d = post.sample(20000, torch.Generator().manual_seed(3))
    for j in range(8):
        r = ref[f"theta[{j + 1}]"]
        se = math.sqrt(float(r.var()) / n_ref + float(d["theta"][:, j].var()) / 20000)
        assert abs(float(d["theta"][:, j].mean() - r.mean())) < 4 * se
    assert "theta[7]" in str(post) and "shrinkage" in str(post)


def test_conditionals_are_exact():
    mu, tau = torch.tensor(3.0, dtype=F64), torch.tensor(4.0, dtype=F64)
    m, v = H.conditional_theta(Y, SIGMA, mu, tau)
    prec = 1 / SIGMA ** 2 + 1 / tau ** 2
    torch.testing.assert_close(v, 1 / prec)
    torch.testing.assert_close(m, (Y / SIGMA ** 2 + mu / tau ** 2) / prec)
    torch.testing.assert_close(m, H.shrinkage(SIGMA, tau) * mu + (1 - H.shrinkage(SIGMA, tau)) * Y)
    # theta | tau, y (mu integrated) against the joint Gaussian of (theta, y) conditioned on y
    s0 = 5.0
    g = H.posterior_given_tau(Y, SIGMA, tau, mu_loc=1.0, mu_scale=s0)
    cov_t = tau ** 2 * torch.eye(8, dtype=F64) + s0 ** 2  # Cov(theta)
    cov_y = cov_t + torch.diag(SIGMA ** 2)
    k = cov_t @ torch.linalg.inv(cov_y)
    torch.testing.assert_close(g.theta_mean, 1.0 + k @ (Y - 1.0))
    torch.testing.assert_close(g.theta_var, torch.diagonal(cov_t - k @ cov_t))


def test_log_marginal_tau_against_multivariate_normal():
    tau = torch.tensor([0.5, 2.0, 7.0, 20.0], dtype=F64)
    lm = H.log_marginal_tau(tau, Y, SIGMA, mu_loc=1.0, mu_scale=5.0)
    direct = torch.stack([MultivariateNormal(torch.full((8,), 1.0, dtype=F64),
                                             torch.diag(SIGMA ** 2 + t ** 2) + 25.0).log_prob(Y) for t in tau])
    torch.testing.assert_close(lm, direct)
    # flat prior on mu: differences in tau match the proper-prior limit mu_scale -> inf up to a constant
    flat = H.log_marginal_tau(tau, Y, SIGMA)
    wide = H.log_marginal_tau(tau, Y, SIGMA, mu_scale=1e6)
    torch.testing.assert_close(flat - flat[0], wide - wide[0], atol=1e-6, rtol=0)


def test_batched_equals_one_at_a_time():
    y2 = torch.stack([Y, Y * 0.5 + 2])
    s2 = torch.stack([SIGMA, SIGMA * 0.8])
    pb = H.hierarchical_normal(y2, s2, tau_prior="half_normal", tau_scale=10.0, tau_max=200.0)
    for b in range(2):
        p1 = H.hierarchical_normal(y2[b], s2[b], tau_prior="half_normal", tau_scale=10.0, tau_max=200.0)
        torch.testing.assert_close(pb.theta_mean()[b], p1.theta_mean())
        torch.testing.assert_close(pb.tau_mean()[b], p1.tau_mean())
    d = pb.sample(7, torch.Generator().manual_seed(0))
    assert d["theta"].shape == (7, 2, 8) and d["tau"].shape == (7, 2) and (d["tau"] >= 0).all()
    e = H.empirical_bayes(y2, s2)
    assert e.tau.shape == (2,)


def test_bda3_uniform_prior_posterior_of_tau():
    """BDA3 5.5: with p(mu, tau) ∝ 1 the tau posterior is decreasing from 0, most mass below ~10."""
    post = H.hierarchical_normal(Y, SIGMA, tau_prior="uniform")
    w = post.log_weights.exp()
    assert int(w.argmax()) < 20  # mode at tau ~ 0
    assert 0.5 < float(w[post.tau_grid < 10].sum()) < 0.95
    # complete pooling limit: E[theta_j | y] near the precision-weighted mean, shrinkage near 1
    assert (post.shrinkage() > 0.6).all()


def test_empirical_bayes_type2_ml():
    e = H.empirical_bayes(Y, SIGMA)
    assert float(e.tau) == 0.0  # eight schools: the marginal likelihood peaks at tau = 0
    w = 1 / SIGMA ** 2
    assert float(e.mu) == pytest.approx(float((w * Y).sum() / w.sum()))
    # a spread-out data set has an interior optimum: the profile gradient in tau vanishes there
    y = torch.tensor([-20.0, -10, 0, 10, 20, 30], dtype=F64)
    s = torch.tensor([3.0, 4, 5, 3, 4, 5], dtype=F64)
    e = H.empirical_bayes(y, s)
    f = lambda t: Normal(e.mu, (s ** 2 + t ** 2).sqrt()).log_prob(y).sum()  # noqa: E731
    t = float(e.tau)
    assert t > 0 and f(torch.tensor(t - 1e-3, dtype=F64)) <= f(torch.tensor(t, dtype=F64)) >= f(torch.tensor(t + 1e-3, dtype=F64))
    assert float(e.log_marginal_likelihood) == pytest.approx(float(f(torch.tensor(t, dtype=F64))))
    assert "EmpiricalBayes" in str(e)


def test_bad_input():
    with pytest.raises(ValueError, match="positive"):
        H.hierarchical_normal(Y, -SIGMA)
    with pytest.raises(ValueError, match="broadcast"):
        H.conditional_theta(Y, SIGMA[:3], 0.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        H.hierarchical_normal(torch.tensor([1.0, float("nan")], dtype=F64), torch.ones(2, dtype=F64))
    with pytest.raises(ValueError, match="tau_prior"):
        H.hierarchical_normal(Y, SIGMA, tau_prior="banana")
    with pytest.raises(ValueError, match="J = 2"):
        H.empirical_bayes(Y[:1], SIGMA[:1])


def test_truncated_grid_warns():
    with pytest.warns(RuntimeWarning, match="tau_max"):
        H.hierarchical_normal(Y, SIGMA, tau_prior="uniform", tau_max=15.0)
