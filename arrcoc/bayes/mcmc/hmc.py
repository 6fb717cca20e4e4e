"""Hamiltonian Monte Carlo with a static path length, and the pieces NUTS shares with it.

Pure functions: ``hmc_init(position, logdensity_fn) -> HMCState`` and
``hmc_step(state, generator, logdensity_fn, step_size, metric, num_steps) -> (HMCState, HMCInfo)``;
``HMC`` bundles them with Stan-style warmup for the driver.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from .adaptation import AdaptationConfig, WindowAdaptation
from .base import Kernel, LogDensityFn, value_and_grad
from ._validate import check_hmc_settings, check_int, check_real
from .initial_metric import hessian_inverse_mass
from .integrators import INTEGRATORS, IntegratorState
from .metrics import Metric, identity_metric, kinetic_energy, make_metric, sample_momentum

__all__ = ["HMCState", "HMCInfo", "HMCParams", "hmc_init", "hmc_step", "find_reasonable_step_size", "HMC",
           "hamiltonian"]


class HMCState(NamedTuple):
    position: torch.Tensor    # (C, d)
    logdensity: torch.Tensor  # (C,)
    grad: torch.Tensor        # (C, d)


class HMCInfo(NamedTuple):
    accept_prob: torch.Tensor   # (C,) Metropolis acceptance probability min(1, exp(-dH))
    is_accepted: torch.Tensor   # (C,) bool
    is_divergent: torch.Tensor  # (C,) bool, energy error > max_delta_energy or non-finite
    energy: torch.Tensor        # (C,) Hamiltonian at the returned state
    num_steps: torch.Tensor     # (C,) leapfrog steps taken
    step_size: torch.Tensor     # (C,)


class HMCParams(NamedTuple):
    step_size: torch.Tensor     # (C,)
    metric: Metric


def hmc_init(position: torch.Tensor, logdensity_fn: LogDensityFn) -> HMCState:
    """State at position (C, d): log density and gradient per chain."""
    if position.dim() != 2:
        raise ValueError(f"position must be (num_chains, dim), got shape {tuple(position.shape)}")
    logp, grad = value_and_grad(logdensity_fn, position)
    return HMCState(position, logp, grad)


def hamiltonian(logdensity: torch.Tensor, momentum: torch.Tensor, metric: Metric,
                velocity: torch.Tensor | None = None) -> torch.Tensor:
    """H = -log pi(q) + K(p), NaN mapped to +inf, (C,); ``velocity`` M^{-1} p (C, d) if already computed."""
    h = -logdensity + kinetic_energy(metric, momentum, velocity)
    return torch.nan_to_num(h, nan=math.inf)


def hmc_step(state: HMCState, generator: torch.Generator, logdensity_fn: LogDensityFn, step_size: torch.Tensor,
             metric: Metric, num_steps: int, integrator: str = "leapfrog",
             max_delta_energy: float = 1000.0, step_size_jitter: float = 0.0) -> tuple[HMCState, HMCInfo]:
    """One HMC transition: fresh momentum, ``num_steps`` integrator steps, Metropolis correction.

    ``step_size_jitter`` j draws each chain's step size uniformly in step_size * [1 - j, 1 + j]
    per transition (Stan's stepsize_jitter), which breaks the resonances of a fixed path length.
    """
    integrate = INTEGRATORS[integrator]
    if step_size_jitter > 0:
        u = torch.rand(step_size.shape, generator=generator, dtype=step_size.dtype, device=step_size.device)
        step_size = step_size * (1 + step_size_jitter * (2 * u - 1))
    p0 = sample_momentum(metric, generator, state.position)          # (C, d)
    h0 = hamiltonian(state.logdensity, p0, metric)                    # (C,)
    z = IntegratorState(state.position, p0, state.logdensity, state.grad)
    for _ in range(num_steps):
        z = integrate(logdensity_fn, metric, z, step_size)
    h1 = hamiltonian(z.logdensity, z.momentum, metric)
    delta = h1 - h0                                                   # (C,)
    delta = torch.where(torch.isnan(delta), torch.full_like(delta, math.inf), delta)
    accept_prob = torch.exp(-delta).clamp(max=1.0)
    u = torch.rand(delta.shape, generator=generator, dtype=delta.dtype, device=delta.device)
    accepted = u < accept_prob
    divergent = delta > max_delta_energy
    a = accepted.unsqueeze(-1)
    new = HMCState(torch.where(a, z.position, state.position), torch.where(accepted, z.logdensity, state.logdensity),
                   torch.where(a, z.grad, state.grad))
    energy = torch.where(accepted, h1, h0)
    steps = torch.full_like(delta, float(num_steps))
    return new, HMCInfo(accept_prob, accepted, divergent, energy, steps, step_size)


def find_reasonable_step_size(state: HMCState, generator: torch.Generator, logdensity_fn: LogDensityFn,
                              step_size: torch.Tensor, metric: Metric, max_iter: int = 100) -> torch.Tensor:
    """Stan's step-size initialisation, per chain: double / halve until one leapfrog step's
    acceptance crosses 0.8."""
    integrate = INTEGRATORS["leapfrog"]
    log08 = math.log(0.8)
    eps = step_size.clone()

    def delta_h(eps):
        p0 = sample_momentum(metric, generator, state.position)
        h0 = hamiltonian(state.logdensity, p0, metric)
        z = integrate(logdensity_fn, metric, IntegratorState(state.position, p0, state.logdensity, state.grad), eps)
        return h0 - hamiltonian(z.logdensity, z.momentum, metric)

    dh = delta_h(eps)
    up = dh > log08                                                   # (C,) True: grow the step
    todo = torch.ones_like(up)
    for _ in range(max_iter):
        dh = delta_h(eps)
        stop = torch.where(up, ~(dh > log08), ~(dh < log08))
        todo = todo & ~stop
        if not bool(todo.any()):
            break
        eps = torch.where(todo, torch.where(up, eps * 2, eps / 2), eps)
        if bool((eps > 1e7).any()) or bool((eps < 1e-300).any()):
            raise ValueError("step size initialisation failed: the log density looks improper or "
                             "discontinuous (step size diverged to infinity or zero)")
    return eps


@dataclass(frozen=True)
class HMC(Kernel):
    """Static-path HMC kernel with Stan-style warmup."""
    num_steps: int = 16               # path length in leapfrog steps; tune to the target's scale
    step_size: float | None = None    # None: Stan's heuristic from 1.0 at the initial point
    metric: str = "diag"              # "diag" is Stan's default; "dense" for strongly correlated targets
    inverse_mass: torch.Tensor | None = None  # initial inverse mass (d,), (d, d) or per chain; None: identity
    integrator: str = "leapfrog"      # leapfrog: one gradient per step, exact time-reversibility
    target_accept: float = 0.8        # Stan's adapt_delta default
    max_delta_energy: float = 1000.0  # Stan's divergence threshold on the energy error
    step_size_jitter: float = 0.0     # Stan's default (none); 0.2-0.5 breaks fixed-path resonances on near-Gaussian targets
    adaptation: AdaptationConfig = field(default_factory=AdaptationConfig)
    default_init = "optimize"         # as NUTS: multi-start short optimisation (initialization.py)

    def __post_init__(self):
        check_hmc_settings(self)
        object.__setattr__(self, "num_steps", check_int(self.num_steps, "num_steps", minimum=1))
        check_real(self.step_size_jitter, "step_size_jitter", low=0.0, high=1.0, high_open=True)

    def init(self, position, logdensity_fn):
        return hmc_init(position, logdensity_fn)

    def init_params(self, state, logdensity_fn, generator) -> HMCParams:
        return _init_params(self, state, logdensity_fn, generator)

    def step(self, state, generator, logdensity_fn, params):
        return hmc_step(state, generator, logdensity_fn, params.step_size, params.metric, self.num_steps,
                        self.integrator, self.max_delta_energy, self.step_size_jitter)

    def warmup(self, num_warmup, logdensity_fn):
        return _window(self, num_warmup, logdensity_fn)


def _init_params(k, state, logdensity_fn, generator) -> HMCParams:
    C, d = state.position.shape
    dt, dev = state.position.dtype, state.position.device
    curvature = _curvature(k, logdensity_fn)
    if curvature is not None and k.adaptation.adapt_metric:
        metric = make_metric(curvature(state.position, None))
    elif k.inverse_mass is None:
        metric = identity_metric(C, d, k.metric == "dense", dt, dev)
    else:
        im = torch.as_tensor(k.inverse_mass, dtype=dt, device=dev)
        want = 2 if k.metric == "dense" else 1
        if im.dim() == want:
            im = im.expand((C,) + im.shape).clone()
        if im.dim() != want + 1 or im.shape[0] != C or im.shape[-1] != d:
            raise ValueError(f"inverse_mass must be {'(d, d)' if want == 2 else '(d,)'} or per chain with d = {d}, "
                             f"got shape {tuple(im.shape)}")
        metric = make_metric(im)
    eps = torch.full((C,), k.step_size if k.step_size is not None else 1.0, dtype=dt, device=dev)
    if k.step_size is None:
        eps = find_reasonable_step_size(state, generator, logdensity_fn, eps, metric)
    return HMCParams(eps, metric)


def _window(k, num_warmup, logdensity_fn):
    def find(state, params, generator):
        return find_reasonable_step_size(state, generator, logdensity_fn, params.step_size, params.metric)
    return WindowAdaptation(num_warmup, k.adaptation, k.target_accept, k.metric == "dense", find,
                            curvature=_curvature(k, logdensity_fn))


def _curvature(k, logdensity_fn):
    """``curvature(position, mask) -> inverse mass`` for ``init_metric="hessian"`` without a given
    inverse_mass (initial_metric.py), else None."""
    if k.adaptation.init_metric != "hessian" or k.inverse_mass is not None:
        return None

    def curvature(position, mask):
        return hessian_inverse_mass(logdensity_fn, position, k.metric == "dense", mask=mask)
    return curvature
