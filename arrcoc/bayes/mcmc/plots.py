"""Trace, rank and autocorrelation plots of (chain, draw, ...) draws; matplotlib imported lazily."""
from __future__ import annotations

import math
from typing import Mapping

import torch

__all__ = ["plot_trace", "plot_rank", "plot_autocorr", "scalar_draws"]


def scalar_draws(draws: Mapping[str, torch.Tensor] | torch.Tensor, var_names=None) -> dict[str, torch.Tensor]:
    """Split every parameter into scalar components: label -> (chain, draw)."""
    if isinstance(draws, torch.Tensor):
        draws = {"x": draws}
    if var_names is not None:
        missing = [v for v in var_names if v not in draws]
        if missing:
            raise ValueError(f"unknown var_names {missing}; have {list(draws)}")
        draws = {k: draws[k] for k in var_names}
    out = {}
    for name, v in draws.items():
        if v.dim() < 2:
            raise ValueError(f"draws[{name!r}] must be (chain, draw, ...), got shape {tuple(v.shape)}")
        flat = v.reshape(v.shape[0], v.shape[1], -1).detach().cpu()
        if v.dim() == 2:
            out[name] = flat[..., 0]
        else:
            for i in range(flat.shape[-1]):
                idx = torch.unravel_index(torch.tensor(i), v.shape[2:])
                out[f"{name}[{','.join(str(int(j)) for j in idx)}]"] = flat[..., i]
    return out


def _grid(n, ncols, figsize_per=(3.2, 2.2)):
    import matplotlib
    import matplotlib.pyplot as plt  # noqa: F401
    from matplotlib.figure import Figure
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(figsize_per[0] * ncols, figsize_per[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def plot_trace(draws, var_names=None, max_params: int = 24):
    """Per scalar parameter: value against draw, one line per chain, plus a pooled histogram."""
    sd = scalar_draws(draws, var_names)
    items = list(sd.items())[:max_params]
    fig, axes = _grid(2 * len(items), 2)
    for k, (label, x) in enumerate(items):
        ax_h, ax_t = axes[2 * k], axes[2 * k + 1]
        for c in range(x.shape[0]):
            ax_t.plot(x[c].numpy(), lw=0.5, alpha=0.8)
            ax_h.hist(x[c].numpy(), bins=30, histtype="step", density=True)
        ax_t.set_title(label, fontsize=8)
        ax_h.set_title(label, fontsize=8)
    return fig


def plot_rank(draws, var_names=None, bins: int = 20, max_params: int = 24):
    """Rank histograms per chain (ranks over all chains pooled); flat bars = good mixing."""
    sd = scalar_draws(draws, var_names)
    items = list(sd.items())[:max_params]
    C = items[0][1].shape[0] if items else 1
    fig, axes = _grid(len(items) * C, C)
    for k, (label, x) in enumerate(items):
        ranks = x.reshape(-1).argsort().argsort().reshape(x.shape).float()   # (C, S)
        for c in range(C):
            ax = axes[k * C + c]
            ax.hist(ranks[c].numpy(), bins=bins, range=(0, x.numel()))
            ax.set_title(f"{label} chain {c}", fontsize=8)
            ax.set_yticks([])
    return fig


def plot_autocorr(draws, var_names=None, max_lag: int = 50, max_params: int = 24):
    """Autocorrelation against lag, one line per chain (arrcoc.bayes.diagnostics.autocorr)."""
    from arrcoc.bayes.diagnostics import autocorr
    sd = scalar_draws(draws, var_names)
    items = list(sd.items())[:max_params]
    fig, axes = _grid(len(items), min(4, max(1, len(items))))
    for k, (label, x) in enumerate(items):
        ac = autocorr(x.double(), dim=-1)                                     # (C, S)
        lags = min(max_lag, ac.shape[-1])
        for c in range(ac.shape[0]):
            axes[k].plot(range(lags), ac[c, :lags].numpy(), lw=0.8)
        axes[k].axhline(0.0, color="k", lw=0.5)
        axes[k].set_title(label, fontsize=8)
    return fig
