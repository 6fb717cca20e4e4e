"""Argument checks for the public boundary of ``arrcoc.bayes`` (internal calls are not re-checked).

Every check raises a ``TypeError`` or ``ValueError`` whose message names the argument and says what
was expected, and returns the value in the form the caller uses (a plain ``int``, a ``float``, the
generator itself). Subpackages with richer needs (``conjugate/_validate.py``) build on these.
"""
from __future__ import annotations

import math
import numbers

import torch

from arrcoc._checks import check_int

__all__ = ["check_generator", "check_int", "check_real", "check_probability", "check_finite_tensor", "check_real_tensor"]


def check_generator(generator, name: str = "generator") -> torch.Generator:
    """A ``torch.Generator`` is required: randomness is always passed explicitly (never the global RNG)."""
    if not isinstance(generator, torch.Generator):
        hint = " (a numpy Generator or a seed is not accepted: pass torch.Generator().manual_seed(seed))"
        raise TypeError(f"{name} must be a torch.Generator, got {type(generator).__name__}{hint}")
    return generator


def check_real(value, name: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False, allow_inf: bool = False) -> float:
    """A real number (bool excluded), not NaN, finite unless ``allow_inf``, within the given bounds."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be a finite number, got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {v}")
    return v


def check_probability(value, name: str, *, open_interval: bool = True) -> float:
    """A probability in (0, 1) (or [0, 1] with ``open_interval=False``)."""
    return check_real(value, name, low=0.0, high=1.0, low_open=open_interval, high_open=open_interval)


def check_finite_tensor(t, name: str, *, floating: bool = True) -> torch.Tensor:
    """A tensor (floating point unless ``floating=False``) with no NaN or inf entry; names the first bad index."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if floating and not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    bad = ~torch.isfinite(t)
    if bad.any():
        idx = tuple(bad.nonzero()[0].tolist())
        raise ValueError(f"{name} must be finite; entry {idx} is {t[idx].item()}")
    return t


def check_real_tensor(value, name: str, *, low: float | None = None, low_open: bool = False,
                      allow_inf: bool = False, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """A real number or a real tensor (bool, complex and other types refused) as a tensor of ``dtype``
    on ``device``: no NaN, finite unless ``allow_inf``, every entry >= ``low`` (> with ``low_open``).
    One host sync for the value checks (a NaN or inf anywhere makes the sum non-finite)."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name} must be a real number or a real tensor, got dtype {value.dtype}")
        t = value.to(dtype=dtype or (value.dtype if value.is_floating_point() else torch.float64), device=device)
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number or a real tensor, got {type(value).__name__} {value!r}")
    else:
        t = torch.tensor(float(value), dtype=dtype or torch.float64, device=device)
    if t.numel() == 0:
        return t
    bad_low = None if low is None else ((t <= low) if low_open else (t < low))
    if allow_inf:
        ok = not bool(torch.isnan(t).any() | (bad_low.any() if bad_low is not None else False))
    else:
        ok = bool(torch.isfinite(t.sum())) and (bad_low is None or not bool(bad_low.any()))
    if not ok:
        if torch.isnan(t).any() or (not allow_inf and torch.isinf(t).any()):
            raise ValueError(f"{name} must be {'free of NaN' if allow_inf else 'finite'}, got {_show(t)}")
        if bad_low is not None and bool(bad_low.any()):
            raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {_show(t)}")
        if not bool(torch.isfinite(t).all()):  # pragma: no cover - a finite tensor whose sum overflows is fine
            raise ValueError(f"{name} must be finite, got {_show(t)}")
    return t


def _show(t: torch.Tensor) -> str:
    return repr(t.item()) if t.numel() == 1 else f"a tensor of shape {tuple(t.shape)} with {t.flatten()[:4].tolist()}..."
