"""The No-U-Turn Sampler, chain-vectorised with iterative tree doubling.

Each chain builds its own trajectory: at every doubling all chains that are still growing extend
their tree by 2^depth leapfrog steps in their own random direction, one step at a time for the whole
batch; a chain whose new subtree diverges or U-turns stops (a per-chain mask freezes it and its log
density is no longer evaluated) while the others go on.  The result is Stan's algorithm per chain:

* multinomial sampling: uniform progressive sampling inside a subtree (weights exp(-H)), biased
  progressive sampling when a subtree is merged into the trajectory;
* generalised U-turn criterion p#_minus . rho > 0 and p#_plus . rho > 0 (rho = sum of momenta),
  checked on every completed sub-subtree through checkpoints (the iterative form of the recursion),
  including Stan's extra checks across neighbouring subtrees (left half + first state of the right
  half, last state of the left half + right half), and at each merge of the trajectory;
* max tree depth; divergence when the energy error exceeds ``max_delta_energy`` (or is NaN).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from .adaptation import AdaptationConfig
from .base import LogDensityFn
from .hmc import HMCParams, HMCState, _check_common, _init_params, _window, hmc_init
from .integrators import INTEGRATORS, IntegratorState, leapfrog_raw
from .metrics import Metric, sample_momentum, velocity
from .compiled import CompiledLogDensity
from .nuts_async import NUTSTreeState, no_uturn, nuts_async_init, nuts_async_step

__all__ = ["NUTSInfo", "nuts_step", "NUTS"]


class NUTSInfo(NamedTuple):
    accept_prob: torch.Tensor   # (C,) mean Metropolis acceptance over the trajectory (Stan's accept_stat)
    is_divergent: torch.Tensor  # (C,) bool
    energy: torch.Tensor        # (C,) Hamiltonian at the returned state
    tree_depth: torch.Tensor    # (C,) number of doublings merged
    num_steps: torch.Tensor     # (C,) leapfrog steps taken
    step_size: torch.Tensor     # (C,)


def _where(mask, a: IntegratorState, b: IntegratorState) -> IntegratorState:
    m = mask.unsqueeze(-1)
    return IntegratorState(torch.where(m, a.position, b.position), torch.where(m, a.momentum, b.momentum),
                           torch.where(mask, a.logdensity, b.logdensity), torch.where(m, a.grad, b.grad))


def _popcount(n: int) -> int:
    return bin(n).count("1")


def _trailing_ones(n: int) -> int:
    k = 0
    while n & 1:
        n >>= 1
        k += 1
    return k


def _raw_integrator(name: str):
    if name == "leapfrog":
        return leapfrog_raw
    integrate = INTEGRATORS[name]

    def step(fn, metric, q, p, logp, grad, eps, active=None):
        z = integrate(fn, metric, IntegratorState(q, p, logp, grad), eps.squeeze(-1), active)
        return z.position, z.momentum, z.logdensity, z.grad
    return step


def nuts_step(state: HMCState, generator: torch.Generator, logdensity_fn: LogDensityFn, step_size: torch.Tensor,
              metric: Metric, max_tree_depth: int = 10, integrator: str = "leapfrog",
              max_delta_energy: float = 1000.0) -> tuple[HMCState, NUTSInfo]:
    """One NUTS transition for all chains (see the module docstring)."""
    integrate = _raw_integrator(integrator)
    q0 = state.position
    C, d = q0.shape
    dt, dev = q0.dtype, q0.device
    inf = math.inf
    p0 = sample_momentum(metric, generator, q0)                       # (C, d)
    v0 = velocity(metric, p0)                                         # (C, d) p sharp
    h0 = torch.nan_to_num(0.5 * (p0 * v0).sum(-1) - state.logdensity, nan=inf)  # (C,)
    # trajectory ends: (q, p, logp, grad) and velocity at each end
    left = right = (q0, p0, state.logdensity, state.grad)
    v_left = v_right = v0
    rho = p0                                                          # (C, d) sum of momenta over the tree
    # sampled state packed as [q | grad | logp | H]  (C, 2d + 2)
    prop = torch.cat([q0, state.grad, state.logdensity.unsqueeze(-1), h0.unsqueeze(-1)], -1)
    log_w = torch.zeros(C, dtype=dt, device=dev)                      # log sum of exp(h0 - H) over the tree
    active = torch.isfinite(h0)                                       # chains still growing their tree
    depth = torch.zeros(C, dtype=dt, device=dev)
    n_steps = torch.zeros(C, dtype=dt, device=dev)
    sum_acc = torch.zeros(C, dtype=dt, device=dev)
    divergent = ~active

    for k in range(max_tree_depth):
        if not bool(active.any()):
            break
        fwd = torch.rand(C, generator=generator, dtype=dt, device=dev) > 0.5   # (C,) direction
        fwd1 = fwd.unsqueeze(-1)
        eps = torch.where(fwd, step_size, -step_size).unsqueeze(-1)    # (C, 1)
        q, p, lp, g = (torch.where(fwd1, r, l) if r.dim() == 2 else torch.where(fwd, r, l)
                       for r, l in zip(right, left))
        log_u = torch.rand(2 ** k + 1, C, generator=generator, dtype=dt, device=dev).log()  # (2^k + 1, C)
        # ---- build a subtree of 2^k leaves, leaf by leaf, for all building chains at once
        building = active
        sub_log_w = torch.full((C,), -inf, dtype=dt, device=dev)
        sub_prop = prop
        S = torch.zeros_like(rho)                                     # running momentum sum in the subtree
        ck = [None] * (k + 1)                                         # checkpoints (p, v, S, p_prev, v_prev)
        p_prev = v_prev = first_p = first_v = None
        for n in range(2 ** k):
            q, p, lp, g = integrate(logdensity_fn, metric, q, p, lp, g, eps, building)
            v = velocity(metric, p)
            h = torch.nan_to_num(0.5 * (p * v).sum(-1) - lp, nan=inf)  # (C,)
            delta = h - h0
            div = building & ~(delta <= max_delta_energy)               # NaN counts as divergent
            n_steps = n_steps + building
            sum_acc = sum_acc + torch.where(building, torch.exp(-delta).clamp(max=1.0), 0.0)
            divergent = divergent | div
            ok = building & ~div
            new_sub_lw = torch.logaddexp(sub_log_w, -delta)
            take = ok & (log_u[n] < -delta - new_sub_lw)
            sub_prop = torch.where(take.unsqueeze(-1),
                                   torch.cat([q, g, lp.unsqueeze(-1), h.unsqueeze(-1)], -1), sub_prop)
            sub_log_w = torch.where(ok, new_sub_lw, sub_log_w)
            S = S + p
            if n == 0:
                first_p, first_v = p, v
            if n % 2 == 0:
                ck[_popcount(n >> 1)] = (p, v, S, p_prev, v_prev)
                building = ok
            else:
                i_max = _popcount(n >> 1)
                va, vb, rh = [], [], []
                for j in range(1, _trailing_ones(n) + 1):
                    i = i_max - j + 1
                    c_p, c_v, c_S, _, _ = ck[i]
                    va.append(c_v), vb.append(v), rh.append(S - c_S + c_p)          # whole sub-subtree
                    if j >= 2:
                        n_p, n_v, n_S, n_pp, n_vp = ck[i + 1]
                        va.append(c_v), vb.append(n_v), rh.append(n_S - c_S + c_p)  # left half + 1
                        va.append(n_vp), vb.append(v), rh.append(S - n_S + n_p + n_pp)  # 1 + right half
                if len(va) == 1:
                    keep = no_uturn(va[0], vb[0], rh[0])
                else:
                    keep = no_uturn(torch.stack(va, 1), torch.stack(vb, 1), torch.stack(rh, 1)).all(-1)
                building = ok & keep
            p_prev, v_prev = p, v
            if not bool(building.any()):
                break
        # ---- merge the valid subtrees into the trajectories
        valid = building                                              # active, no divergence, no inner U-turn
        take = valid & (log_u[-1] < sub_log_w - log_w)
        prop = torch.where(take.unsqueeze(-1), sub_prop, prop)
        log_w = torch.where(valid, torch.logaddexp(log_w, sub_log_w), log_w)
        depth = depth + valid
        # U-turn checks across the merged trajectory (Stan's three checks)
        v_far = torch.where(fwd1, v_left, v_right)                    # old tree's far end
        p_adj = torch.where(fwd1, right[1], left[1])                  # old tree's adjacent end
        v_adj = torch.where(fwd1, v_right, v_left)
        rho_tot = rho + S
        keep = no_uturn(torch.stack([v_far, v_far, v_adj], 1), torch.stack([v, first_v, v], 1),
                          torch.stack([rho_tot, rho + first_p, S + p_adj], 1)).all(-1)
        valid1 = valid.unsqueeze(-1)
        rho = torch.where(valid1, rho_tot, rho)
        new_right = (valid & fwd)
        new_left = (valid & ~fwd)
        nr1, nl1 = new_right.unsqueeze(-1), new_left.unsqueeze(-1)
        end = (q, p, lp, g)
        right = tuple(torch.where(nr1 if e.dim() == 2 else new_right, e, r) for e, r in zip(end, right))
        left = tuple(torch.where(nl1 if e.dim() == 2 else new_left, e, l) for e, l in zip(end, left))
        v_right = torch.where(nr1, v, v_right)
        v_left = torch.where(nl1, v, v_left)
        active = valid & keep

    new_state = HMCState(prop[:, :d], prop[:, 2 * d], prop[:, d:2 * d])
    accept = sum_acc / n_steps.clamp(min=1.0)
    return new_state, NUTSInfo(accept, divergent, prop[:, 2 * d + 1], depth, n_steps, step_size)


@dataclass(frozen=True)
class NUTS:
    """No-U-Turn Sampler with Stan-style warmup (dual averaging + windowed metric)."""
    max_tree_depth: int = 10          # Stan's default: at most 1023 leapfrog steps per draw
    step_size: float | None = None    # None: Stan's heuristic from 1.0 at the initial point
    metric: str = "diag"              # "diag" is Stan's default; "dense" for strongly correlated targets
    inverse_mass: torch.Tensor | None = None  # initial inverse mass (d,), (d, d) or per chain; None: identity
    integrator: str = "leapfrog"      # leapfrog: one gradient per step, exact time-reversibility
    target_accept: float = 0.8        # Stan's adapt_delta default; raise towards 0.95+ for funnels
    max_delta_energy: float = 1000.0  # Stan's divergence threshold on the energy error
    adaptation: AdaptationConfig = field(default_factory=AdaptationConfig)
    # "async": each chain starts its next draw as soon as its own tree ends (nuts_async.py), so a
    # batch never waits for its deepest tree, and the whole step compiles into one graph;
    # "lockstep": all chains draw together (one transition per call, any integrator), fewer tensor
    # ops per leapfrog step when run eagerly.  "auto": async for a compiled log density
    # (sample(..., compile=True)), lockstep otherwise.  Same algorithm per chain either way.
    batching: str = "auto"
    # async only: leapfrog steps per call, unrolled into one graph when compiled.  A compiled call
    # has a fixed cost (~0.2 ms on CPU) that the steps share, at the price of a chain idling for the
    # rest of the block once its draw ends, and of compile time growing with the block (cold cache on
    # this 2-core box: 22 s for 1 step, 74 s for 4), which is why the default is 1.
    leapfrog_per_call: int = 1

    def __post_init__(self):
        _check_common(self)
        if not isinstance(self.max_tree_depth, int) or self.max_tree_depth < 1:
            raise ValueError(f"max_tree_depth must be a positive integer, got {self.max_tree_depth!r}")
        if self.batching not in ("auto", "async", "lockstep"):
            raise ValueError(f"batching must be 'auto', 'async' or 'lockstep', got {self.batching!r}")
        if self.batching == "async" and self.integrator != "leapfrog":
            raise ValueError(f"batching='async' integrates with leapfrog; integrator={self.integrator!r} "
                             "needs batching='lockstep'")
        if isinstance(self.leapfrog_per_call, bool) or not isinstance(self.leapfrog_per_call, int) \
                or self.leapfrog_per_call < 1:
            raise ValueError(f"leapfrog_per_call must be a positive integer, got {self.leapfrog_per_call!r}")
        if self.batching == "async" and self.adaptation.pool_chains:
            raise ValueError("adaptation.pool_chains needs batching='lockstep' (async chains end their "
                             "warmup windows at different times)")

    info_fields = NUTSInfo._fields   # what an asynchronous step reports per finished draw (and ``finished``)

    def is_asynchronous(self, logdensity_fn) -> bool:
        """True when ``step`` advances every chain by one leapfrog step and reports ``info.finished``."""
        if self.batching == "auto":
            return (isinstance(logdensity_fn, CompiledLogDensity) and self.integrator == "leapfrog"
                    and not self.adaptation.pool_chains)
        return self.batching == "async"

    def _helper_fn(self, logdensity_fn):
        """The log density for the few gradients outside the trajectories (initial state, step-size
        heuristic): when the async step is compiled, its own graph is the only one worth compiling."""
        if isinstance(logdensity_fn, CompiledLogDensity) and self.is_asynchronous(logdensity_fn):
            return logdensity_fn.fn
        return logdensity_fn

    def init(self, position, logdensity_fn):
        state = hmc_init(position, self._helper_fn(logdensity_fn))
        return nuts_async_init(state, self.max_tree_depth) if self.is_asynchronous(logdensity_fn) else state

    def init_params(self, state, logdensity_fn, generator) -> HMCParams:
        return _init_params(self, state, self._helper_fn(logdensity_fn), generator)

    def step(self, state, generator, logdensity_fn, params):
        if isinstance(state, NUTSTreeState):
            return nuts_async_step(state, generator, logdensity_fn, params.step_size, params.metric,
                                   self.max_tree_depth, self.max_delta_energy, self.leapfrog_per_call)
        return nuts_step(state, generator, logdensity_fn, params.step_size, params.metric, self.max_tree_depth,
                         self.integrator, self.max_delta_energy)

    def warmup(self, num_warmup, logdensity_fn):
        return _window(self, num_warmup, self._helper_fn(logdensity_fn))
