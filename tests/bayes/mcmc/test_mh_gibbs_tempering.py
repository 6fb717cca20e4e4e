"""Random-walk MH, delayed acceptance, Gibbs and parallel tempering on targets with exact answers."""
import math

import pytest
import torch

from arrcoc.bayes.conjugate import NormalNormal
from arrcoc.bayes.mcmc import (NUTS, RWMH, Conditional, ConjugateConditional, DelayedAcceptance, Gibbs,
                               MetropolisBlock, Model, ParallelTempering, sample)

from ._checks import assert_moments_exact

# short runs check the samplers' numbers; their diagnostics warnings (ESS below 100 per chain, ...)
# are expected here and tested in test_checks.py
pytestmark = pytest.mark.filterwarnings("ignore::arrcoc.bayes.mcmc.MCMCDiagnosticWarning")


def test_rwmh_gaussian_and_scale_adapts(gen):
    mu = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    sd = torch.tensor([1.0, 5.0, 0.2], dtype=torch.float64)

    def logp(x):
        return -0.5 * (((x - mu) / sd) ** 2).sum(-1)
    res = sample(RWMH(), logp, num_chains=4, num_warmup=1000, num_samples=3000, generator=gen, dim=3,
                 progress=False)
    assert_moments_exact(res.draws["x"], mu, sd, label="RWMH")
    acc = float(res.info["accept_prob"].mean())
    assert 0.15 < acc < 0.35  # adapted towards 0.234
    # the learnt proposal covariance follows the target's scales
    ratio = res.params.metric.inverse_mass.mean(0).sqrt() / sd
    assert float(ratio.max() / ratio.min()) < 2.0


def test_delayed_acceptance_is_exact_with_a_wrong_surrogate(gen):
    mu = torch.tensor([0.5, -1.0], dtype=torch.float64)
    calls = {"n": 0}

    def logp(x):
        calls["n"] += x.shape[0]
        return -0.5 * ((x - mu) ** 2).sum(-1)

    def surrogate(x):  # biased, wider approximation: the second stage corrects it
        return -0.5 * ((x - mu - 0.3) ** 2).sum(-1) / 1.5
    res = sample(DelayedAcceptance(surrogates=[surrogate]), logp, num_chains=4, num_warmup=500,
                 num_samples=3000, generator=gen, dim=2, progress=False)
    assert_moments_exact(res.draws["x"], mu, torch.ones(2, dtype=torch.float64), label="DA")
    # the expensive level is evaluated only for proposals that passed the surrogate stage
    total = 4 * (500 + 3000)
    assert calls["n"] < 0.8 * total
    assert res.info["stage_passed"].shape == (4, 3000, 2)


def hierarchical_normal():
    """y_jk ~ N(theta_j, 1), theta_j ~ N(mu, tau = 2), mu ~ N(0, 10): jointly Gaussian posterior."""
    y = torch.tensor([[2.1, 2.9, 1.7, 3.3], [-0.8, 0.2, -1.1, 0.1], [5.2, 4.1, 4.8, 6.0]], dtype=torch.float64)
    sigma, tau, s0 = 1.0, 2.0, 10.0
    J, n = y.shape
    # exact posterior of (theta_1..J, mu): precision matrix of the Gaussian
    P = torch.zeros(J + 1, J + 1, dtype=torch.float64)
    b = torch.zeros(J + 1, dtype=torch.float64)
    for j in range(J):
        P[j, j] = n / sigma ** 2 + 1 / tau ** 2
        P[j, J] = P[J, j] = -1 / tau ** 2
        b[j] = y[j].sum() / sigma ** 2
    P[J, J] = J / tau ** 2 + 1 / s0 ** 2
    cov = torch.linalg.inv(P)
    mean = cov @ b

    def logp(v):
        th, mu = v["theta"], v["mu"]                                           # (C, J), (C,)
        return (-0.5 * ((y - th.unsqueeze(-1)) ** 2).sum((-1, -2)) / sigma ** 2
                - 0.5 * ((th - mu.unsqueeze(-1)) ** 2).sum(-1) / tau ** 2 - 0.5 * mu ** 2 / s0 ** 2)
    model = Model(logp, {"theta": (J, None), "mu": ((), None)})
    return y, (sigma, tau, s0), model, mean, cov


@pytest.mark.parametrize("mu_block", ["conjugate", "metropolis", "conditional"])
def test_gibbs_conjugate_hierarchical_normal(mu_block, gen):
    y, (sigma, tau, s0), model, mean, cov = hierarchical_normal()
    C = 4
    theta_block = ConjugateConditional(
        "theta", lambda v: (NormalNormal(v["mu"].unsqueeze(-1).expand(C, y.shape[0]), tau, sigma), y.expand(C, -1, -1)))
    if mu_block == "conjugate":
        mu_blk = ConjugateConditional("mu", lambda v: (NormalNormal(0.0, s0, tau), v["theta"]))
    elif mu_block == "metropolis":
        mu_blk = MetropolisBlock("mu")
    else:
        def draw_mu(v, g):  # closed-form conditional written by hand
            prec = y.shape[0] / tau ** 2 + 1 / s0 ** 2
            m = v["theta"].sum(-1) / tau ** 2 / prec
            return m + torch.randn(m.shape, generator=g, dtype=m.dtype) / math.sqrt(prec)
        mu_blk = Conditional("mu", draw_mu)
    res = sample(Gibbs(model, [theta_block, mu_blk]), model, num_chains=C, num_warmup=200, num_samples=1500,
                 generator=gen, progress=False)
    x = torch.cat([res.draws["theta"], res.draws["mu"].unsqueeze(-1)], -1)     # (C, S, J + 1)
    assert_moments_exact(x, mean, cov.diagonal().sqrt(), label=f"Gibbs ({mu_block})")
    if mu_block == "metropolis":
        assert 0.15 < float(res.info["accept_prob"].mean()) < 0.5


def bimodal():
    """0.3 N(-4, 0.5^2) + 0.7 N(4, 0.5^2) in each of 2 coordinates jointly (modes at +-4 * (1, 1))."""
    w, m, s = 0.3, 4.0, 0.5
    ones = torch.ones(2, dtype=torch.float64)

    def logp(x):
        a = math.log(w) - 0.5 * (((x + m * ones) / s) ** 2).sum(-1)
        b = math.log(1 - w) - 0.5 * (((x - m * ones) / s) ** 2).sum(-1)
        return torch.logaddexp(a, b)
    return w, m, s, logp


def test_tempering_recovers_both_modes_where_nuts_sticks(gen):
    w, m, s, logp = bimodal()
    init = torch.full((4, 2), -4.0, dtype=torch.float64)                       # every chain starts in the small mode
    stuck = sample(NUTS(), logp, num_chains=4, num_warmup=200, num_samples=300, generator=gen, init=init,
                   progress=False)
    assert float((stuck.draws["x"][..., 0] > 0).double().mean()) < 0.05      # NUTS never leaves the mode
    pt = ParallelTempering(num_temps=6, min_beta=0.02)
    res = sample(pt, logp, num_chains=4, num_warmup=1000, num_samples=4000, generator=gen, init=init,
                 progress=False)
    x = res.draws["x"]                                                         # (4, S, 2)
    in_big = (x[..., 0] > 0).double()                                          # (4, S)
    from arrcoc.bayes.diagnostics import mcse
    weight, se = in_big.mean(), mcse(in_big, method="mean")
    assert abs(float(weight) - (1 - w)) < 5 * float(se), (float(weight), float(se))
    mean = torch.full((2,), (1 - 2 * w) * m, dtype=torch.float64)
    sd = torch.full((2,), math.sqrt(s ** 2 + m ** 2 - ((1 - 2 * w) * m) ** 2), dtype=torch.float64)
    assert_moments_exact(x, mean, sd, label="tempering")
    swaps = res.info["swap_prob"]
    assert swaps.shape == (4, 4000, 5) and float(swaps.nanmean()) > 0.1


def test_tempering_rejects_bad_betas():
    with pytest.raises(ValueError, match="betas"):
        ParallelTempering(betas=[1.0, 0.5, 0.7])
    with pytest.raises(ValueError, match="betas"):
        ParallelTempering(betas=[0.9, 0.5])
