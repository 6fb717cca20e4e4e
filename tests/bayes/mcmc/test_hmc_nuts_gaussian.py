"""HMC and NUTS on correlated Gaussians (d = 2 .. 100): mean and covariance within MCSE."""
import pytest
import torch

from arrcoc.bayes.mcmc import HMC, NUTS, AdaptationConfig, sample

from ._checks import assert_moments_exact

# short runs check the samplers' numbers; their diagnostics warnings (ESS below 100 per chain, ...)
# are expected here and tested in test_checks.py
pytestmark = pytest.mark.filterwarnings("ignore::arrcoc.bayes.mcmc.MCMCDiagnosticWarning")


def gaussian(d, rho, seed):
    """Mean mu, covariance with correlation structure and unequal scales, and its batched log density."""
    g = torch.Generator().manual_seed(seed)
    if d == 2:
        corr = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    else:
        A = torch.randn(d, d, generator=g, dtype=torch.float64)
        corr = A @ A.T / d + torch.eye(d, dtype=torch.float64) * (1 - rho)
        s = corr.diagonal().sqrt()
        corr = corr / s[:, None] / s[None, :]
    scales = torch.linspace(0.5, 3.0, d, dtype=torch.float64)
    cov = corr * scales[:, None] * scales[None, :]
    mu = torch.randn(d, generator=g, dtype=torch.float64)
    prec = torch.linalg.inv(cov)

    def logp(x):
        r = x - mu                                                             # (C, d)
        return -0.5 * ((r @ prec) * r).sum(-1)
    return mu, cov, logp


def check_cov(x, cov, k=5.0, max_pairs=300, seed=0):
    """Covariance entries E[(x_i - m_i)(x_j - m_j)] against the truth within k MCSE (random pairs for large d)."""
    from arrcoc.bayes.diagnostics import mcse
    d = cov.shape[0]
    pairs = torch.triu_indices(d, d)
    if pairs.shape[1] > max_pairs:
        pairs = pairs[:, torch.randperm(pairs.shape[1], generator=torch.Generator().manual_seed(seed))[:max_pairs]]
    c = x - x.mean((0, 1))
    prod = c[..., pairs[0]] * c[..., pairs[1]]                                # (C, S, P)
    est = prod.mean((0, 1))
    err = (est - cov[pairs[0], pairs[1]]).abs()
    tol = k * mcse(prod, method="mean")
    assert bool((err < tol).all()), f"cov off at {pairs[:, err >= tol].T.tolist()}: {est[err >= tol]}"


@pytest.mark.parametrize("d,rho,metric,warmup,draws", [
    (2, 0.95, "diag", 200, 400), (10, 0.5, "diag", 200, 400), (10, 0.5, "dense", 200, 400),
    (40, 0.5, "dense", 300, 400),
    # in high dimension NUTS moves the radius (the energy) slowly, so per-coordinate sd MCSEs from 500
    # draws are optimistic: d = 100 needs a longer run
    pytest.param(100, 0.5, "dense", 1000, 3000, marks=pytest.mark.slow)])
def test_nuts_correlated_gaussian(d, rho, metric, warmup, draws, gen):
    mu, cov, logp = gaussian(d, rho, seed=d)
    adapt = AdaptationConfig(pool_chains=d >= 40)
    res = sample(NUTS(metric=metric, adaptation=adapt), logp, num_chains=4, num_warmup=warmup, num_samples=draws,
                 generator=gen, dim=d, progress=False)
    x = res.draws["x"]
    assert_moments_exact(x, mu, cov.diagonal().sqrt(), label=f"NUTS d={d}")
    check_cov(x, cov)
    assert res.num_divergent == 0
    assert 0.6 < float(res.info["accept_prob"].mean()) < 0.99


@pytest.mark.parametrize("d,metric", [(2, "diag"), (20, "dense")])
def test_hmc_correlated_gaussian(d, metric, gen):
    mu, cov, logp = gaussian(d, 0.5 if d > 2 else 0.9, seed=d + 1)
    # step-size jitter: a fixed path length resonates on a whitened Gaussian (the radius barely moves)
    res = sample(HMC(num_steps=8, metric=metric, step_size_jitter=0.5), logp, num_chains=4, num_warmup=300,
                 num_samples=600, generator=gen, dim=d, progress=False)
    x = res.draws["x"]
    assert_moments_exact(x, mu, cov.diagonal().sqrt(), label=f"HMC d={d}")
    check_cov(x, cov)
    assert res.info["num_steps"].eq(8).all()
