"""Parallel tempering (replica exchange), vectorised over chains and temperatures.

Each chain carries T replicas at inverse temperatures 1 = beta_0 > beta_1 > ... > beta_{T-1} > 0
targeting pi_beta(x) = ref(x) + beta * (log pi(x) - ref(x)) (ref: an optional normalised reference
such as the prior; without it pi_beta = beta * log pi).  All C * T replicas move together through a
base kernel (random-walk MH by default), then neighbouring temperatures propose to swap states with
probability min(1, exp((beta_i - beta_j) (D_j - D_i))), D = log pi - ref, alternating even and odd
pairs (the deterministic even-odd scheme, non-reversible PT).  The beta = 1 replicas are the draws.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import torch

from .base import Kernel, safe_logdensity
from .mh import RWMH

__all__ = ["TemperingState", "TemperingInfo", "ParallelTempering", "geometric_betas"]


def geometric_betas(num_temps: int, min_beta: float, dtype=torch.float64, device=None) -> torch.Tensor:
    """Inverse temperatures 1 ... min_beta spaced geometrically, (T,)."""
    if num_temps < 2:
        raise ValueError(f"num_temps must be >= 2, got {num_temps}")
    if not 0.0 < min_beta < 1.0:
        raise ValueError(f"min_beta must lie in (0, 1), got {min_beta}")
    return torch.logspace(0.0, math.log10(min_beta), num_temps, dtype=dtype, device=device)


class TemperingState(NamedTuple):
    base: Any                   # base kernel state over the C * T replicas (chain-major: row = c * T + t)
    iteration: int              # even / odd swap parity


class TemperingInfo(NamedTuple):
    accept_prob: torch.Tensor   # (C,) base kernel acceptance of the beta = 1 replica
    swap_prob: torch.Tensor     # (C, T - 1) swap acceptance of each neighbouring pair (NaN if not proposed)
    is_divergent: torch.Tensor  # (C,) base kernel divergence of the beta = 1 replica (False for MH)
    base: Any                   # base kernel info over all replicas (used by the warmup)


class _Tempered:
    """Tempered log density over the (C * T, d) replica batch (rows must stay aligned: no subsets)."""
    subset_ok = False

    def __init__(self, fn, ref, betas_rows):
        self.fn, self.ref, self.betas = fn, ref, betas_rows

    def split(self, x):
        lp = self.fn(x)
        r = self.ref(x) if self.ref is not None else torch.zeros_like(lp)
        return lp, r

    def __call__(self, x):
        lp, r = self.split(x)
        return r + self.betas.to(lp.dtype) * (lp - r)


@dataclass(frozen=True)
class ParallelTempering(Kernel):
    """Replica-exchange kernel around a base kernel (default: adaptive random-walk MH)."""
    betas: Sequence[float] | torch.Tensor | None = None  # None: geometric from 1 to min_beta over num_temps
    num_temps: int = 8                 # enough rungs for swap rates ~0.2-0.5 on moderate bimodality
    min_beta: float = 0.01             # hottest rung flattens barriers of ~ -log(0.01) = 4.6 nats x log-density scale
    base: Any = field(default_factory=RWMH)  # any kernel of this package; runs on all replicas at once
    reference_logdensity_fn: Callable | None = None  # normalised reference (e.g. the prior); None: pure power

    def __post_init__(self):
        b = self._betas(torch.float64, None)
        if b.dim() != 1 or b.numel() < 2:
            raise ValueError("betas must be a 1-D sequence of at least two inverse temperatures")
        if not bool(torch.isclose(b[0], torch.ones((), dtype=b.dtype))) or not bool((b[1:] < b[:-1]).all()) \
                or not bool((b > 0).all()):
            raise ValueError("betas must start at 1 and decrease strictly, staying > 0")

    def _betas(self, dtype, device):
        if self.betas is None:
            return geometric_betas(self.num_temps, self.min_beta, dtype, device)
        return torch.as_tensor(self.betas, dtype=dtype, device=device)

    def _tempered(self, fn, x):
        T = self._betas(x.dtype, x.device).numel()
        C = x.shape[0] // T
        return _Tempered(fn, self.reference_logdensity_fn, self._betas(x.dtype, x.device).repeat(C))

    def init(self, position, logdensity_fn):
        if position.dim() != 2:
            raise ValueError(f"position must be (num_chains, dim), got shape {tuple(position.shape)}")
        T = self._betas(position.dtype, position.device).numel()
        rows = position.repeat_interleave(T, 0)                                 # (C * T, d)
        return TemperingState(self.base.init(rows, self._tempered(logdensity_fn, rows)), 0)

    def init_params(self, state, logdensity_fn, generator):
        return self.base.init_params(state.base, self._tempered(logdensity_fn, state.base.position), generator)

    def draw_position(self, state):
        T = self._betas(state.base.position.dtype, state.base.position.device).numel()
        x = state.base.position
        return x.reshape(-1, T, x.shape[-1])[:, 0]                               # (C, d)

    def draw_logdensity(self, state):
        T = self._betas(state.base.position.dtype, state.base.position.device).numel()
        return state.base.logdensity.reshape(-1, T)[:, 0]                      # (C,) the beta = 1 replica

    def step(self, state, generator, logdensity_fn, params):
        x = state.base.position
        betas = self._betas(x.dtype, x.device)                                  # (T,)
        T = betas.numel()
        C = x.shape[0] // T
        tfn = self._tempered(logdensity_fn, x)
        base_state, base_info = self.base.step(state.base, generator, tfn, params)
        x = base_state.position
        d = x.shape[-1]
        # D = log pi - ref per replica, from the tempered value (no extra evaluation without a reference)
        t_val = base_state.logdensity.reshape(C, T)
        if self.reference_logdensity_fn is None:
            D = t_val / betas
        else:
            r = safe_logdensity(self.reference_logdensity_fn, x).reshape(C, T)
            D = (t_val - r) / betas
        start = state.iteration % 2
        a = torch.arange(start, T - 1, 2, device=x.device)                     # (P,) lower rung of each pair
        swap_prob = torch.full((C, T - 1), math.nan, dtype=x.dtype, device=x.device)
        if a.numel():
            b = a + 1
            log_alpha = (betas[a] - betas[b]) * (D[:, b] - D[:, a])            # (C, P)
            log_alpha = torch.nan_to_num(log_alpha, nan=-math.inf)
            swap_prob[:, a] = log_alpha.exp().clamp(max=1.0)
            u = torch.rand(log_alpha.shape, generator=generator, dtype=x.dtype, device=x.device)
            acc = u.log() < log_alpha                                          # (C, P)
            perm = torch.arange(T, device=x.device).expand(C, T).clone()      # (C, T)
            perm[:, a] = torch.where(acc, b, a)
            perm[:, b] = torch.where(acc, a, b)
            xs = x.reshape(C, T, d).gather(1, perm.unsqueeze(-1).expand(C, T, d)).reshape(C * T, d)
            if bool(acc.any()):
                base_state = self.base.init(xs, tfn)
        acc0 = base_info.accept_prob.reshape(C, T)[:, 0]
        div = getattr(base_info, "is_divergent", None)
        div0 = div.reshape(C, T)[:, 0] if div is not None else torch.zeros(C, dtype=torch.bool, device=x.device)
        return TemperingState(base_state, state.iteration + 1), TemperingInfo(acc0, swap_prob, div0, base_info)

    def warmup(self, num_warmup, logdensity_fn):
        inner = self.base.warmup(num_warmup, logdensity_fn)
        return None if inner is None else _TemperingAdapt(inner)


class _TemperingAdapt:
    """Runs the base kernel's warmup on all replicas (each temperature learns its own scale)."""

    def __init__(self, inner):
        self.inner = inner

    def init(self, state, params):
        return self.inner.init(state.base, params)

    def update(self, astate, state, info, params, generator):
        return self.inner.update(astate, state.base, info.base, params, generator)

    def final(self, astate, params):
        return self.inner.final(astate, params)
