"""Asynchronous chain-vectorised NUTS: every chain runs its own trajectory, leapfrog step by leapfrog step.

Lock-step NUTS (``nuts.py``) makes every chain wait at each draw for the chain with the deepest tree:
with 4 chains a draw costs the maximum of 4 tree sizes, 1.3-1.4x the mean on posteriordb's eight
schools and diamonds.  Here the unit of work is one leapfrog step for all chains, and each chain keeps
its own place in the doubling procedure (a program counter in the spirit of Radul et al., "Automatically
batching control-intensive programs", 2020): depth, leaf index in the current subtree, direction,
trajectory ends, U-turn checkpoints.  A chain whose tree ends returns its draw and starts a new
trajectory at the next step while the others carry on, so no leapfrog step is wasted.

The step (``tree_step``) is one straight-line tensor program (no Python branch depends on data), so
it runs as is on CPU or GPU.  A call of ``nuts_async_step`` runs steps until some chain's draw ends
(``tree_run``, at most ``num_leapfrog``); when the log density is a ``CompiledLogDensity``
(``sample(..., compile=True)``) that loop is a ``torch.while_loop`` compiled with the step into one
graph (built and cached by ``CompiledLogDensity.run_step``).
The algorithm per chain is the one of ``nuts.py`` (Stan's), from the same pieces (``trajectory.py``):
multinomial sampling (uniform inside a subtree, biased at merges), the generalised U-turn criterion on
every completed sub-subtree including the checks across neighbouring subtrees, max tree depth,
divergence when the energy error exceeds ``max_delta_energy``.

Pure functions: ``nuts_async_init(hmc_state, max_tree_depth)`` and
``nuts_async_step(state, generator, logdensity_fn, step_size, metric, ...) -> (state, info)``, where
``info.finished`` (C,) marks the chains whose draw ended at the call's last step (their fields of
``info`` and ``state.position`` are the new draw).  The driver's asynchronous loop collects the draws.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from .base import value_and_grad
from .compiled import CompiledLogDensity
from .hmc import HMCState
from .integrators import leapfrog_step
from .metrics import Metric, momentum_from_normal, velocity
from .trajectory import (checkpoint_record, energy_error, halves_no_uturn, leaf_energy, merge_no_uturn, merge_subtree,
                         pack_proposal, sample_leaf, subtree_no_uturn, unpack_proposal)

__all__ = ["NUTSTreeState", "NUTSAsyncInfo", "nuts_async_init", "nuts_async_step", "tree_step", "tree_run"]


class _Fields(NamedTuple):
    """Every chain's place in its NUTS program, field by field (packed into ``NUTSTreeState``)."""
    position: torch.Tensor             # (C, d) the chain's current draw
    logdensity: torch.Tensor           # (C,)
    grad: torch.Tensor                 # (C, d)
    starts_trajectory: torch.Tensor    # (C,) bool: start a new trajectory at the next step
    starts_subtree: torch.Tensor       # (C,) bool: start a new subtree at the next step
    initial_energy: torch.Tensor       # (C,) energy at the trajectory's start
    left: torch.Tensor                 # (C, 4, d) left end: q, p, grad, velocity
    right: torch.Tensor                # (C, 4, d) right end
    momentum_sum: torch.Tensor         # (C, d) momentum sum over the merged trajectory
    proposal: torch.Tensor             # (C, 2d + 2) sampled state [q | grad | logp | H]
    log_weight: torch.Tensor           # (C,) log total weight of the merged trajectory
    depth: torch.Tensor                # (C,) long: doublings merged so far (= subtree exponent being built)
    leaf_index: torch.Tensor           # (C,) long: leaves built in the current subtree
    forward: torch.Tensor              # (C,) bool: direction of the current subtree
    front: torch.Tensor                # (C, 3, d) integration front: q, p, grad
    subtree_momentum_sum: torch.Tensor  # (C, d) momentum sum of the current subtree
    subtree_log_weight: torch.Tensor   # (C,) log weight of the current subtree
    subtree_proposal: torch.Tensor     # (C, 2d + 2) state sampled inside the current subtree
    first_leaf: torch.Tensor           # (C, 2, d) first leaf of the subtree: p, velocity
    previous_leaf: torch.Tensor        # (C, 2, d) previous leaf: p, velocity
    checkpoints: torch.Tensor          # (C, K + 1, 5, d) U-turn checkpoint records (trajectory.py)
    num_steps: torch.Tensor            # (C,) leapfrog steps in the current trajectory
    sum_accept_prob: torch.Tensor      # (C,) sum of min(1, exp(-dH)) over the trajectory
    divergent: torch.Tensor            # (C,) bool


class NUTSTreeState(NamedTuple):
    """Asynchronous NUTS state: the current draw plus each chain's tree packed into two buffers.

    Packing keeps a compiled step's inputs and outputs to a handful of tensors (a compiled call
    pays per tensor for allocation and guards: 26 separate fields cost more than the step's
    arithmetic on small models).  ``_unpack`` / ``_pack`` convert to and from named fields."""
    position: torch.Tensor    # (C, d) current draw
    logdensity: torch.Tensor  # (C,)
    grad: torch.Tensor        # (C, d)
    tree: torch.Tensor        # (C, W) float fields of the tree, laid out by _layout(d, K)
    flags: torch.Tensor       # (C, 6) long: starts_trajectory, starts_subtree, depth, leaf_index, forward, divergent


_FLOAT_FIELDS = ("initial_energy", "left", "right", "momentum_sum", "proposal", "log_weight", "front",
                 "subtree_momentum_sum", "subtree_log_weight", "subtree_proposal", "first_leaf", "previous_leaf",
                 "checkpoints", "num_steps", "sum_accept_prob")
_INT_FIELDS = ("starts_trajectory", "starts_subtree", "depth", "leaf_index", "forward", "divergent")
_BOOL_FIELDS = ("starts_trajectory", "starts_subtree", "forward", "divergent")
_LAYOUTS: dict = {}


def _layout(dim: int, max_tree_depth: int) -> dict[str, tuple[int, int, tuple[int, ...]]]:
    """Column range and per-chain shape of each float field in ``tree``."""
    if (dim, max_tree_depth) in _LAYOUTS:
        return _LAYOUTS[(dim, max_tree_depth)]
    d = dim
    shapes = {"initial_energy": (), "left": (4, d), "right": (4, d), "momentum_sum": (d,), "proposal": (2 * d + 2,),
              "log_weight": (), "front": (3, d), "subtree_momentum_sum": (d,), "subtree_log_weight": (),
              "subtree_proposal": (2 * d + 2,), "first_leaf": (2, d), "previous_leaf": (2, d),
              "checkpoints": (max_tree_depth + 1, 5, d), "num_steps": (), "sum_accept_prob": ()}
    out, start = {}, 0
    for name in _FLOAT_FIELDS:
        size = math.prod(shapes[name])
        out[name] = (start, start + size, shapes[name])
        start += size
    _LAYOUTS[(dim, max_tree_depth)] = out
    return out


def _width(dim: int, max_tree_depth: int) -> int:
    return _layout(dim, max_tree_depth)[_FLOAT_FIELDS[-1]][1]


def _unpack(state: NUTSTreeState, max_tree_depth: int) -> _Fields:
    C, d = state.position.shape
    fields = {}
    for name, (start, stop, shape) in _layout(d, max_tree_depth).items():
        fields[name] = state.tree[:, start] if shape == () else state.tree[:, start:stop].reshape((C,) + shape)
    for k, name in enumerate(_INT_FIELDS):
        fields[name] = state.flags[:, k].bool() if name in _BOOL_FIELDS else state.flags[:, k]
    return _Fields(position=state.position, logdensity=state.logdensity, grad=state.grad, **fields)


def _pack(fields: _Fields) -> NUTSTreeState:
    C = fields.position.shape[0]
    tree = torch.cat([getattr(fields, n).reshape(C, -1) for n in _FLOAT_FIELDS], -1)            # (C, W)
    flags = torch.stack([getattr(fields, n).long() for n in _INT_FIELDS], -1)                    # (C, 6)
    return NUTSTreeState(fields.position, fields.logdensity, fields.grad, tree, flags)


class NUTSAsyncInfo(NamedTuple):
    finished: torch.Tensor      # (C,) bool: a draw ended at this step; the fields below are its info
    accept_prob: torch.Tensor   # (C,) mean Metropolis acceptance over the trajectory
    is_divergent: torch.Tensor  # (C,) bool
    energy: torch.Tensor        # (C,) Hamiltonian at the returned state
    tree_depth: torch.Tensor    # (C,) doublings merged
    num_steps: torch.Tensor     # (C,) leapfrog steps taken
    step_size: torch.Tensor     # (C,)


def nuts_async_init(state: HMCState, max_tree_depth: int = 10) -> NUTSTreeState:
    """Tree state for chains at ``state`` (C, d); every chain starts a trajectory at the first step."""
    q = state.position
    C, d = q.shape
    flags = torch.zeros(C, len(_INT_FIELDS), dtype=torch.long, device=q.device)
    flags[:, _INT_FIELDS.index("starts_trajectory")] = 1
    return NUTSTreeState(q.clone(), state.logdensity.clone(), state.grad.clone(),
                         torch.zeros(C, _width(d, max_tree_depth), dtype=q.dtype, device=q.device), flags)


def tree_step(state: NUTSTreeState, normal: torch.Tensor, uniform: torch.Tensor, step_size: torch.Tensor,
              inverse_mass: torch.Tensor, chol: torch.Tensor | None, value_and_grad_fn: Callable,
              max_tree_depth: int, max_delta_energy: float,
              momentum_factor: torch.Tensor | None = None) -> tuple[NUTSTreeState, torch.Tensor]:
    """One leapfrog step of every chain's NUTS program, randomness given: ``normal`` (C, d) standard
    normal draws (the momentum of chains starting a trajectory), ``uniform`` (C, 3) uniforms (direction,
    leaf, merge).  ``value_and_grad_fn(q) -> (logp (C,), grad (C, d))`` sanitised.  Straight-line code:
    compiles as one graph.  ``momentum_factor``: a dense metric's L^{-T} (``Metric.momentum_factor``), so
    that the momentum is a matmul instead of a triangular solve.  Returns the new state and the info
    packed as (C, 7) in ``NUTSAsyncInfo`` order."""
    s = _unpack(state, max_tree_depth)
    C, d = s.position.shape
    metric = Metric(inverse_mass, chol, momentum_factor)
    # ---- 0. chains that start a trajectory: momentum, energy, both ends at the current draw
    new_trajectory = s.starts_trajectory                              # (C,)
    new_trajectory_row, new_trajectory_end = new_trajectory[:, None], new_trajectory[:, None, None]
    p0 = momentum_from_normal(metric, normal)                         # (C, d)
    v0 = velocity(metric, p0)
    initial_energy = torch.where(new_trajectory, leaf_energy(s.logdensity, p0, v0, metric), s.initial_energy)  # (C,)
    start_end = torch.stack([s.position, p0, s.grad, v0], 1)          # (C, 4, d)
    left = torch.where(new_trajectory_end, start_end, s.left)
    right = torch.where(new_trajectory_end, start_end, s.right)
    momentum_sum = torch.where(new_trajectory_row, p0, s.momentum_sum)
    proposal = torch.where(new_trajectory_row, pack_proposal(s.position, s.grad, s.logdensity, initial_energy),
                           s.proposal)
    log_weight = torch.where(new_trajectory, 0.0, s.log_weight)
    depth = torch.where(new_trajectory, 0, s.depth)
    num_steps = torch.where(new_trajectory, 0.0, s.num_steps)
    sum_accept_prob = torch.where(new_trajectory, 0.0, s.sum_accept_prob)
    divergent = torch.where(new_trajectory, False, s.divergent)
    # ---- 1. chains that start a subtree: direction, front at that end, empty subtree sums
    new_subtree = new_trajectory | s.starts_subtree
    new_subtree_row = new_subtree[:, None]
    forward = torch.where(new_subtree, uniform[:, 0] > 0.5, s.forward)  # (C,)
    end = torch.where(forward[:, None, None], right, left)            # (C, 4, d)
    front = torch.where(new_subtree_row[..., None], end[:, :3], s.front)  # (C, 3, d) q, p, grad
    leaf_index = torch.where(new_subtree, 0, s.leaf_index)
    subtree_momentum_sum = torch.where(new_subtree_row, 0.0, s.subtree_momentum_sum)
    subtree_log_weight = torch.where(new_subtree, -math.inf, s.subtree_log_weight)
    subtree_proposal = torch.where(new_subtree_row, proposal, s.subtree_proposal)
    # ---- 2. one leapfrog step for every chain, and the new leaf's weight
    eps = torch.where(forward, step_size, -step_size).unsqueeze(-1)  # (C, 1)
    q, p, lp, g = leapfrog_step(value_and_grad_fn, metric, front[:, 0], front[:, 1], front[:, 2], eps)
    v = velocity(metric, p)
    energy = leaf_energy(lp, p, v, metric)                            # (C,)
    delta, accept_prob, leaf_divergent = energy_error(energy, initial_energy, max_delta_energy)
    leaf_divergent = leaf_divergent | ~torch.isfinite(initial_energy)
    num_steps = num_steps + 1
    sum_accept_prob = sum_accept_prob + accept_prob
    divergent = divergent | leaf_divergent
    ok = ~leaf_divergent
    subtree_log_weight, subtree_proposal = sample_leaf(subtree_log_weight, subtree_proposal, delta, ok,
                                                       uniform[:, 1].log(), pack_proposal(q, g, lp, energy))
    subtree_momentum_sum = subtree_momentum_sum + p
    first_leaf = torch.where((leaf_index == 0)[:, None, None], torch.stack([p, v], 1), s.first_leaf)  # (C, 2, d)
    # ---- 3. U-turn checkpoints (even leaves store, odd leaves check completed sub-subtrees)
    slots = torch.arange(max_tree_depth + 1, device=leaf_index.device)     # (K+1,)
    slot = ((leaf_index.unsqueeze(-1) >> 1) >> slots & 1).sum(-1)     # (C,) popcount(leaf_index >> 1)
    even = leaf_index % 2 == 0
    record = checkpoint_record(p, v, subtree_momentum_sum, s.previous_leaf[:, 0], s.previous_leaf[:, 1])  # (C, 5, d)
    store = (even.unsqueeze(-1) & (slots == slot.unsqueeze(-1)))[..., None, None]  # (C, K+1, 1, 1)
    checkpoints = torch.where(store, record.unsqueeze(1), s.checkpoints)  # (C, K+1, 5, d)
    completed = ((leaf_index ^ (leaf_index + 1)).unsqueeze(-1) >> slots & 1).sum(-1) - 1  # (C,) trailing ones
    sizes = slots[1:]                                                 # (K,) j: sub-subtrees of 2^j leaves
    start_slot = slot.unsqueeze(-1) - sizes + 1                       # (C, K)
    check_whole = (~even).unsqueeze(-1) & (sizes <= completed.unsqueeze(-1))   # (C, K)
    check_halves = check_whole & (sizes >= 2)
    gather_shape = (C, max_tree_depth, 5, d)
    starts = checkpoints.gather(1, start_slot.clamp(0, max_tree_depth)[..., None, None].expand(gather_shape))
    right_starts = checkpoints.gather(1, (start_slot + 1).clamp(0, max_tree_depth)[..., None, None].expand(gather_shape))
    sum_now, velocity_now = subtree_momentum_sum.unsqueeze(1), v.unsqueeze(1)   # (C, 1, d)
    uturn = ((check_whole & ~subtree_no_uturn(starts, sum_now, velocity_now))
             | (check_halves & ~halves_no_uturn(starts, right_starts, sum_now, velocity_now)))   # (C, K)
    subtree_ok = ok & ~uturn.any(-1)
    previous_leaf = torch.stack([p, v], 1)
    # ---- 4. a complete valid subtree merges into the trajectory
    full = (leaf_index + 1) == (torch.ones_like(depth) << depth)
    subtree_ends = ~subtree_ok | full
    valid = subtree_ok & full
    log_weight, proposal = merge_subtree(log_weight, proposal, subtree_log_weight, subtree_proposal, valid,
                                         uniform[:, 2].log())
    forward_row = forward[:, None]
    keep = merge_no_uturn(torch.where(forward_row, left[:, 3], right[:, 3]),    # old trajectory's far end
                          torch.where(forward_row, right[:, 3], left[:, 3]),    # ... and near end
                          torch.where(forward_row, right[:, 1], left[:, 1]), v, first_leaf[:, 0], first_leaf[:, 1],
                          momentum_sum, subtree_momentum_sum)
    momentum_sum = torch.where(valid[:, None], momentum_sum + subtree_momentum_sum, momentum_sum)
    new_end = torch.stack([q, p, g, v], 1)                            # (C, 4, d)
    right = torch.where((valid & forward)[:, None, None], new_end, right)
    left = torch.where((valid & ~forward)[:, None, None], new_end, left)
    depth = depth + valid
    grows = valid & keep & (depth < max_tree_depth)
    done = subtree_ends & ~grows
    # ---- 5. finished chains take their draw; the others go on
    proposed_position, proposed_logdensity, proposed_grad, proposed_energy = unpack_proposal(proposal, d)
    done_row = done[:, None]
    position = torch.where(done_row, proposed_position, s.position)
    grad = torch.where(done_row, proposed_grad, s.grad)
    logdensity = torch.where(done, proposed_logdensity, s.logdensity)
    leaf_index = torch.where(subtree_ends, leaf_index, leaf_index + 1)
    new_state = _pack(_Fields(position, logdensity, grad, done, grows, initial_energy, left, right, momentum_sum,
                              proposal, log_weight, depth, leaf_index, forward, torch.stack([q, p, g], 1),
                              subtree_momentum_sum, subtree_log_weight, subtree_proposal, first_leaf, previous_leaf,
                              checkpoints, num_steps, sum_accept_prob, divergent))
    info = torch.stack([done.to(energy.dtype), sum_accept_prob / num_steps, divergent.to(energy.dtype),
                        proposed_energy, depth.to(energy.dtype), num_steps, step_size], -1)   # (C, 7)
    # float64 data, step size or log density promote float32 chains' arithmetic: compute in the promoted
    # dtype but keep the state's own, so a compiled graph is fed what it was built for at the next step
    dt = state.position.dtype
    new_state = NUTSTreeState(new_state.position.to(dt), new_state.logdensity.to(dt), new_state.grad.to(dt),
                              new_state.tree.to(dt), new_state.flags)
    return new_state, info.to(dt)


def tree_run(state: NUTSTreeState, normal: torch.Tensor, uniform: torch.Tensor, step_size: torch.Tensor,
             inverse_mass: torch.Tensor, chol: torch.Tensor | None, value_and_grad_fn: Callable,
             max_tree_depth: int, max_delta_energy: float,
             momentum_factor: torch.Tensor | None = None) -> tuple[NUTSTreeState, torch.Tensor]:
    """Leapfrog steps of every chain until a draw ends, at most ``L = normal.shape[0]``: step j uses
    normal[j] (C, d) and uniform[j] (C, 3); the run stops after the first step at which some chain's
    draw ends (that step's info is returned, as ``tree_step``'s) or after L steps (no chain finished:
    info's ``finished`` column is 0).  No chain idles: the caller can adapt a finished chain's
    parameters before its next trajectory, and the steps after the stop are not taken (their draws of
    normal / uniform are discarded).  Under tracing the loop is a ``torch.while_loop``, so one compiled
    call runs it in C++ and the body is compiled once, whatever L (an unrolled block of 4 steps
    compiled 3.4x longer than one step); eagerly it is a Python loop with a host sync per step.

    Why: a compiled call from Python costs ~50-60 us on CPU (wrappers, the driver's bookkeeping,
    drawing the randomness) against ~40 us for one step of a small model (eight schools, 4 chains),
    so one call per step spent more than half the time outside the step.  With 4 chains a run ends
    at the first of 4 draws, 2-4 steps on eight schools and up to L inside deep warmup trees."""
    L = normal.shape[0]
    dt = state.position.dtype                  # the loop carries the state in its own dtype (tree_step's output)
    state = NUTSTreeState(state.position, state.logdensity.to(dt), state.grad.to(dt), state.tree.to(dt), state.flags)
    args = (step_size, inverse_mass, chol, value_and_grad_fn, max_tree_depth, max_delta_energy, momentum_factor)
    if torch.compiler.is_compiling():
        # torch.compile (CompiledLogDensity's fallback when the guard-free graph fails) refuses the
        # loop's operator here: one step per call there, which the driver takes as any other run
        return tree_step(state, normal[0], uniform[0], *args)
    from torch._subclasses.fake_tensor import is_fake
    if not is_fake(normal):                    # eager: a Python loop (make_fx traces fake tensors)
        info = None
        for j in range(L):
            state, info = tree_step(state, normal[j], uniform[j], *args)
            if bool((info[:, 0] > 0).any()):
                break
        return state, info
    # the operator itself, not torch.while_loop's wrapper: the wrapper traces through dynamo, which
    # refuses a body closing over real tensors (a model's data); under make_fx the operator traces
    # cond and body with make_fx, the data becoming constants of the body graph as of the root.
    # Tensors of the outer trace enter as additional inputs (a body may not close over them).
    from torch._higher_order_ops.while_loop import while_loop_op
    C = state.position.shape[0]
    info0 = torch.zeros(C, 7, dtype=dt, device=state.position.device)     # (C, 7)
    j0 = torch.zeros((), dtype=torch.long, device=state.position.device)
    extra = [t for t in (normal, uniform, step_size, inverse_mass, chol, momentum_factor) if t is not None]

    def cond(position, logdensity, grad, tree, flags, info, j, *extra):
        return (j < L) & ~(info[:, 0] > 0).any()

    def body(position, logdensity, grad, tree, flags, info, j, *extra):
        n, u, eps, inv, *rest = extra
        ch = rest.pop(0) if chol is not None else None             # the optional inputs, in extra's order
        fac = rest.pop(0) if momentum_factor is not None else None
        at = j.reshape(1)                                            # a tensor index: no data-dependent int
        new, info = tree_step(NUTSTreeState(position, logdensity, grad, tree, flags), n.index_select(0, at)[0],
                              u.index_select(0, at)[0], eps, inv, ch, value_and_grad_fn, max_tree_depth,
                              max_delta_energy, fac)
        return (*new, info, j + 1)
    out = while_loop_op(cond, body, (*state, info0, j0), tuple(extra))
    return NUTSTreeState(*out[:5]), out[5]



def _compiled_block(fn: CompiledLogDensity, state: NUTSTreeState, normal, uniform, step_size, metric: Metric,
                    max_tree_depth: int, max_delta_energy: float):
    """The block run as one graph compiled with the log density (``CompiledLogDensity.run_step``), or None."""
    # the graph is specialised to strides too (a Cholesky factor comes back column-major): contiguous
    # a dense metric comes with its L^{-T} (the momentum as a matmul) when it has one, else its factor L
    dense = () if metric.chol is None else (metric.chol,) if metric.momentum_factor is None else \
        (metric.chol, metric.momentum_factor)
    args = tuple(a.contiguous() for a in (*state, normal, uniform, step_size, metric.inverse_mass) + dense)

    def build(value_and_grad_fn):
        def flat(position, logdensity, grad, tree, flags, normal, uniform, step_size, inverse_mass, *dense):
            chol, factor = (tuple(dense) + (None, None))[:2]
            new, info = tree_run(NUTSTreeState(position, logdensity, grad, tree, flags), normal, uniform, step_size,
                                 inverse_mass, chol, value_and_grad_fn, max_tree_depth, max_delta_energy, factor)
            return (*new, *_split_info(info))
        return flat
    out = fn.run_step("NUTS run", (max_tree_depth, float(max_delta_energy), len(dense)), build, args)
    return None if out is None else (NUTSTreeState(*out[:5]), NUTSAsyncInfo(*out[5:]))


def _split_info(info: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``NUTSAsyncInfo``'s fields from the packed (C, 7) info (inside a compiled graph the split and the
    comparisons are part of the step's kernels, not ~15 us of separate ops per step)."""
    finished, accept_prob, divergent, energy, depth, steps, size = info.unbind(1)
    return finished > 0, accept_prob, divergent > 0, energy, depth, steps, size


def nuts_async_step(state: NUTSTreeState, generator: torch.Generator, logdensity_fn, step_size: torch.Tensor,
                    metric: Metric, max_tree_depth: int = 10, max_delta_energy: float = 1000.0,
                    num_leapfrog: int = 1) -> tuple[NUTSTreeState, NUTSAsyncInfo]:
    """Leapfrog steps of every chain until some chain's draw ends, at most ``num_leapfrog`` (see
    ``tree_run``; 1: exactly one step), randomness from ``generator``; at most one draw per chain
    ends per call and ``info.finished`` marks them."""
    C, d = state.position.shape
    if state.tree.shape[1] != _width(d, max_tree_depth):
        raise ValueError(f"state was not initialised for max_tree_depth = {max_tree_depth} and d = {d}")
    if isinstance(num_leapfrog, bool) or not isinstance(num_leapfrog, int) or num_leapfrog < 1:
        raise ValueError(f"num_leapfrog must be a positive integer, got {num_leapfrog!r}")
    dtype, device = state.position.dtype, state.position.device
    normal = torch.randn(num_leapfrog, C, d, generator=generator, dtype=dtype, device=device)     # (L, C, d)
    uniform = torch.rand(num_leapfrog, C, 3, generator=generator, dtype=dtype, device=device)     # (L, C, 3)
    out = None
    if isinstance(logdensity_fn, CompiledLogDensity):
        out = _compiled_block(logdensity_fn, state, normal, uniform, step_size, metric, max_tree_depth,
                              max_delta_energy)
    if out is None:
        def eager_value_and_grad(q):
            return value_and_grad(logdensity_fn, q)
        if num_leapfrog == 1:
            out = tree_step(state, normal[0], uniform[0], step_size, metric.inverse_mass, metric.chol,
                            eager_value_and_grad, max_tree_depth, max_delta_energy, metric.momentum_factor)
        else:
            out = tree_run(state, normal, uniform, step_size, metric.inverse_mass, metric.chol,
                           eager_value_and_grad, max_tree_depth, max_delta_energy, metric.momentum_factor)
        out = out[0], NUTSAsyncInfo(*_split_info(out[1]))
    return out
