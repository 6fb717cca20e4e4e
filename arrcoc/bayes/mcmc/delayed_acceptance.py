"""Delayed-acceptance (multilevel) Metropolis-Hastings with cheap surrogate log densities.

Levels f_1, ..., f_{L-1} are cheap approximations of the target f_L (the log density given to the
driver).  A random-walk proposal y must pass every stage in turn; stage l accepts with probability
min(1, exp([f_l(y) - f_l(x)] - [f_{l-1}(y) - f_{l-1}(x)])) (f_0 = 0), so the chain still targets
f_L exactly (Christen & Fox 2005) while the expensive levels are only evaluated for the chains
whose proposal survived the cheaper ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Sequence

import torch

from .adaptation import AdaptationConfig
from .base import Kernel, LogDensityFn, safe_logdensity
from .mh import MHParams, RWMH, proposal_noise

__all__ = ["DAState", "DAInfo", "delayed_acceptance_step", "DelayedAcceptance"]


class DAState(NamedTuple):
    position: torch.Tensor     # (C, d)
    levels: torch.Tensor       # (C, L) log density of every level at the position (last = target)

    @property
    def logdensity(self):
        return self.levels[:, -1]


class DAInfo(NamedTuple):
    accept_prob: torch.Tensor    # (C,) 1.0 if the proposal passed all stages else 0.0 (adaptation statistic)
    is_accepted: torch.Tensor    # (C,) bool
    stage_passed: torch.Tensor   # (C, L) bool: the proposal passed stage l
    step_size: torch.Tensor      # (C,)


def _levels(surrogates, logdensity_fn):
    return list(surrogates) + [logdensity_fn]


def _eval_subset(fn, y, mask):
    out = torch.full(y.shape[:1], -math.inf, dtype=y.dtype, device=y.device)
    idx = mask.nonzero().squeeze(-1)
    if idx.numel():
        out[idx] = safe_logdensity(fn, y[idx])
    return out


def delayed_acceptance_step(state: DAState, generator: torch.Generator, levels: Sequence[LogDensityFn],
                            step_size: torch.Tensor, metric) -> tuple[DAState, DAInfo]:
    """One delayed-acceptance transition over all chains; level l is evaluated only where stage l-1 passed."""
    x = state.position
    y = x + step_size.unsqueeze(-1) * proposal_noise(metric, generator, x)    # (C, d)
    L = len(levels)
    alive = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    new_levels = torch.full_like(state.levels, -math.inf)                     # (C, L)
    passed = []
    log_u = torch.rand(L, x.shape[0], generator=generator, dtype=x.dtype, device=x.device).log()  # (L, C)
    prev_diff = torch.zeros_like(log_u[0])
    for l, fn in enumerate(levels):
        fy = _eval_subset(fn, y, alive)
        new_levels[:, l] = fy
        diff = torch.nan_to_num(fy - state.levels[:, l], nan=-math.inf)
        log_a = diff - prev_diff
        alive = alive & (log_u[l] < log_a)
        passed.append(alive)
        prev_diff = diff
        if not bool(alive.any()):
            passed.extend([alive] * (L - l - 1))
            break
    a1 = alive.unsqueeze(-1)
    new = DAState(torch.where(a1, y, x), torch.where(a1, new_levels, state.levels))
    return new, DAInfo(alive.to(x.dtype), alive, torch.stack(passed, -1), step_size)


@dataclass(frozen=True)
class DelayedAcceptance(Kernel):
    """Delayed-acceptance random-walk MH; ``surrogates`` are cheap log densities (C, d) -> (C,),
    cheapest first; the driver's log density is the final, exact level."""
    surrogates: Sequence[Callable] = ()
    step_size: float | None = None      # None: 2.38 / sqrt(d), the Gaussian-optimal random-walk scale
    metric: str = "diag"                # proposal covariance learnt per coordinate during warmup
    target_accept: float | None = None  # None: 0.234 (0.44 in d = 1) overall acceptance
    adaptation: AdaptationConfig = field(default_factory=lambda: AdaptationConfig(gamma=1.0))  # as RWMH

    def __post_init__(self):
        if len(self.surrogates) == 0 or not all(callable(f) for f in self.surrogates):
            raise ValueError("surrogates must be a non-empty sequence of callables (C, d) -> (C,)")
        self._rw()  # validates metric / step size

    def _rw(self):
        return RWMH(self.step_size, self.metric, self.target_accept, self.adaptation)

    def init(self, position, logdensity_fn):
        if position.dim() != 2:
            raise ValueError(f"position must be (num_chains, dim), got shape {tuple(position.shape)}")
        lv = torch.stack([safe_logdensity(f, position) for f in _levels(self.surrogates, logdensity_fn)], -1)
        return DAState(position, lv)

    def init_params(self, state, logdensity_fn, generator) -> MHParams:
        return self._rw().init_params(state, logdensity_fn, generator)

    def step(self, state, generator, logdensity_fn, params):
        return delayed_acceptance_step(state, generator, _levels(self.surrogates, logdensity_fn),
                                       params.step_size, params.metric)

    def warmup(self, num_warmup, logdensity_fn):
        return self._rw().warmup(num_warmup, logdensity_fn)
