"""Shared argument checking for the conjugate families (one place, one wording).

Every public entry point of :mod:`arrcoc.bayes.conjugate` funnels its parameters through
:func:`prepare_params` and its data through :func:`prepare_data`, so a bad argument always raises a
``ValueError`` (or ``TypeError`` for a wrong kind of object) that names the argument and says what
was expected, never a silent NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

__all__ = [
    "Domain", "REAL", "POSITIVE", "NONNEGATIVE", "POSITIVE_OR_INF",
    "prepare_params", "prepare_data", "prepare_count", "broadcast_batch", "check_device", "check_posterior_scale",
]


@dataclass(frozen=True)
class Domain:
    """An interval of allowed parameter values, with the words used in error messages."""

    low: float
    low_closed: bool
    allow_inf: bool  # whether +inf is allowed (improper limits such as an infinite prior scale)
    text: str

    def violated(self, t: Tensor) -> Tensor:
        """Boolean mask of entries of ``t`` outside the domain (NaN is reported separately)."""
        bad = t < self.low if self.low_closed else t <= self.low
        if self.allow_inf:
            bad = bad | (t == -math.inf)
        else:
            bad = bad | torch.isinf(t)
        return bad


REAL = Domain(-math.inf, False, False, "finite real numbers")
POSITIVE = Domain(0.0, False, False, "finite and > 0")
NONNEGATIVE = Domain(0.0, True, False, "finite and >= 0")
POSITIVE_OR_INF = Domain(0.0, False, True, "> 0 (+inf allowed)")


def _as_tensor(value, name: str, device=None, dtype=None) -> Tensor:
    if isinstance(value, Tensor):
        t = value
    elif isinstance(value, (bool,)):
        raise TypeError(f"{name} must be a number or a tensor, got bool")
    else:
        try:
            t = torch.as_tensor(value, device=device)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"{name} must be a number, array or tensor, got {type(value).__name__}") from e
    if t.is_complex():
        raise TypeError(f"{name} must be real, got dtype {t.dtype}")
    if dtype is not None:
        t = t.to(dtype)
    return t


def check_device(t: Tensor, name: str, device: torch.device) -> None:
    """Raise if ``t`` lives on another device than the family (no silent host/device copies)."""
    if t.device != torch.device(device):
        raise ValueError(f"{name} is on device {t.device} but the distribution's parameters are on {device}")


def prepare_params(values: Mapping[str, object], domains: Mapping[str, Domain], *,
                   event_dims: Mapping[str, int] | None = None, validate: bool = True) -> dict[str, Tensor]:
    """Convert parameters to tensors on one device and one floating dtype and broadcast their batch shapes.

    values: name -> number / array / tensor. Tensor arguments fix the device (all must agree) and the
    dtype (floating tensors are promoted together; integer tensors and Python numbers take that dtype,
    or torch's default dtype when no floating tensor is given).
    domains: name -> :class:`Domain` each parameter must lie in.
    event_dims: name -> number of trailing event dimensions excluded from broadcasting (e.g. 1 for a
    Dirichlet concentration vector); default 0.
    Returns the converted tensors, each broadcast to the common batch shape (event dims kept).
    """
    event_dims = dict(event_dims or {})
    tensors = {k: v for k, v in values.items() if isinstance(v, Tensor)}
    devices = {t.device for t in tensors.values()}
    if len(devices) > 1:
        desc = ", ".join(f"{k} on {t.device}" for k, t in tensors.items())
        raise ValueError(f"parameters must be on one device, got {desc}")
    device = devices.pop() if devices else torch.device("cpu")
    float_dtypes = [t.dtype for t in tensors.values() if t.is_floating_point()]
    dtype = torch.get_default_dtype()
    if float_dtypes:
        dtype = float_dtypes[0]
        for d in float_dtypes[1:]:
            dtype = torch.promote_types(dtype, d)
    out = {}
    for name, value in values.items():
        t = _as_tensor(value, name, device=device, dtype=dtype)
        ev = event_dims.get(name, 0)
        if t.dim() < ev:
            raise ValueError(f"{name} must have at least {ev} dimension(s), got shape {tuple(t.shape)}")
        if validate:
            if torch.isnan(t).any():
                raise ValueError(f"{name} contains NaN")
            bad = domains[name].violated(t)
            if bad.any():
                raise ValueError(f"{name} must be {domains[name].text}; got {t[bad].flatten()[:5].tolist()}")
        out[name] = t
    batch_shapes = {k: t.shape[: t.dim() - event_dims.get(k, 0)] for k, t in out.items()}
    try:
        batch = torch.broadcast_shapes(*batch_shapes.values())
    except RuntimeError:
        desc = ", ".join(f"{k}: {tuple(s)}" for k, s in batch_shapes.items())
        raise ValueError(f"parameter batch shapes do not broadcast ({desc})") from None
    for k, t in out.items():
        out[k] = t.expand(batch + t.shape[t.dim() - event_dims.get(k, 0):])
    return out


def prepare_data(value, name: str, *, dtype: torch.dtype, device: torch.device, dim: int,
                 event_dims: int = 0, integer: bool = False, nonnegative: bool = False,
                 validate: bool = True) -> Tensor:
    """Check observed data and return it as ``dtype`` with the observation axis moved to ``-1 - event_dims``.

    value: number / array / tensor holding observations along ``dim`` (and ``event_dims`` trailing
    event dimensions, which ``dim`` must not point into).
    integer / nonnegative: required value properties (counts are non-negative integers).
    validate: False skips the value checks (NaN, finiteness, integrality, sign) to avoid host syncs in
    hot loops; shapes are always checked.
    """
    t = _as_tensor(value, name)
    if isinstance(value, Tensor):
        check_device(t, name, device)
    else:
        t = t.to(device)
    nd = t.dim()
    if nd < 1 + event_dims:
        raise ValueError(f"{name} must have an observation dimension{' and ' + str(event_dims) + ' event dimension(s)' if event_dims else ''}; "
                         f"got shape {tuple(t.shape)}")
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    last_ok = nd - 1 - event_dims
    d = dim + nd if dim < 0 else dim
    if not 0 <= d <= last_ok:
        raise ValueError(f"dim={dim} is not a valid observation axis of {name} with shape {tuple(t.shape)}"
                         + (f" (the last {event_dims} dimension(s) are the event)" if event_dims else ""))
    if validate:
        if t.is_floating_point():
            if torch.isnan(t).any():
                raise ValueError(f"{name} contains NaN")
            if torch.isinf(t).any():
                raise ValueError(f"{name} must be finite, got inf")
            if integer and (t != torch.round(t)).any():
                raise ValueError(f"{name} must hold integer counts, got non-integer values")
        if nonnegative and (t < 0).any():
            raise ValueError(f"{name} must be non-negative, got {t[t < 0].flatten()[:5].tolist()}")
    t = t.to(dtype)
    return t.movedim(d, last_ok)


def prepare_count(value, name: str, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A count parameter (number of trials / draws): non-negative integers, any shape, as ``dtype``."""
    t = _as_tensor(value, name)
    if isinstance(value, Tensor):
        check_device(t, name, device)
    t = t.to(device=device, dtype=dtype)
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    if (t < 0).any() or torch.isinf(t).any() or (t != torch.round(t)).any():
        raise ValueError(f"{name} must be a non-negative integer count, got {t.flatten()[:5].tolist()}")
    return t


def broadcast_batch(param_batch: Sequence[int], data_batch: Sequence[int], name: str) -> torch.Size:
    """Common batch shape of the prior and the data, or a ValueError naming the data argument."""
    try:
        return torch.broadcast_shapes(torch.Size(param_batch), torch.Size(data_batch))
    except RuntimeError:
        raise ValueError(f"shape mismatch: {name} has batch shape {tuple(data_batch)} (its shape without the "
                         f"observation axis) which does not broadcast with the prior's batch shape "
                         f"{tuple(param_batch)}") from None


def check_posterior_scale(scale: Tensor, name: str, dtype: torch.dtype) -> None:
    """A posterior scale computed in float64 and cast to ``dtype`` must still be > 0 and finite there."""
    bad = ~(torch.isfinite(scale) & (scale > 0))
    if bad.any():
        raise ValueError(f"the posterior {name} is not representable in {dtype} (it under- or overflows to "
                         f"{scale[bad].flatten()[:5].tolist()}); use float64 parameters")
