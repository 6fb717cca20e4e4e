"""Stan-style warmup: dual-averaging step size and windowed (diagonal or dense) metric adaptation.

All state is per chain: each chain learns its own step size and mass matrix (as Stan does), unless
``pool_chains`` asks for one metric estimated from the within-chain covariances of all chains.
Iteration counts are per chain too ((C,) tensors), so that chains which finish their transitions
at different times (asynchronous NUTS) each follow their own warmup schedule: ``update`` takes a
``mask`` of the chains that completed a transition.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from .._validate import check_int, check_probability, check_real
from .metrics import make_metric

__all__ = [
    "AdaptationConfig",
    "DualAveragingState",
    "dual_averaging_init",
    "dual_averaging_update",
    "dual_averaging_final",
    "WelfordState",
    "welford_init",
    "welford_update",
    "welford_covariance",
    "window_schedule",
    "WindowAdaptation",
]


@dataclass(frozen=True)
class AdaptationConfig:
    """Warmup settings (defaults are Stan's)."""
    target_accept: float | None = None  # None: the kernel's own default (0.8 for HMC/NUTS, 0.234 for MH)
    gamma: float = 0.05          # dual averaging: Stan's regularisation scale
    t0: float = 10.0             # dual averaging: Stan's iteration offset, damps the first updates
    kappa: float = 0.75          # dual averaging: Stan's averaging decay, in (0.5, 1]
    init_buffer: int = 75        # fast step-size-only iterations before the first metric window (Stan)
    term_buffer: int = 50        # fast step-size-only iterations after the last metric window (Stan)
    base_window: int = 25        # first slow window length, doubled each window (Stan)
    regularize: float = 1e-3     # shrink the estimated covariance towards regularize * I with weight 5/(n+5) (Stan)
    adapt_step_size: bool = True  # dual averaging on; off keeps the initial step size
    adapt_metric: bool = True    # windowed metric estimation on; off keeps the initial metric
    pool_chains: bool = False    # False: per-chain metric as in Stan; True: average the chains' estimates
    # HMC/NUTS without an inverse_mass: "identity" (Stan) starts from the unit metric; "hessian" starts
    # from the inverse of minus the Hessian at each chain's position (initial_metric.py: 2 d gradients
    # per chain), taken again every curvature_every iterations of the init buffer (the chain moves
    # into the bulk meanwhile: on diamonds the start's curvature still needed 50-100 leapfrogs per
    # iteration, the one at iteration 75 ~8), and mixed into every slow window's estimate
    init_metric: str = "identity"
    curvature_every: int = 25      # 25: three curvature points in Stan's 75-iteration init buffer
    # pseudo-draws the curvature at a window's end counts for against the window's n draws: 100
    # because the first window's 25 draws cannot estimate a 26-dim covariance (diamonds: weight 5,
    # Stan's shrinkage, made the next window cost 8-19k leapfrogs per chain; 26 -> 4-11k; 100 -> 2-6k),
    # while the last window of a 1000-iteration warmup (500 draws) still outweighs it 5 to 1
    curvature_weight: float = 100.0

    def __post_init__(self):
        if self.target_accept is not None:
            check_probability(self.target_accept, "adaptation.target_accept")
        check_real(self.gamma, "adaptation.gamma", low=0.0, low_open=True)
        check_real(self.t0, "adaptation.t0", low=0.0)
        check_real(self.kappa, "adaptation.kappa", low=0.5, high=1.0, low_open=True)
        for name in ("init_buffer", "term_buffer"):
            object.__setattr__(self, name, check_int(getattr(self, name), f"adaptation.{name}", minimum=0))
        object.__setattr__(self, "base_window", check_int(self.base_window, "adaptation.base_window", minimum=1))
        check_real(self.regularize, "adaptation.regularize", low=0.0, high=1.0, high_open=True)
        if self.init_metric not in ("identity", "hessian"):
            raise ValueError(f"adaptation.init_metric must be 'identity' or 'hessian', got {self.init_metric!r}")
        object.__setattr__(self, "curvature_every", check_int(self.curvature_every, "adaptation.curvature_every",
                                                              minimum=1))
        check_real(self.curvature_weight, "adaptation.curvature_weight", low=0.0)
        for name in ("adapt_step_size", "adapt_metric", "pool_chains"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"adaptation.{name} must be True or False, got {getattr(self, name)!r}")


class DualAveragingState(NamedTuple):
    log_step: torch.Tensor      # (C,) current log step size x
    log_step_avg: torch.Tensor  # (C,) averaged iterate x_bar
    h_bar: torch.Tensor         # (C,) running mean of (target - accept)
    mu: torch.Tensor            # (C,) shrinkage point log(10 * eps0)
    count: int | torch.Tensor   # updates so far: an int, or (C,) per chain


def dual_averaging_init(step_size: torch.Tensor, shrink_factor: float = 10.0) -> DualAveragingState:
    """Start (or restart) dual averaging from a step size (C,); the iterates shrink towards
    log(shrink_factor * step_size) (Stan's 10 for HMC, which favours longer steps)."""
    z = torch.zeros_like(step_size)
    return DualAveragingState(step_size.log(), z, z.clone(), (shrink_factor * step_size).log(), 0)


def dual_averaging_update(s: DualAveragingState, accept: torch.Tensor, target: float,
                          cfg: AdaptationConfig) -> DualAveragingState:
    """Nesterov dual averaging of log(step size) towards mean acceptance ``target`` (Hoffman & Gelman)."""
    t = s.count + 1
    if isinstance(t, torch.Tensor):                 # per-chain counts: compute in the step size's dtype
        t = t.to(s.log_step.dtype)
    accept = torch.nan_to_num(accept, nan=0.0).clamp(max=1.0)
    eta = 1.0 / (t + cfg.t0)
    h_bar = (1 - eta) * s.h_bar + eta * (target - accept)
    x = s.mu - h_bar * (t ** 0.5 if isinstance(t, torch.Tensor) else math.sqrt(t)) / cfg.gamma
    x_eta = t ** (-cfg.kappa)
    x_bar = (1 - x_eta) * s.log_step_avg + x_eta * x
    return DualAveragingState(x, x_bar, h_bar, s.mu, t)


def dual_averaging_final(s: DualAveragingState) -> torch.Tensor:
    """Final step size exp(x_bar) (C,); a chain with no update keeps its current step size."""
    if isinstance(s.count, torch.Tensor):
        return torch.where(s.count == 0, s.log_step, s.log_step_avg).exp()
    if s.count == 0:
        return s.log_step.exp()
    return s.log_step_avg.exp()


class WelfordState(NamedTuple):
    mean: torch.Tensor   # (C, d)
    m2: torch.Tensor     # (C, d) or (C, d, d)
    count: int | torch.Tensor  # draws so far: an int, or (C,) per chain


def welford_init(num_chains: int, dim: int, dense: bool, dtype, device) -> WelfordState:
    """Empty running mean/covariance accumulator per chain."""
    mean = torch.zeros(num_chains, dim, dtype=dtype, device=device)
    m2 = torch.zeros((num_chains, dim, dim) if dense else (num_chains, dim), dtype=dtype, device=device)
    return WelfordState(mean, m2, 0)


def welford_update(s: WelfordState, x: torch.Tensor) -> WelfordState:
    """Add one draw per chain x (C, d)."""
    n = s.count + 1
    delta = x - s.mean                      # (C, d)
    mean = s.mean + delta / (n.unsqueeze(-1) if isinstance(n, torch.Tensor) else n)
    delta2 = x - mean
    if s.m2.dim() == 3:
        m2 = s.m2 + delta.unsqueeze(-1) * delta2.unsqueeze(-2)  # (C, d, d)
    else:
        m2 = s.m2 + delta * delta2
    return WelfordState(mean, m2, n)


def welford_covariance(s: WelfordState, regularize: float = 1e-3, pool: bool = False) -> torch.Tensor:
    """Regularised covariance (n/(n+5)) S + regularize (5/(n+5)) I, per chain (or pooled)."""
    n = s.count
    if (bool((n < 2).any()) if isinstance(n, torch.Tensor) else n < 2):
        raise ValueError("need at least two draws per chain to estimate a covariance")
    if isinstance(n, torch.Tensor):                 # per-chain counts: broadcast over (d,) or (d, d)
        n = n.to(s.m2.dtype).reshape((-1,) + (1,) * (s.m2.dim() - 1))
    cov = s.m2 / (n - 1)
    if pool:
        cov = cov.mean(0, keepdim=True).expand_as(cov).clone()
    w = n / (n + 5.0)
    if cov.dim() == 3:
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        cov = w * cov + regularize * (5.0 / (n + 5.0)) * eye
        return 0.5 * (cov + cov.transpose(-1, -2))
    return w * cov + regularize * (5.0 / (n + 5.0))


def window_schedule(num_warmup: int, cfg: AdaptationConfig) -> tuple[list[bool], list[bool]]:
    """Per warmup iteration: (collect draw for the metric?, end of a slow window?), as Stan does.

    Windows: init_buffer fast iterations, then slow windows of base_window, 2*base_window, ... (the
    last stretched to reach the terminal buffer), then term_buffer fast iterations.  With fewer than
    20 warmup iterations no metric is learnt; if the buffers do not fit they become 15% / 75% / 10%.
    """
    collect = [False] * num_warmup
    end = [False] * num_warmup
    if num_warmup < 20:
        return collect, end
    init_b, term_b, base = cfg.init_buffer, cfg.term_buffer, cfg.base_window
    if init_b + base + term_b > num_warmup:
        init_b = int(0.15 * num_warmup)
        term_b = int(0.1 * num_warmup)
        base = num_warmup - (init_b + term_b)
    size = base
    next_end = init_b + size - 1
    last = num_warmup - term_b - 1
    for i in range(num_warmup):
        if init_b <= i < num_warmup - term_b:
            collect[i] = True
        if i == next_end:
            end[i] = True
            if next_end == last:
                next_end = -1
                continue
            size *= 2
            next_end = i + size
            if next_end != last and next_end + 2 * size >= num_warmup - term_b:
                next_end = last
    return collect, end


def _select(mask: torch.Tensor, new: tuple, old: tuple) -> tuple:
    """Per-chain choice between two NamedTuples of (C, ...) tensors (ints pass through from new)."""
    out = []
    for a, b in zip(new, old):
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            out.append(torch.where(mask.reshape((-1,) + (1,) * (a.dim() - 1)), a, b))
        else:
            out.append(a)
    return type(new)(*out)


class WindowAdaptation:
    """Stateless helper running Stan's warmup for kernels whose params have ``step_size`` and ``metric``.

    ``curvature(position, mask) -> inverse mass`` (``init_metric="hessian"``): the curvature metric
    at the chains' positions (rows outside ``mask`` unused).  ``find_step_size(state, params,
    generator) -> (C,)`` re-initialises the step size after each metric update (Stan's heuristic for HMC/NUTS); None keeps the current one.  ``shrink_factor``:
    dual averaging shrinks towards log(shrink_factor * that step size) (10 as in Stan; random-walk
    MH uses 1, its reset 2.38 / sqrt(d) being already the optimal scale for the learnt covariance).  Every count is per
    chain; ``update(..., mask)`` and ``final(..., mask)`` touch only the chains in ``mask`` (all when
    None), so that asynchronous kernels adapt each chain when its own transition ends.
    """

    class State(NamedTuple):
        dual: DualAveragingState
        welford: WelfordState
        iteration: torch.Tensor   # (C,) warmup transitions seen per chain

    def __init__(self, num_warmup: int, cfg: AdaptationConfig, target_accept: float, dense: bool,
                 find_step_size: Callable | None = None, shrink_factor: float = 10.0,
                 curvature: Callable | None = None):
        self.num_warmup = num_warmup
        self.curvature = curvature
        self.shrink_factor = shrink_factor
        self.cfg = cfg
        self.target = cfg.target_accept if cfg.target_accept is not None else target_accept
        if not 0.0 < self.target < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1), got {self.target}")
        self.dense = dense
        self.find_step_size = find_step_size
        self.collect, self.end = window_schedule(num_warmup, cfg)
        # the init buffer's curvature points (init_metric="hessian"): every curvature_every iterations
        # and its last iteration, as scheduled (short runs shrink the buffer)
        buffer = self.collect.index(True) if True in self.collect else 0
        self.curvature_at = [k < buffer and ((k + 1) % cfg.curvature_every == 0 or k + 1 == buffer)
                             for k in range(num_warmup)]
        self._schedule: dict = {}   # device -> (collect, end, curvature_at) as bool tensors

    def _flags(self, device):
        if device not in self._schedule:
            self._schedule[device] = tuple(torch.tensor(flags, dtype=torch.bool, device=device)
                                           for flags in (self.collect, self.end, self.curvature_at))
        return self._schedule[device]

    def _welford0(self, position):
        C, d = position.shape
        w = welford_init(C, d, self.dense, position.dtype, position.device)
        return w._replace(count=torch.zeros(C, dtype=torch.long, device=position.device))

    def init(self, state, params) -> "WindowAdaptation.State":
        """Adaptation state for the current params (C chains, d dims)."""
        C = state.position.shape[0]
        dev = state.position.device
        dual = dual_averaging_init(params.step_size, self.shrink_factor)._replace(
            count=torch.zeros(C, dtype=torch.long, device=dev))
        return self.State(dual, self._welford0(state.position), torch.zeros(C, dtype=torch.long, device=dev))

    def update(self, astate, state, info, params, generator, mask: torch.Tensor | None = None):
        """Learn from one warmup transition of the chains in ``mask`` (all when None); returns
        (adaptation state, params for the next transition)."""
        i = astate.iteration                                          # (C,)
        dual, wel = astate.dual, astate.welford
        m = torch.ones_like(i, dtype=torch.bool) if mask is None else mask
        if self.cfg.adapt_step_size:
            dual = _select(m, dual_averaging_update(dual, info.accept_prob, self.target, self.cfg), dual)
            params = params._replace(step_size=torch.where(m, dual.log_step.exp(), params.step_size))
        if self.cfg.adapt_metric and self.num_warmup > 0:
            in_warmup = m & (i < self.num_warmup)
            ic = i.clamp(max=self.num_warmup - 1)
            collect_t, end_t, curvature_t = self._flags(i.device)
            collect = in_warmup & collect_t[ic]
            if bool(collect.any()):
                wel = _select(collect, welford_update(wel, state.position), wel)
            end = in_warmup & end_t[ic] & (wel.count >= 2)
            if self.curvature is not None:               # the init buffer's curvature points
                at = in_warmup & curvature_t[ic]
                if bool(at.any()):
                    params, dual = self._new_metric(at, self.curvature(state.position, at), state, params,
                                                    generator, dual, i)
            if bool(end.any()):
                w = wel._replace(count=torch.where(end, wel.count, torch.full_like(wel.count, 2)))
                cov = welford_covariance(w, self.cfg.regularize, self.cfg.pool_chains)
                if self.curvature is not None and self.cfg.curvature_weight > 0:
                    # the curvature at the chain's position as a prior guess worth curvature_weight draws
                    n = w.count.to(cov.dtype).reshape((-1,) + (1,) * (cov.dim() - 1))
                    nu = self.cfg.curvature_weight
                    cov = (n * cov + nu * self.curvature(state.position, end)) / (n + nu)
                params, dual = self._new_metric(end, cov, state, params, generator, dual, i)
                wel = _select(end, self._welford0(state.position), wel)
        return self.State(dual, wel, i + m), params

    def _new_metric(self, where, cov, state, params, generator, dual, i):
        """Params with inverse mass ``cov`` for the chains in ``where``, their step size found again
        and dual averaging restarted (as Stan does after each window)."""
        old = params.metric.inverse_mass
        params = params._replace(metric=make_metric(torch.where(
            where.reshape((-1,) + (1,) * (old.dim() - 1)), cov, old)))
        if self.find_step_size is not None:
            eps = self.find_step_size(state, params, generator)
            params = params._replace(step_size=torch.where(where, eps, params.step_size))
        fresh = dual_averaging_init(params.step_size, self.shrink_factor)._replace(count=torch.zeros_like(i))
        return params, _select(where, fresh, dual)

    def final(self, astate, params, mask: torch.Tensor | None = None):
        """Params for sampling: the averaged step size, the last metric (for the chains in ``mask``)."""
        if self.cfg.adapt_step_size:
            eps = dual_averaging_final(astate.dual)
            params = params._replace(step_size=eps if mask is None else torch.where(mask, eps, params.step_size))
        return params
