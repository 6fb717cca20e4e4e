"""Convergence diagnostics: rank-normalised split R-hat, effective sample size, Monte Carlo standard error.

All follow Vehtari, Gelman, Simpson, Carpenter and Buerkner (2021), "Rank-normalization, folding, and
localization: an improved R-hat for assessing convergence of MCMC", Bayesian Analysis 16(2), and copy
the numerical conventions of ``arviz_stats.base`` (checked against it to 1e-6 relative in the tests).
Inputs are tensors (chain, draw, *param_shape); every parameter is processed at once (parameters are
flattened and handled in large chunks, never one by one). Work is in float64; results come back with
shape ``param_shape`` in the input's floating dtype (float64 for integer/bool input).

Constant input (documented values, no warnings): R-hat is NaN when every draw of a parameter is the
same (0/0 between/within variance), and +inf when each chain is constant but chains differ. ESS of a
constant transformed series is the total number of (split) draws, also with ``relative=True`` (as in
ArviZ). MCSE of the mean and of quantiles is 0; MCSE of the sd is NaN (0/0), again as in ArviZ.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from . import _array as A
from ._special import betaincinv

__all__ = ["rhat", "ess", "mcse", "RHAT_METHODS", "ESS_METHODS", "MCSE_METHODS"]

RHAT_METHODS = ("rank", "split", "folded", "z_scale", "identity")
ESS_METHODS = ("bulk", "tail", "mean", "sd", "median", "quantile", "local", "mad", "folded",
               "z_scale", "identity")
MCSE_METHODS = ("mean", "sd", "median", "quantile")
# Default tail probabilities of tail-ESS: the 5% and 95% quantiles (Vehtari et al. 2021, section 4.3).
DEFAULT_TAIL_PROB = (0.05, 0.95)
# Probabilities of the +-1 sd band used for the quantile MCSE (Phi(-1), Phi(1)), as in ArviZ.
_MCSE_Q_BAND = (0.1586553, 0.8413447)


# ----------------------------------------------------------------------------------------- cores
def _rhat_core(y: torch.Tensor) -> torch.Tensor:
    """Classic potential scale reduction of (P, K, n) float64 -> (P,). 0/0 -> NaN silently."""
    n = y.shape[-1]
    chain_mean = y.mean(dim=-1)  # (P, K)
    within = y.var(dim=-1, correction=1).mean(dim=-1)  # (P,)
    between = n * chain_mean.var(dim=-1, correction=1)  # (P,)
    return torch.sqrt((between / within + n - 1) / n)


def _max_like_python(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Elementwise Python ``max(first, second)`` (NaN in ``first`` wins, NaN in ``second`` loses)."""
    return torch.where(second > first, second, first)


def _ess_core(y: torch.Tensor, relative: bool = False) -> torch.Tensor:
    """Geyer initial-monotone-sequence ESS of (P, K, n) float64 -> (P,), vectorised over P.

    Identical in value to ArviZ's loop: pairs of autocorrelations are accumulated while their sum is
    positive (initial positive sequence), made monotone by a running minimum, and the last positive
    even-lag term is kept; tau is floored at 1/log10(K n).
    """
    p, k, n = y.shape
    size = k * n
    flat = y.reshape(p, size)
    const = (flat.amax(dim=-1) - flat.amin(dim=-1)) < A.CONST_RESOLUTION  # (P,)
    acov = A._acov_last(y, mean_over=1)  # (P, n) mean over chains of the autocovariance
    mean_var = acov[:, 0] * n / (n - 1.0)  # (P,)
    var_plus = mean_var * (n - 1.0) / n
    if k > 1:
        var_plus = var_plus + y.mean(dim=-1).var(dim=-1, correction=1)
    rho = 1.0 - (mean_var[:, None] - acov) / var_plus[:, None]  # (P, n)
    rho[:, 0] = 1.0
    j_max = max(1, (n - 1) // 2)  # pairs ArviZ's loop can reach before t < n - 3 fails
    pairs = rho[:, : 2 * j_max].reshape(p, j_max, 2).sum(dim=-1)  # (P, Jmax) rho_2j + rho_2j+1
    lead = (pairs > 0).to(torch.int64).cumprod(dim=-1).sum(dim=-1)  # (P,) leading positive pairs
    j_stop = torch.clamp(lead + 1, max=j_max)  # (P,) ArviZ's loop stops at t = 2J - 1
    mono = pairs.cummin(dim=-1).values  # (P, Jmax) initial monotone sequence
    keep = torch.arange(j_max, device=y.device)[None, :] <= (j_stop - 2)[:, None]  # (P, Jmax)
    total = torch.where(keep, mono, 0.0).sum(dim=-1)  # (P,)
    r_last = rho.gather(1, (2 * j_stop - 2)[:, None]).squeeze(1)  # (P,) last even lag
    p_last = pairs.gather(1, (j_stop - 1)[:, None]).squeeze(1)  # (P,)
    last = torch.where((p_last >= 0) | (r_last > 0), r_last, 0.0)
    tau = -1.0 + 2.0 * total + last
    floor = 1.0 / math.log10(size)
    tau = torch.where(floor > tau, torch.full_like(tau, floor), tau)
    out = (1.0 if relative else float(size)) / tau
    out = torch.where(torch.isnan(rho[:, 1]), torch.nan, out)
    return torch.where(const, float(size), out)


def _indicator_ess(y: torch.Tensor, sorted_flat: torch.Tensor, prob: float, relative: bool):
    q = A.quantile_sorted(sorted_flat, prob)  # (P,)
    ind = (y <= q[:, None, None]).to(torch.float64)  # (P, C, N)
    return _ess_core(A.split_chains(ind), relative)


def _tail_ess(y: torch.Tensor, sorted_flat: torch.Tensor, lo: float, hi: float, relative: bool):
    """min of the quantile ESS at ``lo`` and ``hi``; both indicator series go through one FFT call."""
    p, c, n = y.shape
    q = torch.stack((A.quantile_sorted(sorted_flat, lo), A.quantile_sorted(sorted_flat, hi)))  # (2, P)
    ind = (y[None] <= q[:, :, None, None]).to(torch.float64).reshape(2 * p, c, n)  # (2P, C, N)
    both = _ess_core(A.split_chains(ind), relative)  # (2P,)
    return torch.minimum(both[:p], both[p:])


def _tail_probs(prob) -> tuple[float, float]:
    if prob is None:
        return DEFAULT_TAIL_PROB
    if isinstance(prob, Sequence) and not isinstance(prob, str):
        if len(prob) != 2:
            raise ValueError(f"`prob` for tail ESS must be a float or a pair (low, high), got {prob!r}")
        return _check_prob(prob[0], "tail ESS"), _check_prob(prob[1], "tail ESS")
    p = _check_prob(prob, "tail ESS")
    return tuple(sorted((p, 1.0 - p)))


def _check_prob(prob, what: str) -> float:
    if prob is None:
        raise ValueError(f"`prob` is required for {what} (a float in [0, 1])")
    if isinstance(prob, torch.Tensor):
        if prob.numel() != 1:
            raise ValueError(f"`prob` for {what} must be a scalar, got shape {tuple(prob.shape)}")
        prob = prob.item()
    try:
        p = float(prob)
    except (TypeError, ValueError):
        raise TypeError(f"`prob` for {what} must be a float in [0, 1], got {prob!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"`prob` for {what} must lie in [0, 1], got {p}")
    return p


def _ess_chunk(y: torch.Tensor, method: str, prob, relative: bool) -> torch.Tensor:
    """ESS of one chunk y (P, C, N) in its own dtype -> (P,) float64."""
    if method in ("bulk", "z_scale"):
        return _ess_core(A.z_scale(A.split_chains(y)), relative)
    yd = y.to(torch.float64)
    if method == "mean":
        return _ess_core(A.split_chains(yd), relative)
    if method == "identity":
        return _ess_core(yd, relative)
    if method == "sd":
        centred = (yd - yd.mean(dim=(1, 2), keepdim=True)).square()  # (P, C, N)
        return _ess_core(A.split_chains(centred), relative)
    if method == "folded":
        sp = A.split_chains(yd)
        med = A.median_sorted(A.sort_flat(sp))  # (P,)
        return _ess_core(A.z_scale((sp - med[:, None, None]).abs()), relative)
    if method == "mad":
        dev = (yd - A.median_sorted(A.sort_flat(yd))[:, None, None]).abs()  # (P, C, N)
        ind = (dev <= A.median_sorted(A.sort_flat(dev))[:, None, None]).to(torch.float64)
        return _ess_core(A.z_scale(A.split_chains(ind)), relative)
    sorted_flat = A.sort_flat(yd)  # (P, C*N)
    if method in ("quantile", "median"):
        return _indicator_ess(yd, sorted_flat, prob, relative)
    if method == "tail":
        return _tail_ess(yd, sorted_flat, prob[0], prob[1], relative)
    if method == "local":
        q0 = A.quantile_sorted(sorted_flat, prob[0])[:, None, None]
        q1 = A.quantile_sorted(sorted_flat, prob[1])[:, None, None]
        ind = ((q0 <= yd) & (yd <= q1)).to(torch.float64)
        return _ess_core(A.split_chains(ind), relative)
    raise AssertionError(method)


def _by_chunks(fn, y: torch.Tensor, param_shape, out_dtype) -> torch.Tensor:
    per = y.shape[1] * y.shape[2]
    parts = [fn(y[sl]) for sl in A.chunks(y.shape[0], per)]
    out = torch.cat(parts) if parts else torch.empty(0, dtype=torch.float64, device=y.device)
    return out.reshape(param_shape).to(out_dtype)


# ---------------------------------------------------------------------------------------- public
def rhat(x: torch.Tensor, method: str = "rank", chain_axis: int = 0, draw_axis: int = 1) -> torch.Tensor:
    """Potential scale reduction factor R-hat of draws ``x`` (chain, draw, *param_shape) -> param_shape.

    Methods (Vehtari et al. 2021):
      "rank"     max of rank-normalised split R-hat (bulk) and folded split R-hat (tails); the default
                 and the one to report.
      "split"    split R-hat on raw draws;  "folded" split R-hat of rank-normalised |x - median|;
      "z_scale"  split R-hat of rank-normalised draws;  "identity" classic R-hat without splitting.

    Needs at least 2 chains and 4 draws (ValueError otherwise). NaN/inf draws raise ValueError.
    Constant parameters give NaN (every draw equal) or +inf (constant chains at different values),
    without warnings, matching ArviZ's values.
    """
    method = _check_method(method, RHAT_METHODS, "rhat")
    y, shape, out_dtype = A.prepare(x, chain_axis, draw_axis, min_chains=2, min_draws=4, what="rhat")

    def run(yc):
        if method == "identity":
            return _rhat_core(yc.to(torch.float64))
        if method == "split":
            return _rhat_core(A.split_chains(yc.to(torch.float64)))
        sp = A.split_chains(yc)
        z, sorted_sp = A.z_scale(sp, return_sorted=True)  # (P, 2C, N//2), (P, S)
        bulk = _rhat_core(z)
        if method == "z_scale":
            return bulk
        med = A.median_sorted(sorted_sp)  # (P,) float64
        tail = _rhat_core(A.z_scale((sp.to(torch.float64) - med[:, None, None]).abs()))
        return tail if method == "folded" else _max_like_python(bulk, tail)

    return _by_chunks(run, y, shape, out_dtype)


def ess(x: torch.Tensor, method: str = "bulk", prob=None, relative: bool = False,
        chain_axis: int = 0, draw_axis: int = 1) -> torch.Tensor:
    """Effective sample size of draws ``x`` (chain, draw, *param_shape) -> param_shape.

    Methods: "bulk" (rank-normalised split ESS, the default), "tail" (min of the quantile ESS at
    ``prob`` = (0.05, 0.95) by default; a float p means (p, 1 - p)), "mean", "sd" (of the squared
    centred draws), "median", "quantile" (needs float ``prob``), "local" (needs ``prob=(low, high)``),
    and ArviZ's "mad", "folded", "z_scale", "identity" (no chain splitting). ``relative=True`` divides by
    the number of draws. Needs 1+ chains and 4+ draws; NaN/inf draws raise ValueError.
    A constant transformed series gets ESS = number of split draws (even when ``relative``), as ArviZ.
    """
    method = _check_method(method, ESS_METHODS, "ess")
    if method == "tail":
        prob = _tail_probs(prob)
    elif method == "quantile":
        prob = _check_prob(prob, "quantile ESS")
    elif method == "median":
        prob = 0.5
    elif method == "local":
        if not (isinstance(prob, Sequence) and len(prob) == 2):
            raise ValueError(f"`prob` for local ESS must be a pair (low, high), got {prob!r}")
        prob = (_check_prob(prob[0], "local ESS"), _check_prob(prob[1], "local ESS"))
    y, shape, out_dtype = A.prepare(x, chain_axis, draw_axis, min_chains=1, min_draws=4, what="ess")
    return _by_chunks(lambda yc: _ess_chunk(yc, method, prob, relative), y, shape,
                      out_dtype)


def _mcse_chunk(y: torch.Tensor, method: str, prob) -> torch.Tensor:
    yd = y.to(torch.float64)  # (P, C, N)
    if method == "mean":
        sd = yd.reshape(yd.shape[0], -1).std(dim=-1, correction=1)
        return sd / torch.sqrt(_ess_core(A.split_chains(yd)))
    if method == "sd":
        sims_c2 = (yd - yd.mean(dim=(1, 2), keepdim=True)).square().reshape(yd.shape[0], -1)
        n_eff = _ess_core(A.split_chains(yd))
        evar = sims_c2.mean(dim=-1)
        varvar = (sims_c2.square().mean(dim=-1) - evar.square()) / n_eff
        return torch.sqrt(varvar / evar / 4)
    sorted_flat = A.sort_flat(yd)  # (P, S)
    size = sorted_flat.shape[-1]
    n_eff = _indicator_ess(yd, sorted_flat, prob, False)  # (P,)
    band = torch.tensor(_MCSE_Q_BAND, dtype=torch.float64, device=yd.device)
    ppf = betaincinv((n_eff * prob + 1)[:, None], (n_eff * (1 - prob) + 1)[:, None], band[None, :])
    pos = ppf * size - 1  # (P, 2)
    lo = torch.where(torch.isnan(pos[:, 0]), 0.0, pos[:, 0].clamp(min=0)).floor().long()
    hi = torch.where(torch.isnan(pos[:, 1]), size - 1.0, pos[:, 1].clamp(max=size - 1)).ceil().long()
    th = sorted_flat.gather(1, torch.stack((lo, hi), dim=1))  # (P, 2)
    return (th[:, 1] - th[:, 0]) / 2


def mcse(x: torch.Tensor, method: str = "mean", prob=None, chain_axis: int = 0,
         draw_axis: int = 1) -> torch.Tensor:
    """Monte Carlo standard error of draws ``x`` (chain, draw, *param_shape) -> param_shape.

    "mean": sd / sqrt(ESS_mean); "sd": delta-method error of the sd using ESS_mean of the draws
    (arviz-stats' definition; legacy arviz uses the ESS of the squared deviations instead);
    "median" and "quantile" (float ``prob``): half the width of the order-statistic interval given by
    the Beta(ESS p + 1, ESS (1 - p) + 1) 16/84% quantiles, as in ArviZ. Needs 4+ draws.
    """
    method = _check_method(method, MCSE_METHODS, "mcse")
    if method == "quantile":
        prob = _check_prob(prob, "quantile MCSE")
    elif method == "median":
        prob = 0.5
    y, shape, out_dtype = A.prepare(x, chain_axis, draw_axis, min_chains=1, min_draws=4, what="mcse")
    return _by_chunks(lambda yc: _mcse_chunk(yc, method, prob), y, shape, out_dtype)


def _check_method(method, valid, fn: str) -> str:
    if not isinstance(method, str) or method.lower() not in valid:
        raise ValueError(f"`method` of {fn} must be one of {valid}, got {method!r}")
    return method.lower()
