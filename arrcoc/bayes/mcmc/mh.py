"""Random-walk Metropolis-Hastings with Gaussian proposals and adaptive scale and covariance.

Proposal y = x + s * L z, z ~ N(0, I), where L L^T is the proposal covariance (diagonal or dense,
learnt in Stan-style windows during warmup) and s the per-chain scale, tuned by dual averaging
towards the target acceptance rate (0.234 by default, 0.44 in one dimension: Roberts et al.).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from .adaptation import AdaptationConfig, WindowAdaptation
from ._validate import check_mh_settings
from .base import Kernel, LogDensityFn, safe_logdensity
from .metrics import Metric, identity_metric

__all__ = ["MHState", "MHInfo", "MHParams", "rwmh_init", "rwmh_step", "proposal_noise", "RWMH"]


class MHState(NamedTuple):
    position: torch.Tensor    # (C, d)
    logdensity: torch.Tensor  # (C,)


class MHInfo(NamedTuple):
    accept_prob: torch.Tensor   # (C,) min(1, pi(y) / pi(x))
    is_accepted: torch.Tensor   # (C,) bool
    step_size: torch.Tensor     # (C,) proposal scale


class MHParams(NamedTuple):
    step_size: torch.Tensor     # (C,) proposal scale s
    metric: Metric              # proposal covariance (its "inverse mass")


def rwmh_init(position: torch.Tensor, logdensity_fn: LogDensityFn) -> MHState:
    """State at position (C, d)."""
    if position.dim() != 2:
        raise ValueError(f"position must be (num_chains, dim), got shape {tuple(position.shape)}")
    return MHState(position, safe_logdensity(logdensity_fn, position))


def proposal_noise(metric: Metric, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """L z with L L^T = metric.inverse_mass, (C, d)."""
    z = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    if metric.chol is None:
        return metric.inverse_mass.sqrt() * z
    return (metric.chol @ z.unsqueeze(-1)).squeeze(-1)


def rwmh_step(state: MHState, generator: torch.Generator, logdensity_fn: LogDensityFn, step_size: torch.Tensor,
              metric: Metric) -> tuple[MHState, MHInfo]:
    """One random-walk Metropolis transition for all chains; a NaN log density at the proposal rejects."""
    y = state.position + step_size.unsqueeze(-1) * proposal_noise(metric, generator, state.position)  # (C, d)
    logp_y = safe_logdensity(logdensity_fn, y)
    log_ratio = torch.nan_to_num(logp_y - state.logdensity, nan=-math.inf)
    accept_prob = log_ratio.exp().clamp(max=1.0)
    u = torch.rand(log_ratio.shape, generator=generator, dtype=y.dtype, device=y.device)
    acc = u.log() < log_ratio
    new = MHState(torch.where(acc.unsqueeze(-1), y, state.position), torch.where(acc, logp_y, state.logdensity))
    return new, MHInfo(accept_prob, acc, step_size)


@dataclass(frozen=True)
class RWMH(Kernel):
    """Random-walk Metropolis kernel with warmup adaptation of scale and proposal covariance."""
    step_size: float | None = None      # None: 2.38 / sqrt(d), optimal for Gaussian targets (Roberts et al.)
    metric: str = "diag"                # proposal covariance learnt per coordinate; "dense" for correlated targets
    target_accept: float | None = None  # None: 0.234 (d > 1) or 0.44 (d = 1), the asymptotic optima
    # gamma = 1 instead of Stan's 0.05 (tuned for HMC's smooth accept statistic): a single MH
    # acceptance is so noisy that Stan's large dual-averaging jumps leave the averaged scale too
    # big (acceptance 0.10-0.20 for a 0.234 target on 8 seeds of a 3-d Gaussian; 0.21-0.29 with 1)
    adaptation: AdaptationConfig = field(default_factory=lambda: AdaptationConfig(gamma=1.0))

    def __post_init__(self):
        check_mh_settings(self)

    def init(self, position, logdensity_fn):
        return rwmh_init(position, logdensity_fn)

    def _scale0(self, d, like):
        s = self.step_size if self.step_size is not None else 2.38 / math.sqrt(d)
        return torch.full(like.shape[:1], s, dtype=like.dtype, device=like.device)

    def init_params(self, state, logdensity_fn, generator) -> MHParams:
        C, d = state.position.shape
        return MHParams(self._scale0(d, state.position),
                        identity_metric(C, d, self.metric == "dense", state.position.dtype, state.position.device))

    def step(self, state, generator, logdensity_fn, params):
        return rwmh_step(state, generator, logdensity_fn, params.step_size, params.metric)

    def warmup(self, num_warmup, logdensity_fn):
        def target(d):
            return self.target_accept if self.target_accept is not None else (0.44 if d == 1 else 0.234)

        kernel = self

        class _Adapt(WindowAdaptation):
            def init(self, state, params):
                self.target = kernel.adaptation.target_accept or target(state.position.shape[1])
                return super().init(state, params)

        def reset(state, params, generator):
            return kernel._scale0(state.position.shape[1], state.position)

        return _Adapt(num_warmup, self.adaptation, 0.5, self.metric == "dense", reset, shrink_factor=1.0)
