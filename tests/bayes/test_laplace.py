"""Laplace approximation: exact for Gaussian-linear models, nn.Module variants, singular Hessians."""
import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, Normal

from arrcoc.bayes.laplace import LaplaceConfig, factor_precision, laplace, laplace_nn

F64 = torch.float64



def _linear(gen, n=30, d=3, sig=0.7, a=2.0):
    X = torch.randn(n, d, generator=gen, dtype=F64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=F64)[:d] + sig * torch.randn(n, generator=gen, dtype=F64)
    logz = float(MultivariateNormal(torch.zeros(n, dtype=F64), a ** 2 * X @ X.T + sig ** 2 * torch.eye(n, dtype=F64)).log_prob(y))
    cov = torch.linalg.inv(X.T @ X / sig ** 2 + torch.eye(d, dtype=F64) / a ** 2)
    return X, y, logz, cov @ X.T @ y / sig ** 2, cov


def test_laplace_evidence_exact_gaussian_linear(gen):
    X, y, logz, mean, cov = _linear(gen)
    sig, a = 0.7, torch.tensor(2.0, dtype=F64)
    res = laplace(lambda w: Normal(X @ w, sig).log_prob(y).sum() + Normal(0.0, a).log_prob(w).sum(), torch.zeros(3, dtype=F64))
    assert res.log_evidence == pytest.approx(logz, abs=1e-8)
    torch.testing.assert_close(res.mode, mean, atol=1e-8, rtol=0)
    torch.testing.assert_close(res.covariance, cov, atol=1e-10, rtol=1e-8)
    d = res.sample(20000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(d.mean(0), mean, atol=0.01, rtol=0)
    assert "log evidence" in str(res)


@pytest.mark.parametrize("hessian", ["full", "ggn"])
def test_nn_laplace_exact_for_linear_model(gen, hessian):
    X, y, logz, mean, cov = _linear(gen)
    net = nn.Linear(3, 1, bias=False).double()
    res = laplace_nn(net, X, y, sigma_noise=0.7, prior_precision=0.25, hessian=hessian, fit_map=True)
    assert res.log_evidence == pytest.approx(logz, abs=1e-7)
    torch.testing.assert_close(net.weight.detach()[0], mean, atol=1e-7, rtol=0)  # the MAP is written back
    xs = torch.randn(5, 3, generator=gen, dtype=F64)
    f_mean, f_var = res.predictive(xs)
    assert f_var.shape == (5, 1, 1)
    torch.testing.assert_close(f_mean[:, 0], xs @ mean, atol=1e-7, rtol=0)
    torch.testing.assert_close(f_var[:, 0, 0], torch.einsum("bi,ij,bj->b", xs, cov, xs), atol=1e-10, rtol=1e-8)


def test_nn_laplace_diagonal_structures(gen):
    X, y, *_ = _linear(gen)
    net = nn.Linear(3, 1, bias=False).double()
    full = laplace_nn(net, X, y, sigma_noise=0.7, prior_precision=0.25, hessian="full", fit_map=True)
    for h in ("diag", "ggn_diag"):
        res = laplace_nn(net, X, y, sigma_noise=0.7, prior_precision=0.25, hessian=h)
        torch.testing.assert_close(res.precision, torch.diagonal(full.precision), rtol=1e-8, atol=1e-8)
        xs = torch.randn(4, 3, generator=gen, dtype=F64)
        _, v = res.predictive(xs)
        torch.testing.assert_close(v[:, 0, 0], (xs ** 2 / res.precision).sum(-1))
        # the diagonal ignores the correlations, so its evidence differs from the full one (both finite)
        assert math.isfinite(res.log_evidence) and res.log_evidence != pytest.approx(full.log_evidence, abs=1e-6)


def test_last_layer_laplace_is_bayesian_linear_regression_on_features(gen):
    torch.manual_seed(0)
    feat = nn.Sequential(nn.Linear(2, 8), nn.Tanh()).double()
    net = nn.Sequential(feat, nn.Linear(8, 1)).double()
    X = torch.randn(40, 2, generator=gen, dtype=F64)
    y = torch.sin(X[:, 0]) + 0.1 * torch.randn(40, generator=gen, dtype=F64)
    res = laplace_nn(net, X, y, sigma_noise=0.1, prior_precision=1.0, subset="last_layer", hessian="ggn", fit_map=True)
    assert res.names == ("1.weight", "1.bias")
    with torch.no_grad():
        phi = torch.cat([feat(X), torch.ones(40, 1, dtype=F64)], -1)  # (N, 9) features + bias
    logz = float(MultivariateNormal(torch.zeros(40, dtype=F64), phi @ phi.T + 0.01 * torch.eye(40, dtype=F64)).log_prob(y))
    assert res.log_evidence == pytest.approx(logz, abs=1e-6)
    xs = torch.randn(6, 2, generator=gen, dtype=F64)
    with torch.no_grad():
        ps = torch.cat([feat(xs), torch.ones(6, 1, dtype=F64)], -1)
    cov = torch.linalg.inv(phi.T @ phi / 0.01 + torch.eye(9, dtype=F64))
    _, v = res.predictive(xs)
    torch.testing.assert_close(v[:, 0, 0], torch.einsum("bi,ij,bj->b", ps, cov, ps), rtol=1e-6, atol=1e-10)


def test_nn_laplace_classification_ggn_matches_full_hessian_for_logistic(gen):
    X = torch.randn(50, 2, generator=gen, dtype=F64)
    y = (X[:, 0] + 0.5 * torch.randn(50, generator=gen, dtype=F64) > 0).long()
    net = nn.Linear(2, 2).double()
    full = laplace_nn(net, X, y, likelihood="classification", prior_precision=1.0, hessian="full", fit_map=True)
    ggn = laplace_nn(net, X, y, likelihood="classification", prior_precision=1.0, hessian="ggn")
    # for softmax regression (linear logits) the GGN equals the exact Hessian
    torch.testing.assert_close(ggn.precision, full.precision, rtol=1e-7, atol=1e-9)
    assert ggn.log_evidence == pytest.approx(full.log_evidence, abs=1e-7)


def test_singular_hessian_errors_or_jitter():
    flat = lambda w: -(w[0] + w[1]) ** 2  # noqa: E731 - ridge of modes, singular Hessian
    with pytest.raises(ValueError, match="not positive definite"):
        laplace(flat, torch.zeros(2, dtype=F64))
    with pytest.warns(RuntimeWarning, match="jitter"):
        res = laplace(flat, torch.zeros(2, dtype=F64), jitter=1e-3)
    assert res.jitter == 1e-3 and math.isfinite(res.log_evidence) and torch.isfinite(res.covariance).all()
    with pytest.raises(ValueError, match="not positive definite"):  # a saddle point
        laplace(lambda w: w[0] ** 2 - w[1] ** 2, torch.zeros(2, dtype=F64), optimize=False)
    with pytest.raises(ValueError, match="NaN"):
        factor_precision(torch.tensor([[float("nan")]], dtype=F64))
    net = nn.Linear(2, 1, bias=False).double()
    X = torch.ones(5, 2, dtype=F64)  # collinear features, flat prior limit -> singular
    with pytest.raises(ValueError, match="not positive definite"):
        laplace_nn(net, X, torch.ones(5, dtype=F64), prior_precision=1e-30, hessian="full", fit_map=True)


def test_laplace_bad_input(gen):
    with pytest.raises(ValueError, match="1-d"):
        laplace(lambda w: -(w ** 2).sum(), torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="not finite"):
        laplace(lambda w: torch.log(w).sum(), -torch.ones(2, dtype=F64))
    net = nn.Linear(2, 1).double()
    with pytest.raises(ValueError, match="same number of rows"):
        laplace_nn(net, torch.zeros(4, 2, dtype=F64), torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="hessian"):
        laplace_nn(net, torch.zeros(4, 2, dtype=F64), torch.zeros(4, dtype=F64), hessian="kfac")
    with pytest.raises(ValueError, match="nn.Linear"):
        laplace_nn(nn.Sequential(nn.Tanh()), torch.zeros(4, 2, dtype=F64), torch.zeros(4, dtype=F64), subset="last_layer")
    with pytest.warns(RuntimeWarning, match="not a mode"):
        laplace_nn(net, torch.randn(8, 2, generator=gen, dtype=F64), torch.randn(8, generator=gen, dtype=F64))


def test_laplace_boundary_checks(gen):
    lj = lambda t: Normal(torch.tensor(0.0, dtype=F64), 1.0).log_prob(t).sum()  # noqa: E731
    with pytest.raises(ValueError, match="init must be finite"):
        laplace(lj, torch.tensor([float("nan")], dtype=F64))
    with pytest.raises(ValueError, match="non-empty"):
        laplace(lj, torch.zeros(0, dtype=F64))
    with pytest.raises(ValueError, match="jitter"):
        laplace(lj, torch.zeros(1, dtype=F64), jitter=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        LaplaceConfig(max_iter=0)
    with pytest.raises(TypeError, match="config"):
        laplace(lj, torch.zeros(1, dtype=F64), config={"max_iter": 3})
    res = laplace(lj, torch.zeros(1, dtype=F64))
    with pytest.raises(TypeError, match="generator"):
        res.sample(10, "seed")
    with pytest.raises(ValueError, match="n must be >= 1"):
        res.sample(0, gen)
    net = nn.Linear(2, 1).double()
    X, y = torch.randn(8, 2, generator=gen, dtype=F64), torch.randn(8, generator=gen, dtype=F64)
    for kw, msg in (({"sigma_noise": float("nan")}, "sigma_noise"), ({"prior_precision": 0.0}, "prior_precision"),
                    ({"sigma_noise": float("inf")}, "sigma_noise")):
        with pytest.raises(ValueError, match=msg):
            laplace_nn(net, X, y, **kw)
    with pytest.raises(ValueError, match="X must be finite"):
        laplace_nn(net, X.masked_fill(X > 0, float("inf")), y)
