"""Symplectic integrators for Hamiltonian dynamics, batched over chains with per-chain step sizes.

Hamiltonian H(q, p) = -log pi(q) + p^T M^{-1} p / 2.  Step sizes are (C,) and may be negative
(integrating backwards in time, as NUTS does).  ``active`` (C,) bool freezes the other chains and
skips their log-density evaluation.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from .base import LogDensityFn, value_and_grad
from .metrics import Metric, velocity

__all__ = ["IntegratorState", "leapfrog", "leapfrog_step", "leapfrog_raw", "mclachlan", "INTEGRATORS"]


class IntegratorState(NamedTuple):
    position: torch.Tensor     # (C, d)
    momentum: torch.Tensor     # (C, d)
    logdensity: torch.Tensor   # (C,)
    grad: torch.Tensor         # (C, d) gradient of the log density


def _freeze(active, new: IntegratorState, old: IntegratorState) -> IntegratorState:
    if active is None:
        return new
    a = active.unsqueeze(-1)  # (C, 1)
    return IntegratorState(
        torch.where(a, new.position, old.position),
        torch.where(a, new.momentum, old.momentum),
        torch.where(active, new.logdensity, old.logdensity),
        torch.where(a, new.grad, old.grad),
    )


def leapfrog(logdensity_fn: LogDensityFn, metric: Metric, state: IntegratorState, step_size: torch.Tensor,
             active: torch.Tensor | None = None) -> IntegratorState:
    """One velocity-Verlet (leapfrog) step: half kick, drift, half kick.  One gradient per step."""
    q, p, logp, grad = leapfrog_raw(logdensity_fn, metric, state.position, state.momentum, state.logdensity,
                                    state.grad, step_size.unsqueeze(-1), active)
    return _freeze(active, IntegratorState(q, p, logp, grad), state)


def leapfrog_step(value_and_grad_fn: Callable, metric: Metric, q: torch.Tensor, p: torch.Tensor,
                  grad: torch.Tensor, eps: torch.Tensor):
    """One leapfrog step on raw tensors, eps (C, 1): half kick, drift, ``value_and_grad_fn(q) ->
    (logp (C,), grad (C, d))``, half kick.  Straight-line tensor code (traceable into one graph).
    Returns (q, p, logp, grad)."""
    half = 0.5 * eps
    p = torch.addcmul(p, half, grad)                                  # (C, d)
    q = torch.addcmul(q, eps, velocity(metric, p))                    # (C, d)
    logp, grad = value_and_grad_fn(q)
    p = torch.addcmul(p, half, grad)
    return q, p, logp, grad


def leapfrog_raw(logdensity_fn, metric, q, p, logp, grad, eps, active=None):
    """Leapfrog on raw tensors with eps (C, 1); rows outside ``active`` come back meaningless
    (not evaluated, not frozen) -- the fast path NUTS uses."""
    return leapfrog_step(lambda x: value_and_grad(logdensity_fn, x, active, (logp, grad)), metric, q, p, grad, eps)


# McLachlan (1995) two-stage minimum-error coefficient
_MCLACHLAN_B = 0.1931833275037836


def mclachlan(logdensity_fn: LogDensityFn, metric: Metric, state: IntegratorState, step_size: torch.Tensor,
              active: torch.Tensor | None = None) -> IntegratorState:
    """Two-stage palindromic integrator of McLachlan: two gradients per step, smaller energy error."""
    eps = step_size.unsqueeze(-1)  # (C, 1)
    b = _MCLACHLAN_B
    old = (state.logdensity, state.grad)
    p = state.momentum + b * eps * state.grad
    q = state.position + 0.5 * eps * velocity(metric, p)
    _, g = value_and_grad(logdensity_fn, q, active, old)
    p = p + (1 - 2 * b) * eps * g
    q = q + 0.5 * eps * velocity(metric, p)
    logp, grad = value_and_grad(logdensity_fn, q, active, old)
    p = p + b * eps * grad
    return _freeze(active, IntegratorState(q, p, logp, grad), state)


INTEGRATORS = {"leapfrog": leapfrog, "mclachlan": mclachlan}
