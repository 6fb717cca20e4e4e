"""Shared pieces of the MCMC kernels: batched log density + gradient, constrained models, RNG helpers.

Every kernel works on a flat unconstrained position of shape (C, d): C chains advance together
as one batched tensor.  A log density maps (C, d) -> (C,) and must treat the rows independently
(rows may be any subset of the chains: kernels evaluate only the chains that still move).
Gradients come from ``torch.autograd`` on the batch: ``grad(logp.sum(), x)`` is the per-chain
gradient because chain c's log density depends only on row c.
"""
from __future__ import annotations

import abc
import math
from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence

import torch
from torch.distributions import Distribution, Transform, biject_to, constraints
from torch.distributions.constraints import Constraint

from .._validate import check_generator
from .compiled import CompiledLogDensity, autograd_value_and_grad

__all__ = [
    "Kernel",
    "Adaptation",
    "LogDensityFn",
    "value_and_grad",
    "safe_logdensity",
    "Model",
    "as_model",
    "uniform_like",
    "sample_distribution",
    "check_generator",
]

LogDensityFn = Callable[[torch.Tensor], torch.Tensor]


class Adaptation(Protocol):
    """What ``Kernel.warmup`` returns: the warmup's adaptation of the kernel's parameters, as pure steps.

    init(state, params) -> adaptation state.
    update(adaptation_state, state, info, params, generator[, mask]) -> (adaptation_state, params):
        after each warmup transition.  ``mask`` (C,) bool is passed only for asynchronous kernels
        (the chains whose transition ended at this step); synchronous kernels may omit the argument.
    final(adaptation_state, params[, mask]) -> params: at the end of warmup (per chain under ``mask``).
    """

    def init(self, state, params) -> Any: ...

    def update(self, adaptation_state, state, info, params, generator, mask=None) -> tuple[Any, Any]: ...

    def final(self, adaptation_state, params, mask=None) -> Any: ...


class Kernel(abc.ABC):
    """What the driver (``sample``) asks of a kernel; every kernel of this package subclasses it, and
    so must a new one (``sample`` refuses anything else).  States, parameters and infos are the
    kernel's own NamedTuples over C chains; positions are flat unconstrained (C, d).

    Required:
      init(position, logdensity_fn) -> state at the initial positions (C, d).
      init_params(state, logdensity_fn, generator) -> params before warmup (step size, metric, ...).
      step(state, generator, logdensity_fn, params) -> (state, info): one transition of every chain
          (or, for an asynchronous kernel, one slice of every chain's transition); info is a NamedTuple
          of per-chain tensors (C,).
    Optional (the defaults suit a kernel whose state has ``position`` and ``logdensity``):
      warmup(num_warmup, logdensity_fn) -> an ``Adaptation`` or None (default: none, warmup is burn-in).
      draw_position(state) -> (C, d) the position a draw records (default ``state.position``).
      draw_logdensity(state) -> (C,) its log density, for the stuck-chain check at the end of warmup
          (default ``state.logdensity``).
      is_asynchronous(logdensity_fn) -> bool: True when ``step`` advances every chain a slice of its
          transition and reports ``info.finished`` (C,) bool for the chains whose draw ended; then
          ``info_fields`` names the per-draw info fields (besides ``finished``).  Default False.
      max_depth_hits(info) -> (C, S) bool or None: the draws whose trajectory stopped at the kernel's
          length cap (NUTS: max tree depth), for the diagnostics; default None (no such cap).
      default_init: the name of the initialisation strategy used when ``sample(init=None)``
          ("uniform" unless the kernel says otherwise).
    """

    info_fields: tuple[str, ...] = ()
    default_init: str = "uniform"     # the init strategy ``sample(init=None)`` uses (initialization.py)

    @abc.abstractmethod
    def init(self, position: torch.Tensor, logdensity_fn: LogDensityFn): ...

    @abc.abstractmethod
    def init_params(self, state, logdensity_fn: LogDensityFn, generator: torch.Generator): ...

    @abc.abstractmethod
    def step(self, state, generator: torch.Generator, logdensity_fn: LogDensityFn, params): ...

    def warmup(self, num_warmup: int, logdensity_fn: LogDensityFn) -> Adaptation | None:
        return None

    def draw_position(self, state) -> torch.Tensor:
        return state.position

    def draw_logdensity(self, state) -> torch.Tensor:
        return state.logdensity

    def is_asynchronous(self, logdensity_fn: LogDensityFn) -> bool:
        return False

    def max_depth_hits(self, info: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        return None


def _sanitize(logp: torch.Tensor) -> torch.Tensor:
    """NaN / +inf log densities become -inf so that a kernel rejects them (counted as divergent)."""
    return torch.nan_to_num(logp, nan=-math.inf, posinf=-math.inf, neginf=-math.inf)


def _check_logp(logp: torch.Tensor, n: int) -> torch.Tensor:
    if not isinstance(logp, torch.Tensor):
        raise TypeError(f"logdensity_fn must return a torch.Tensor of shape ({n},), got {type(logp).__name__}")
    if logp.shape != (n,):
        raise ValueError(
            f"logdensity_fn must map positions (C, d) to log densities of shape (C,) = ({n},), "
            f"got shape {tuple(logp.shape)}"
        )
    return logp


def safe_logdensity(logdensity_fn: LogDensityFn, x: torch.Tensor) -> torch.Tensor:
    """Log density of a batch (C, d) -> (C,) without gradient; NaN becomes -inf."""
    with torch.no_grad():
        return _sanitize(_check_logp(logdensity_fn(x), x.shape[0]))


def value_and_grad(
    logdensity_fn: LogDensityFn, x: torch.Tensor, active: torch.Tensor | None = None,
    old: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log density (C,) and its gradient (C, d) at x (C, d), per chain.

    ``active`` (C,) bool restricts evaluation to those rows; the others get ``old`` (logp, grad)
    (or -inf / 0 when ``old`` is None).  Non-finite values: NaN/+inf log density -> -inf,
    non-finite gradient entries -> 0, so that the caller sees an infinite energy and rejects.
    """
    n = x.shape[0]
    if (active is not None and getattr(logdensity_fn, "subset_ok", True)
            and int(active.sum()) * 2 <= n):
        # evaluate only the active rows (when at most half are active: gathering costs a few ops)
        idx = active.nonzero().squeeze(-1)  # (A,)
        if old is None:
            logp = torch.full((n,), -math.inf, dtype=x.dtype, device=x.device)
            grad = torch.zeros_like(x)
        else:
            logp, grad = old[0].clone(), old[1].clone()
        if idx.numel() == 0:
            return logp, grad
        lp_a, g_a = value_and_grad(logdensity_fn, x[idx])
        logp[idx] = lp_a
        grad[idx] = g_a
        return logp, grad
    if isinstance(logdensity_fn, CompiledLogDensity):  # one fused forward + backward graph
        logp, grad = logdensity_fn.value_and_grad(x)
    else:
        logp, grad = autograd_value_and_grad(logdensity_fn, x)
    _check_logp(logp, n)
    return _sanitize(logp.detach()), torch.nan_to_num(grad.detach(), nan=0.0, posinf=0.0, neginf=0.0)


def uniform_like(shape, generator: torch.Generator, dtype, device, low=-2.0, high=2.0) -> torch.Tensor:
    """Uniform(low, high) draws (Stan-style initialisation in unconstrained space)."""
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    return low + (high - low) * u


def sample_distribution(dist: Distribution, generator: torch.Generator, sample_shape=()) -> torch.Tensor:
    """Draw from a torch Distribution reproducibly with an explicit generator.

    Normal draws use the generator directly; other families draw under a forked global RNG seeded
    from the generator (torch.distributions' ``sample`` takes no generator).
    """
    sample_shape = torch.Size(sample_shape)
    if type(dist) is torch.distributions.Normal:
        shape = sample_shape + dist.batch_shape
        z = torch.randn(shape, generator=generator, dtype=dist.loc.dtype, device=dist.loc.device)
        return dist.loc + dist.scale * z
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    device = getattr(getattr(dist, "mean", None), "device", torch.device("cpu"))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return dist.sample(sample_shape)


def _lean_positive(con):
    lb = getattr(con, "lower_bound", 0.0)
    if isinstance(lb, (int, float)) and lb == 0:
        return torch.distributions.transforms.ExpTransform()
    return biject_to(con)


def _lean_interval(con):
    lo, hi = getattr(con, "lower_bound", None), getattr(con, "upper_bound", None)
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo == 0 and hi == 1:
        return torch.distributions.transforms.SigmoidTransform()
    return biject_to(con)


_LEAN = {type(constraints.positive): _lean_positive, type(constraints.unit_interval): _lean_interval}


class _Site(NamedTuple):
    name: str
    shape: tuple[int, ...]            # constrained shape of one draw
    transform: Transform              # unconstrained -> constrained
    unc_shape: tuple[int, ...]        # unconstrained shape of one draw
    start: int
    stop: int
    support: Constraint               # the constraint values must satisfy


class Model:
    """A log density over named, possibly constrained parameters, seen by kernels as flat (C, d).

    ``spec`` maps name -> (shape, constraint or Transform).  A torch.distributions ``Constraint``
    is turned into its bijection with ``biject_to`` (positive -> exp, unit_interval -> sigmoid,
    simplex -> stick breaking, ...); a ``Transform`` is used as given (unconstrained -> constrained).
    ``None`` means real-valued.  ``logdensity_fn`` takes a dict name -> (C, *shape) of constrained
    values and returns (C,); the flat log density adds the log-Jacobian of every transform.
    """

    def __init__(self, logdensity_fn: Callable[[dict], torch.Tensor],
                 spec: Mapping[str, tuple[Sequence[int] | int, Constraint | Transform | None]]):
        if not callable(logdensity_fn):
            raise TypeError("logdensity_fn must be callable: dict of (C, *shape) tensors -> (C,)")
        if not isinstance(spec, Mapping) or len(spec) == 0:
            raise ValueError("spec must be a non-empty dict name -> (shape, constraint or transform)")
        self.logdensity_dict = logdensity_fn
        sites = []
        start = 0
        for name, entry in spec.items():
            if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                raise ValueError(f"spec[{name!r}] must be a pair (shape, constraint or transform), got {entry!r}")
            shape, con = entry
            shape = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
            if any(s < 0 for s in shape):
                raise ValueError(f"spec[{name!r}] shape must be non-negative, got {shape}")
            if con is None:
                tr, support = torch.distributions.transforms.identity_transform, constraints.real
            elif isinstance(con, Transform):
                tr, support = con, con.codomain
            elif isinstance(con, Constraint):
                # lean bijections for the common cases (biject_to(positive) is exp composed with a
                # unit affine map: twice the ops per evaluation for the same result)
                tr, support = _LEAN.get(type(con), biject_to)(con), con
            else:
                raise TypeError(f"spec[{name!r}] needs a torch Constraint, Transform or None, got {type(con).__name__}")
            unc_shape = tuple(tr.inverse_shape(torch.Size(shape)))
            size = math.prod(unc_shape)
            sites.append(_Site(name, shape, tr, unc_shape, start, start + size, support))
            start += size
        self.sites = sites
        self.dim = start

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sites]

    def constrain(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat unconstrained (*batch, d) -> dict name -> constrained (*batch, *shape)."""
        out, _ = self._constrain(x, jacobian=False)
        return out

    def _constrain(self, x: torch.Tensor, jacobian: bool):
        if x.shape[-1] != self.dim:
            raise ValueError(f"position must have last dimension d = {self.dim}, got shape {tuple(x.shape)}")
        batch = x.shape[:-1]
        out = {}
        ladj = torch.zeros(batch, dtype=x.dtype, device=x.device)
        for s in self.sites:
            u = x[..., s.start:s.stop].reshape(batch + s.unc_shape)  # (*batch, *unc_shape)
            y = s.transform(u)
            out[s.name] = y
            if jacobian and s.transform is not torch.distributions.transforms.identity_transform:
                j = s.transform.log_abs_det_jacobian(u, y)
                j = j.reshape(batch + (-1,)).sum(-1) if j.dim() > len(batch) else j.expand(batch)
                ladj = ladj + j
        return out, ladj

    def unconstrain(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Dict name -> constrained (*batch, *shape) -> flat unconstrained (*batch, d)."""
        missing = [s.name for s in self.sites if s.name not in values]
        if missing:
            raise ValueError(f"init values missing parameters {missing}; expected {self.names}")
        parts = []
        for s in self.sites:
            v = torch.as_tensor(values[s.name])
            nb = v.dim() - len(s.shape)
            if nb < 0 or tuple(v.shape[nb:]) != s.shape:
                raise ValueError(f"init value for {s.name!r} must have trailing shape {s.shape}, got {tuple(v.shape)}")
            if not bool(s.support.check(v).all()):
                raise ValueError(f"init value for {s.name!r} violates its constraint {s.support}")
            u = s.transform.inv(v)
            parts.append(u.reshape(u.shape[:nb] + (-1,)))
        batch = torch.broadcast_shapes(*[p.shape[:-1] for p in parts])
        return torch.cat([p.expand(batch + p.shape[-1:]) for p in parts], -1)  # (*batch, d)

    def site(self, name: str) -> _Site:
        """The layout of one parameter (shape, transform, slice of the flat vector)."""
        for s in self.sites:
            if s.name == name:
                return s
        raise ValueError(f"unknown parameter {name!r}; the model has {self.names}")

    def with_value(self, x: torch.Tensor, name: str, value: torch.Tensor) -> torch.Tensor:
        """Flat x (C, d) with parameter ``name`` set to the constrained ``value`` (C, *shape)."""
        s = self.site(name)
        value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
        if tuple(value.shape) != (x.shape[0],) + s.shape:
            raise ValueError(f"value for {name!r} must have shape {(x.shape[0],) + s.shape}, got {tuple(value.shape)}")
        u = s.transform.inv(value).reshape(x.shape[0], -1)
        out = x.clone()
        out[:, s.start:s.stop] = u
        return out

    def logdensity(self, x: torch.Tensor) -> torch.Tensor:
        """Flat unconstrained log density (C, d) -> (C,), log-Jacobian included."""
        values, ladj = self._constrain(x, jacobian=True)
        return self.logdensity_dict(values) + ladj

    __call__ = logdensity


def as_model(model_or_fn, dim: int | None = None):
    """A Model (or PyroModel) as is; a plain callable over flat (C, d) with a known ``dim`` wrapped."""
    if hasattr(model_or_fn, "logdensity") and hasattr(model_or_fn, "dim") and hasattr(model_or_fn, "constrain"):
        return model_or_fn
    if not callable(model_or_fn):
        raise TypeError("logdensity_fn must be a callable (C, d) -> (C,), a Model or a PyroModel, "
                        f"got {type(model_or_fn).__name__}")
    return _FlatModel(model_or_fn, dim)


class _FlatModel:
    """A plain flat log density; draws are reported under the single name 'x'."""

    def __init__(self, fn, dim):
        self.logdensity = fn
        self.dim = dim
        self.names = ["x"]

    def __call__(self, x):
        return self.logdensity(x)

    def constrain(self, x):
        return {"x": x}

    def unconstrain(self, values):
        if isinstance(values, Mapping):
            if "x" not in values:
                raise ValueError("init dict for a flat log density needs the key 'x'")
            values = values["x"]
        return torch.as_tensor(values)
