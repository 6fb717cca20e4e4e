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

The pieces of the tree (leaf energy, progressive sampling, U-turn checks on checkpoint records) are
those of ``trajectory.py``, which the asynchronous batching (``nuts_async.py``) calls as well; the
``NUTS`` kernel picks the batching (``batching=``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from .adaptation import AdaptationConfig
from .base import Kernel, LogDensityFn
from .compiled import CompiledLogDensity
from ._validate import check_choice, check_hmc_settings, check_int
from .hmc import HMCParams, HMCState, _init_params, _window, hmc_init
from .integrators import INTEGRATORS, IntegratorState, leapfrog_raw
from .metrics import Metric, sample_momentum, velocity
from .nuts_async import NUTSTreeState, nuts_async_init, nuts_async_step
from .trajectory import (checkpoint_record, energy_error, halves_no_uturn, leaf_energy, merge_no_uturn, merge_subtree,
                         pack_proposal, sample_leaf, subtree_no_uturn, unpack_proposal)

__all__ = ["NUTSInfo", "nuts_step", "NUTS"]


class NUTSInfo(NamedTuple):
    accept_prob: torch.Tensor   # (C,) mean Metropolis acceptance over the trajectory (Stan's accept_stat)
    is_divergent: torch.Tensor  # (C,) bool
    energy: torch.Tensor        # (C,) Hamiltonian at the returned state
    tree_depth: torch.Tensor    # (C,) number of doublings merged
    num_steps: torch.Tensor     # (C,) leapfrog steps taken
    step_size: torch.Tensor     # (C,)


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


def _pick(mask: torch.Tensor, a: tuple, b: tuple) -> tuple:
    """Per chain, the entries of ``a`` where ``mask`` (C,) else of ``b`` ((C, d) or (C,) tensors)."""
    m = mask.unsqueeze(-1)
    return tuple(torch.where(m if x.dim() == 2 else mask, x, y) for x, y in zip(a, b))


def nuts_step(state: HMCState, generator: torch.Generator, logdensity_fn: LogDensityFn, step_size: torch.Tensor,
              metric: Metric, max_tree_depth: int = 10, integrator: str = "leapfrog",
              max_delta_energy: float = 1000.0) -> tuple[HMCState, NUTSInfo]:
    """One NUTS transition for all chains (see the module docstring; the tree pieces are in
    ``trajectory.py``)."""
    integrate = _raw_integrator(integrator)
    q0 = state.position
    C, d = q0.shape
    dt, dev = q0.dtype, q0.device
    p0 = sample_momentum(metric, generator, q0)                       # (C, d)
    v0 = velocity(metric, p0)                                         # (C, d) p sharp
    h0 = leaf_energy(state.logdensity, p0, v0, metric)                # (C,)
    # trajectory ends: (q, p, logp, grad) and velocity at each end
    left = right = (q0, p0, state.logdensity, state.grad)
    v_left = v_right = v0
    momentum_sum = p0                                                 # (C, d) over the merged trajectory
    proposal = pack_proposal(q0, state.grad, state.logdensity, h0)    # (C, 2d + 2)
    log_weight = torch.zeros(C, dtype=dt, device=dev)                 # log sum of exp(h0 - H) over the tree
    active = torch.isfinite(h0)                                       # chains still growing their tree
    depth = torch.zeros(C, dtype=dt, device=dev)
    num_steps = torch.zeros(C, dtype=dt, device=dev)
    sum_accept = torch.zeros(C, dtype=dt, device=dev)
    divergent = ~active

    for k in range(max_tree_depth):
        if not bool(active.any()):
            break
        forward = torch.rand(C, generator=generator, dtype=dt, device=dev) > 0.5   # (C,) direction
        eps = torch.where(forward, step_size, -step_size).unsqueeze(-1)  # (C, 1)
        q, p, lp, g = _pick(forward, right, left)
        log_u = torch.rand(2 ** k + 1, C, generator=generator, dtype=dt, device=dev).log()  # (2^k + 1, C)
        # ---- build a subtree of 2^k leaves, leaf by leaf, for all building chains at once
        building = active
        sub_log_weight = torch.full((C,), -math.inf, dtype=dt, device=dev)
        sub_proposal = proposal
        sub_momentum_sum = torch.zeros_like(momentum_sum)             # (C, d)
        checkpoints: list = [None] * (k + 1)                          # records (C, 5, d), see trajectory.py
        previous = (torch.zeros_like(p0), torch.zeros_like(p0))       # previous leaf's p, v
        for n in range(2 ** k):
            q, p, lp, g = integrate(logdensity_fn, metric, q, p, lp, g, eps, building)
            v = velocity(metric, p)
            h = leaf_energy(lp, p, v, metric)                         # (C,)
            delta, accept, div = energy_error(h, h0, max_delta_energy)
            div = building & div
            num_steps = num_steps + building
            sum_accept = sum_accept + torch.where(building, accept, 0.0)
            divergent = divergent | div
            ok = building & ~div
            sub_log_weight, sub_proposal = sample_leaf(sub_log_weight, sub_proposal, delta, ok, log_u[n],
                                                       pack_proposal(q, g, lp, h))
            sub_momentum_sum = sub_momentum_sum + p
            if n == 0:
                first_p, first_v = p, v
            slot = _popcount(n >> 1)
            if n % 2 == 0:
                checkpoints[slot] = checkpoint_record(p, v, sub_momentum_sum, *previous)
                building = ok
            else:                                                     # sub-subtrees of 2^j leaves end here
                completed = _trailing_ones(n)
                if completed == 1:
                    keep = subtree_no_uturn(checkpoints[slot], sub_momentum_sum, v)
                else:
                    starts = torch.stack([checkpoints[slot - j + 1] for j in range(1, completed + 1)], 1)
                    right_starts = torch.stack([checkpoints[slot - j + 2] for j in range(2, completed + 1)], 1)
                    s1, v1 = sub_momentum_sum.unsqueeze(1), v.unsqueeze(1)   # (C, 1, d)
                    keep = (subtree_no_uturn(starts, s1, v1).all(-1)
                            & halves_no_uturn(starts[:, 1:], right_starts, s1, v1).all(-1))
                building = ok & keep
            previous = (p, v)
            if not bool(building.any()):
                break
        # ---- merge the valid subtrees into the trajectories
        valid = building                                              # active, no divergence, no inner U-turn
        log_weight, proposal = merge_subtree(log_weight, proposal, sub_log_weight, sub_proposal, valid, log_u[-1])
        depth = depth + valid
        fwd1 = forward.unsqueeze(-1)
        keep = merge_no_uturn(torch.where(fwd1, v_left, v_right),     # old trajectory's far end
                              torch.where(fwd1, v_right, v_left),     # ... and near end
                              torch.where(fwd1, right[1], left[1]), v, first_p, first_v, momentum_sum,
                              sub_momentum_sum)
        momentum_sum = torch.where(valid.unsqueeze(-1), momentum_sum + sub_momentum_sum, momentum_sum)
        new_right, new_left = valid & forward, valid & ~forward
        right = _pick(new_right, (q, p, lp, g), right)
        left = _pick(new_left, (q, p, lp, g), left)
        v_right = torch.where(new_right.unsqueeze(-1), v, v_right)
        v_left = torch.where(new_left.unsqueeze(-1), v, v_left)
        active = valid & keep

    position, logdensity, grad, energy = unpack_proposal(proposal, d)
    accept = sum_accept / num_steps.clamp(min=1.0)
    return HMCState(position, logdensity, grad), NUTSInfo(accept, divergent, energy, depth, num_steps, step_size)


@dataclass(frozen=True)
class NUTS(Kernel):
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
    # async only: at most this many leapfrog steps per call; a call returns as soon as some chain's
    # draw ends (nuts_async.tree_run), so no chain idles and adaptation sees every draw at once.  A
    # call from Python costs ~50-60 us on CPU, more than a small model's step (~40 us on eight
    # schools, 4 chains), so one call per step spent over half the run outside the step; compiled,
    # the steps run as a torch.while_loop inside one graph (compile time independent of the bound).
    # 16 covers a whole draw of most posteriors' well-adapted trees at 4 chains, and bounds the
    # normal / uniform draws made per call (those after the stop are discarded).
    leapfrog_per_call: int = 16

    def __post_init__(self):
        check_hmc_settings(self)
        # 30 doublings = 2^30 leapfrog steps per draw: far beyond any useful trajectory
        object.__setattr__(self, "max_tree_depth", check_int(self.max_tree_depth, "max_tree_depth", minimum=1,
                                                             maximum=30))
        check_choice(self.batching, "batching", ("auto", "async", "lockstep"))
        if self.batching == "async" and self.integrator != "leapfrog":
            raise ValueError(f"batching='async' integrates with leapfrog; integrator={self.integrator!r} "
                             "needs batching='lockstep'")
        object.__setattr__(self, "leapfrog_per_call", check_int(self.leapfrog_per_call, "leapfrog_per_call", minimum=1))
        if self.batching == "async" and self.adaptation.pool_chains:
            raise ValueError("adaptation.pool_chains needs batching='lockstep' (async chains end their "
                             "warmup windows at different times)")

    info_fields = NUTSInfo._fields   # what an asynchronous step reports per finished draw (and ``finished``)
    # multi-start short optimisation: a chain started uniformly can settle in a minor mode for good
    # (posteriordb's low_dim_gauss_mix, seed 1: R-hat 1.53); gradients are at hand anyway
    default_init = "optimize"

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

    def max_depth_hits(self, info):
        """Draws whose tree reached ``max_tree_depth`` doublings (C, S) bool (a U-turn never stopped them)."""
        depth = info.get("tree_depth")
        return None if depth is None else depth >= self.max_tree_depth
