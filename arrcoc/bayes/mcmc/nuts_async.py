"""Asynchronous chain-vectorised NUTS: every chain runs its own trajectory, one leapfrog step at a time.

Lock-step NUTS (``nuts.py``) makes every chain wait at each draw for the chain with the deepest tree:
with 4 chains a draw costs the maximum of 4 tree sizes, 1.3-1.4x the mean on posteriordb's eight
schools and diamonds.  Here the unit of work is one leapfrog step for all chains, and each chain keeps
its own place in the doubling procedure (a program counter in the spirit of Radul et al., "Automatically
batching control-intensive programs", 2020): depth, leaf index in the current subtree, direction,
trajectory ends, U-turn checkpoints.  A chain whose tree ends returns its draw and starts a new
trajectory at the next step while the others carry on, so no leapfrog step is wasted.

The step is one straight-line tensor program (no Python branch depends on data), so it runs as is on
CPU or GPU and compiles into a single graph with ``torch.compile`` when the log density is a
``CompiledLogDensity`` (``sample(..., compile=True)``).  The algorithm per chain is the one of
``nuts.py`` (Stan's): multinomial sampling (uniform inside a subtree, biased at merges), the
generalised U-turn criterion on every completed sub-subtree including the checks across neighbouring
subtrees, max tree depth, divergence when the energy error exceeds ``max_delta_energy``.

Pure functions: ``nuts_async_init(hmc_state, max_tree_depth)`` and
``nuts_async_step(state, generator, logdensity_fn, step_size, metric, ...) -> (state, info)``, where
``info.finished`` (C,) marks the chains whose draw ended at this step (their fields of ``info`` and
``state.position`` are the new draw).  The driver's asynchronous loop collects the draws.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Callable, NamedTuple

import torch

from .base import value_and_grad
from .compiled import CompiledLogDensity, compile_graph, failure_reason, functional_value_and_grad
from .hmc import HMCState
from .metrics import Metric, momentum_from_normal, velocity

__all__ = ["NUTSTreeState", "NUTSAsyncInfo", "nuts_async_init", "nuts_async_step", "tree_step", "tree_block",
           "no_uturn"]


class _Fields(NamedTuple):
    """Every chain's place in its NUTS program, field by field (packed into ``NUTSTreeState``)."""
    position: torch.Tensor   # (C, d) the chain's current draw
    logdensity: torch.Tensor  # (C,)
    grad: torch.Tensor       # (C, d)
    fresh: torch.Tensor      # (C,) bool: start a new trajectory at the next step
    new_sub: torch.Tensor    # (C,) bool: start a new subtree at the next step
    h0: torch.Tensor         # (C,) energy at the trajectory's start
    left: torch.Tensor       # (C, 4, d) left end: q, p, grad, velocity
    right: torch.Tensor      # (C, 4, d) right end
    rho: torch.Tensor        # (C, d) momentum sum over the merged trajectory
    prop: torch.Tensor       # (C, 2d + 2) sampled state [q | grad | logp | H]
    log_w: torch.Tensor      # (C,) log total weight of the merged trajectory
    depth: torch.Tensor      # (C,) long: doublings merged so far (= subtree exponent being built)
    n: torch.Tensor          # (C,) long: leaves built in the current subtree
    fwd: torch.Tensor        # (C,) bool: direction of the current subtree
    front: torch.Tensor      # (C, 3, d) integration front: q, p, grad
    S: torch.Tensor          # (C, d) momentum sum of the current subtree
    sub_log_w: torch.Tensor  # (C,) log weight of the current subtree
    sub_prop: torch.Tensor   # (C, 2d + 2) state sampled inside the current subtree
    first: torch.Tensor      # (C, 2, d) first leaf of the subtree: p, velocity
    prev: torch.Tensor       # (C, 2, d) previous leaf: p, velocity
    ck: torch.Tensor         # (C, K + 1, 5, d) U-turn checkpoints: p, velocity, S, previous p, previous velocity
    n_steps: torch.Tensor    # (C,) leapfrog steps in the current trajectory
    sum_acc: torch.Tensor    # (C,) sum of min(1, exp(-dH)) over the trajectory
    divergent: torch.Tensor  # (C,) bool


class NUTSTreeState(NamedTuple):
    """Asynchronous NUTS state: the current draw plus each chain's tree packed into two buffers.

    Packing keeps a compiled step's inputs and outputs to a handful of tensors (a compiled call
    pays per tensor for allocation and guards: 26 separate fields cost more than the step's
    arithmetic on small models).  ``_unpack`` / ``_pack`` convert to and from named fields."""
    position: torch.Tensor    # (C, d) current draw
    logdensity: torch.Tensor  # (C,)
    grad: torch.Tensor        # (C, d)
    tree: torch.Tensor        # (C, W) float fields of the tree, laid out by _layout(d, K)
    flags: torch.Tensor       # (C, 6) long: fresh, new_sub, depth, n, fwd, divergent


_FLOAT_FIELDS = ("h0", "left", "right", "rho", "prop", "log_w", "front", "S", "sub_log_w",
                 "sub_prop", "first", "prev", "ck", "n_steps", "sum_acc")
_INT_FIELDS = ("fresh", "new_sub", "depth", "n", "fwd", "divergent")
_BOOL_FIELDS = ("fresh", "new_sub", "fwd", "divergent")


def _layout(d: int, K: int) -> dict[str, tuple[int, int, tuple[int, ...]]]:
    """Column range and per-chain shape of each float field in ``tree``."""
    if (d, K) in _LAYOUTS:
        return _LAYOUTS[(d, K)]
    shapes = {"h0": (), "left": (4, d), "right": (4, d), "rho": (d,), "prop": (2 * d + 2,),
              "log_w": (), "front": (3, d), "S": (d,), "sub_log_w": (), "sub_prop": (2 * d + 2,),
              "first": (2, d), "prev": (2, d), "ck": (K + 1, 5, d), "n_steps": (), "sum_acc": ()}
    out, start = {}, 0
    for name in _FLOAT_FIELDS:
        size = math.prod(shapes[name])
        out[name] = (start, start + size, shapes[name])
        start += size
    _LAYOUTS[(d, K)] = out
    return out


_LAYOUTS: dict = {}


def _unpack(s: NUTSTreeState, K: int) -> _Fields:
    C, d = s.position.shape
    kw = {}
    for name, (a, b, shape) in _layout(d, K).items():
        kw[name] = s.tree[:, a] if shape == () else s.tree[:, a:b].reshape((C,) + shape)
    for k, name in enumerate(_INT_FIELDS):
        kw[name] = s.flags[:, k].bool() if name in _BOOL_FIELDS else s.flags[:, k]
    return _Fields(position=s.position, logdensity=s.logdensity, grad=s.grad, **kw)


def _pack(f: _Fields) -> NUTSTreeState:
    C = f.position.shape[0]
    tree = torch.cat([getattr(f, n).reshape(C, -1) for n in _FLOAT_FIELDS], -1)            # (C, W)
    flags = torch.stack([getattr(f, n).long() for n in _INT_FIELDS], -1)                    # (C, 6)
    return NUTSTreeState(f.position, f.logdensity, f.grad, tree, flags)


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
    width = _layout(d, max_tree_depth)["sum_acc"][1]
    flags = torch.zeros(C, len(_INT_FIELDS), dtype=torch.long, device=q.device)
    flags[:, 0] = 1                                                   # fresh: start a trajectory
    return NUTSTreeState(q.clone(), state.logdensity.clone(), state.grad.clone(),
                         torch.zeros(C, width, dtype=q.dtype, device=q.device), flags)


def no_uturn(va: torch.Tensor, vb: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Generalised no-U-turn criterion: both end velocities (p sharp) point along the momentum sum rho."""
    return ((va * rho).sum(-1) > 0) & ((vb * rho).sum(-1) > 0)


def tree_step(state: NUTSTreeState, z: torch.Tensor, u: torch.Tensor, step_size: torch.Tensor,
              inv_mass: torch.Tensor, chol: torch.Tensor | None, vg: Callable, max_tree_depth: int,
              max_delta_energy: float) -> tuple[NUTSTreeState, torch.Tensor]:
    """One leapfrog step of every chain's NUTS program, randomness given: z (C, d) standard normal
    (the momentum of chains starting a trajectory), u (C, 3) uniforms (direction, leaf, merge).
    ``vg(q) -> (logp (C,), grad (C, d))`` sanitised.  Straight-line code: compiles as one graph.
    Returns the new state and the info packed as (C, 7) in ``NUTSAsyncInfo`` order."""
    s = _unpack(state, max_tree_depth)
    C, d = s.position.shape
    K = max_tree_depth
    metric = Metric(inv_mass, chol)
    inf = math.inf
    # ---- 0. chains that start a trajectory: momentum, energy, both ends at the current draw
    f = s.fresh
    f1, f2 = f[:, None], f[:, None, None]
    p0 = momentum_from_normal(metric, z)                             # (C, d)
    v0 = velocity(metric, p0)
    h0 = torch.where(f, torch.nan_to_num(0.5 * (p0 * v0).sum(-1) - s.logdensity, nan=inf), s.h0)  # (C,)
    end0 = torch.stack([s.position, p0, s.grad, v0], 1)               # (C, 4, d)
    left = torch.where(f2, end0, s.left)
    right = torch.where(f2, end0, s.right)
    rho = torch.where(f1, p0, s.rho)
    prop = torch.where(f1, torch.cat([s.position, s.grad, s.logdensity.unsqueeze(-1), h0.unsqueeze(-1)], -1), s.prop)
    log_w = torch.where(f, 0.0, s.log_w)
    depth = torch.where(f, 0, s.depth)
    n_steps = torch.where(f, 0.0, s.n_steps)
    sum_acc = torch.where(f, 0.0, s.sum_acc)
    divergent = torch.where(f, False, s.divergent)
    # ---- 1. chains that start a subtree: direction, front at that end, empty subtree sums
    st = f | s.new_sub
    st1 = st[:, None]
    fwd = torch.where(st, u[:, 0] > 0.5, s.fwd)                       # (C,)
    end = torch.where(fwd[:, None, None], right, left)                # (C, 4, d)
    front = torch.where(st1[..., None], end[:, :3], s.front)          # (C, 3, d) q, p, grad
    n = torch.where(st, 0, s.n)
    S = torch.where(st1, 0.0, s.S)
    sub_log_w = torch.where(st, -inf, s.sub_log_w)
    sub_prop = torch.where(st1, prop, s.sub_prop)
    # ---- 2. one leapfrog step for every chain
    eps = torch.where(fwd, step_size, -step_size).unsqueeze(-1)      # (C, 1)
    p = front[:, 1] + 0.5 * eps * front[:, 2]
    q = front[:, 0] + eps * velocity(metric, p)
    lp, g = vg(q)                                                     # (C,), (C, d)
    p = p + 0.5 * eps * g
    v = velocity(metric, p)
    h = torch.nan_to_num(0.5 * (p * v).sum(-1) - lp, nan=inf)        # (C,)
    delta = h - h0
    div = ~(delta <= max_delta_energy) | ~torch.isfinite(h0)          # NaN counts as divergent
    n_steps = n_steps + 1
    sum_acc = sum_acc + torch.exp(-delta).clamp(max=1.0)
    divergent = divergent | div
    ok = ~div
    new_sub_lw = torch.logaddexp(sub_log_w, -delta)
    take = ok & (u[:, 1].log() < -delta - new_sub_lw)                 # uniform progressive sampling
    sub_prop = torch.where(take[:, None], torch.cat([q, g, lp.unsqueeze(-1), h.unsqueeze(-1)], -1), sub_prop)
    sub_log_w = torch.where(ok, new_sub_lw, sub_log_w)
    S = S + p
    n0 = (n == 0)[:, None, None]
    first = torch.where(n0, torch.stack([p, v], 1), s.first)         # (C, 2, d)
    # ---- 3. U-turn checkpoints (even leaves store, odd leaves check completed sub-subtrees)
    ar = torch.arange(K + 1, device=n.device)                         # (K+1,)
    i_max = ((n.unsqueeze(-1) >> 1) >> ar & 1).sum(-1)                # (C,) popcount(n >> 1)
    even = n % 2 == 0
    leaf = torch.stack([p, v, S, s.prev[:, 0], s.prev[:, 1]], 1)      # (C, 5, d)
    store = (even.unsqueeze(-1) & (ar == i_max.unsqueeze(-1)))[..., None, None]  # (C, K+1, 1, 1)
    ck = torch.where(store, leaf.unsqueeze(1), s.ck)                  # (C, K+1, 5, d)
    trailing = ((n ^ (n + 1)).unsqueeze(-1) >> ar & 1).sum(-1) - 1   # (C,) trailing ones of n
    j = ar[1:]                                                        # (K,) 1..K
    i = i_max.unsqueeze(-1) - j + 1                                   # (C, K)
    use = (~even).unsqueeze(-1) & (j <= trailing.unsqueeze(-1))       # (C, K)
    use2 = use & (j >= 2)
    idx = i.clamp(0, K)[..., None, None].expand(C, K, 5, d)
    c = ck.gather(1, idx)                                             # (C, K, 5, d) checkpoint i
    nx = ck.gather(1, (i + 1).clamp(0, K)[..., None, None].expand(C, K, 5, d))  # checkpoint i + 1
    Sx, vx = S.unsqueeze(1), v.unsqueeze(1)                           # (C, 1, d)
    whole = no_uturn(c[:, :, 1], vx, Sx - c[:, :, 2] + c[:, :, 0])                          # sub-subtree
    lhalf = no_uturn(c[:, :, 1], nx[:, :, 1], nx[:, :, 2] - c[:, :, 2] + c[:, :, 0])        # left half + 1
    rhalf = no_uturn(nx[:, :, 4], vx, Sx - nx[:, :, 2] + nx[:, :, 0] + nx[:, :, 3])        # 1 + right half
    uturn = (use & ~whole) | (use2 & ~(lhalf & rhalf))
    sub_ok = ok & ~uturn.any(-1)
    prev = torch.stack([p, v], 1)
    # ---- 4. a complete valid subtree merges into the trajectory
    full = (n + 1) == (torch.ones_like(depth) << depth)
    sub_end = ~sub_ok | full
    valid = sub_ok & full
    take_m = valid & (u[:, 2].log() < sub_log_w - log_w)              # biased progressive sampling
    prop = torch.where(take_m[:, None], sub_prop, prop)
    log_w = torch.where(valid, torch.logaddexp(log_w, sub_log_w), log_w)
    fw1 = fwd[:, None]
    v_far = torch.where(fw1, left[:, 3], right[:, 3])                 # old trajectory's far end
    p_adj = torch.where(fw1, right[:, 1], left[:, 1])                 # old trajectory's adjacent end
    v_adj = torch.where(fw1, right[:, 3], left[:, 3])
    rho_tot = rho + S
    keep = no_uturn(torch.stack([v_far, v_far, v_adj], 1), torch.stack([v, first[:, 1], v], 1),
                 torch.stack([rho_tot, rho + first[:, 0], S + p_adj], 1)).all(-1)
    rho = torch.where(valid[:, None], rho_tot, rho)
    new_end = torch.stack([q, p, g, v], 1)                            # (C, 4, d)
    nr, nl = valid & fwd, valid & ~fwd
    right = torch.where(nr[:, None, None], new_end, right)
    left = torch.where(nl[:, None, None], new_end, left)
    depth = depth + valid
    more = valid & keep & (depth < K)
    done = sub_end & ~more
    # ---- 5. finished chains take their draw; the others go on
    d1 = done[:, None]
    position = torch.where(d1, prop[:, :d], s.position)
    grad = torch.where(d1, prop[:, d:2 * d], s.grad)
    logdensity = torch.where(done, prop[:, 2 * d], s.logdensity)
    n = torch.where(sub_end, n, n + 1)
    new_state = _pack(_Fields(position, logdensity, grad, done, more, h0, left, right, rho, prop, log_w,
                              depth, n, fwd, torch.stack([q, p, g], 1), S, sub_log_w, sub_prop, first, prev, ck,
                              n_steps, sum_acc, divergent))
    info = torch.stack([done.to(h.dtype), sum_acc / n_steps, divergent.to(h.dtype), prop[:, 2 * d + 1],
                        depth.to(h.dtype), n_steps, step_size], -1)   # (C, 7)
    # float64 data, step size or log density promote float32 chains' arithmetic: compute in the promoted
    # dtype but keep the state's own, so a compiled graph is fed what it was built for at the next step
    dt = state.position.dtype
    new_state = NUTSTreeState(new_state.position.to(dt), new_state.logdensity.to(dt), new_state.grad.to(dt),
                              new_state.tree.to(dt), new_state.flags)
    return new_state, info.to(dt)


def _eager_vg(logdensity_fn):
    return lambda q: value_and_grad(logdensity_fn, q)


def tree_block(state: NUTSTreeState, z: torch.Tensor, u: torch.Tensor, step_size: torch.Tensor,
               inv_mass: torch.Tensor, chol: torch.Tensor | None, vg: Callable, max_tree_depth: int,
               max_delta_energy: float) -> tuple[NUTSTreeState, torch.Tensor]:
    """``L = z.shape[0]`` leapfrog steps of every chain, z (L, C, d), u (L, C, 3).  A chain whose draw
    ends inside the block parks (keeps its state) until the block ends, so that at most one draw per
    chain ends per call and the caller can adapt its parameters before its next trajectory; packing
    several steps into one compiled call spreads the call's fixed cost over them."""
    parked = torch.zeros_like(state.logdensity, dtype=torch.bool)     # (C,)
    out_info = None
    for step_z, step_u in zip(z.unbind(0), u.unbind(0)):
        new, info = tree_step(state, step_z, step_u, step_size, inv_mass, chol, vg, max_tree_depth,
                              max_delta_energy)
        p1 = parked[:, None]
        state = NUTSTreeState(torch.where(p1, state.position, new.position),
                              torch.where(parked, state.logdensity, new.logdensity),
                              torch.where(p1, state.grad, new.grad), torch.where(p1, state.tree, new.tree),
                              torch.where(p1, state.flags, new.flags))
        fresh = (info[:, 0] > 0) & ~parked                            # draws ending at this step
        out_info = info if out_info is None else torch.where(fresh[:, None], info, out_info)
        parked = parked | fresh
    out_info = torch.cat([parked.to(out_info.dtype)[:, None], out_info[:, 1:]], -1)   # finished = parked
    return state, out_info


def _graph_block(fn: CompiledLogDensity, max_tree_depth: int, max_delta_energy: float, args: tuple):
    """The compiled block for these shapes (``compile_graph``: no per-call guards), built on first use;
    None once building it has failed (the dynamo-compiled block takes over)."""
    key = ("nuts_async_graph", max_tree_depth, float(max_delta_energy), len(args),
           tuple((tuple(t.shape), t.stride(), t.dtype, t.device) for t in args))   # inductor checks no dtype
    cache = fn._kernels
    if key not in cache:
        vg = functional_value_and_grad(fn.fn)

        def flat(position, logdensity, grad, tree, flags, z, u, step_size, inv_mass, *chol):
            new, info = tree_block(NUTSTreeState(position, logdensity, grad, tree, flags), z, u, step_size, inv_mass,
                                   chol[0] if chol else None, vg, max_tree_depth, max_delta_energy)
            return (*new, info)
        t = time.perf_counter()
        try:
            cache[key] = compile_graph(flat, args, config=fn.config)
            fn.compile_seconds += time.perf_counter() - t
        except Exception as err:  # noqa: BLE001 - make_fx / inductor failure: try torch.compile next
            if fn.strict:
                raise
            cache[key] = None
            warnings.warn(f"NUTS step: guard-free compilation failed ({failure_reason(err)}); using torch.compile",
                          RuntimeWarning, stacklevel=3)
    return cache[key]


def _dynamo_block(fn: CompiledLogDensity, max_tree_depth: int, max_delta_energy: float):
    key = ("nuts_async", max_tree_depth, float(max_delta_energy))
    cache = fn._kernels
    if key not in cache:
        vg = functional_value_and_grad(fn.fn)

        def block(s, z, u, step_size, inv_mass, chol):
            return tree_block(s, z, u, step_size, inv_mass, chol, vg, max_tree_depth, max_delta_energy)
        cache[key] = torch.compile(block, fullgraph=True, dynamic=False, mode=fn.mode)
    return cache[key]


def _compiled_block(fn: CompiledLogDensity, state, z, u, step_size, metric, max_tree_depth, max_delta_energy):
    # the graph is specialised to strides too (a Cholesky factor comes back column-major): contiguous
    args = tuple(a.contiguous() for a in (*state, z, u, step_size, metric.inverse_mass)
                 + (() if metric.chol is None else (metric.chol,)))
    graph = _graph_block(fn, max_tree_depth, max_delta_energy, args)
    if graph is not None:
        out = graph(*args)
        return NUTSTreeState(*out[:5]), out[5]
    return _dynamo_block(fn, max_tree_depth, max_delta_energy)(state, z, u, step_size, metric.inverse_mass,
                                                               metric.chol)


def nuts_async_step(state: NUTSTreeState, generator: torch.Generator, logdensity_fn, step_size: torch.Tensor,
                    metric: Metric, max_tree_depth: int = 10, max_delta_energy: float = 1000.0,
                    num_leapfrog: int = 1) -> tuple[NUTSTreeState, NUTSAsyncInfo]:
    """``num_leapfrog`` leapfrog steps of every chain (see the module docstring and ``tree_block``),
    randomness from ``generator``; at most one draw per chain ends per call."""
    C, d = state.position.shape
    if state.tree.shape[1] != _layout(d, max_tree_depth)["sum_acc"][1]:
        raise ValueError(f"state was not initialised for max_tree_depth = {max_tree_depth} and d = {d}")
    if not isinstance(num_leapfrog, int) or num_leapfrog < 1:
        raise ValueError(f"num_leapfrog must be a positive integer, got {num_leapfrog!r}")
    L = num_leapfrog
    z = torch.randn(L, C, d, generator=generator, dtype=state.position.dtype, device=state.position.device)
    u = torch.rand(L, C, 3, generator=generator, dtype=state.position.dtype, device=state.position.device)
    out = None
    if isinstance(logdensity_fn, CompiledLogDensity) and logdensity_fn.fallback_reason is None:
        try:
            out = _compiled_block(logdensity_fn, state, z, u, step_size, metric, max_tree_depth, max_delta_energy)
        except Exception as err:  # noqa: BLE001 - tracing failure: fall back to the eager step
            if logdensity_fn.strict:
                raise
            logdensity_fn.fallback_reason = failure_reason(err)
            warnings.warn("compiled NUTS step could not be traced as one graph "
                          f"({logdensity_fn.fallback_reason}); running it eagerly", RuntimeWarning, stacklevel=2)
    if out is None:
        vg = _eager_vg(logdensity_fn)
        if L == 1:
            out = tree_step(state, z[0], u[0], step_size, metric.inverse_mass, metric.chol, vg, max_tree_depth,
                            max_delta_energy)
        else:
            out = tree_block(state, z, u, step_size, metric.inverse_mass, metric.chol, vg, max_tree_depth,
                             max_delta_energy)
    new_state, info = out
    return new_state, NUTSAsyncInfo(info[:, 0] > 0, info[:, 1], info[:, 2] > 0, info[:, 3], info[:, 4], info[:, 5],
                                    info[:, 6])
