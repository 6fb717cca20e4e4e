"""Credible intervals from draws: equal-tailed (ETI) and highest-density (HDI), batched over parameters."""
from __future__ import annotations

import math

import torch

from . import _array as A

__all__ = ["eti", "hdi", "DEFAULT_PROB"]

# arviz-stats' default credible mass (rcParams "stats.ci_prob"): 0.89, deliberately not 0.95 so it
# is not read as a significance test.
DEFAULT_PROB = 0.89


def _check_interval_prob(prob) -> float:
    if isinstance(prob, torch.Tensor):
        if prob.numel() != 1:
            raise ValueError(f"`prob` must be a scalar, got shape {tuple(prob.shape)}")
        prob = prob.item()
    try:
        p = float(prob)
    except (TypeError, ValueError):
        raise TypeError(f"`prob` must be a float in (0, 1), got {prob!r}") from None
    if not 0.0 < p < 1.0:
        raise ValueError(f"`prob` must lie in the open interval (0, 1), got {p}")
    return p


def _flat_sorted(x, chain_axis, draw_axis, what):
    y, shape, out_dtype = A.prepare(x, chain_axis, draw_axis, min_chains=1, min_draws=1, what=what)
    return A.sort_flat(y), shape, out_dtype  # (P, S) in y's dtype


def eti(x: torch.Tensor, prob: float = DEFAULT_PROB, chain_axis: int = 0,
        draw_axis: int = 1) -> torch.Tensor:
    """Equal-tailed interval of draws ``x`` (chain, draw, *param_shape) -> (*param_shape, 2).

    Bounds are the (1 - prob)/2 and 1 - (1 - prob)/2 quantiles over all chains and draws, with numpy's
    default linear interpolation (as ``arviz_stats`` ``eti``). ``prob`` must lie in (0, 1).
    """
    p = _check_interval_prob(prob)
    s, shape, out_dtype = _flat_sorted(x, chain_axis, draw_axis, "eti")
    edge = (1 - p) / 2
    lo = A.quantile_sorted(s.to(torch.float64), edge)
    hi = A.quantile_sorted(s.to(torch.float64), 1 - edge)
    return torch.stack((lo, hi), dim=-1).reshape(*shape, 2).to(out_dtype)


def hdi(x: torch.Tensor, prob: float = DEFAULT_PROB, chain_axis: int = 0,
        draw_axis: int = 1) -> torch.Tensor:
    """Highest-density interval of draws ``x`` (chain, draw, *param_shape) -> (*param_shape, 2).

    The narrowest window of floor(prob * S) + 1 consecutive sorted draws (S = chains x draws), found
    for all parameters at once; the first of equal-width windows wins, as in ``arviz_stats`` ``hdi``
    with ``method="nearest"``. Valid for unimodal posteriors (a multimodal one gets one interval
    spanning its modes). ``prob`` must lie in (0, 1) and the window must hold at least two draws.
    """
    p = _check_interval_prob(prob)
    s, shape, out_dtype = _flat_sorted(x, chain_axis, draw_axis, "hdi")
    n = s.shape[-1]
    inc = int(math.floor(p * n))
    if inc < 1:
        raise ValueError(f"`x` has {n} draws in total; an HDI with prob={p} needs at least "
                         f"{math.ceil(1 / p)}")
    widths = s[:, inc:].to(torch.float64) - s[:, : n - inc].to(torch.float64)  # (P, n - inc)
    start = widths.argmin(dim=-1, keepdim=True)  # (P, 1) first minimum
    bounds = torch.cat((s.gather(1, start), s.gather(1, start + inc)), dim=-1)  # (P, 2)
    return bounds.reshape(*shape, 2).to(out_dtype)
