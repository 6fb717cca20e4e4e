"""Shared assertions for the MCMC tests: moments against exact values or reference draws, within MCSE."""
from __future__ import annotations

import torch

from arrcoc.bayes.diagnostics import mcse, rhat


def _mcse_sd(x: torch.Tensor) -> torch.Tensor:
    """MCSE of the sd by the delta method on y = (x - mean)^2 with y's own ESS (no credit for the
    antithetic draws NUTS gives for the mean; honest about the slowly mixing radius of Gaussians)."""
    y = (x - x.mean((0, 1))) ** 2
    return mcse(y, method="mean") / (2 * y.mean((0, 1)).sqrt())


def assert_moments_exact(x: torch.Tensor, mean: torch.Tensor, sd: torch.Tensor, k: float = 5.0, label: str = ""):
    """x (chain, draw, p) against exact mean (p,) and sd (p,): |est - true| < k * MCSE."""
    m_hat, s_hat = x.mean((0, 1)), x.reshape(-1, x.shape[-1]).std(0)
    mc_m, mc_s = mcse(x, method="mean"), _mcse_sd(x)
    bad_m = (m_hat - mean).abs() > k * mc_m
    bad_s = (s_hat - sd).abs() > k * mc_s
    assert not bool(bad_m.any()), f"{label} mean off: est {m_hat[bad_m]} true {mean[bad_m]} mcse {mc_m[bad_m]}"
    assert not bool(bad_s.any()), f"{label} sd off: est {s_hat[bad_s]} true {sd[bad_s]} mcse {mc_s[bad_s]}"


def compare_to_reference(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], k: float = 4.0):
    """Every reference parameter: mean and sd within k * sqrt(mcse_ours^2 + mcse_ref^2); returns the
    worst z-scores and max R-hat of our draws."""
    names = list(ref)
    a = torch.stack([ours[n] for n in names], -1).double()                    # (C, S, p)
    b = torch.stack([ref[n] for n in names], -1).double()                     # (10, 1000, p)
    mean_a, mean_b = a.mean((0, 1)), b.mean((0, 1))
    sd_a, sd_b = a.reshape(-1, len(names)).std(0), b.reshape(-1, len(names)).std(0)
    z_mean = (mean_a - mean_b) / (mcse(a, method="mean") ** 2 + mcse(b, method="mean") ** 2).sqrt()
    z_sd = (sd_a - sd_b) / (_mcse_sd(a) ** 2 + _mcse_sd(b) ** 2).sqrt()
    r = rhat(a)
    for i, n in enumerate(names):
        assert abs(float(z_mean[i])) < k, f"{n}: mean {float(mean_a[i]):.4g} vs reference {float(mean_b[i]):.4g} " \
                                          f"(z = {float(z_mean[i]):.2f})"
        assert abs(float(z_sd[i])) < k, f"{n}: sd {float(sd_a[i]):.4g} vs reference {float(sd_b[i]):.4g} " \
                                        f"(z = {float(z_sd[i]):.2f})"
    return z_mean.abs().max().item(), z_sd.abs().max().item(), r.max().item()
