"""Checks with no dependency inside arrcoc, shared by every layer (``bayes``, ``backbones``, ...).

A leaf module: it imports only torch and the standard library, so the layers that must not import
each other (``tests/test_architecture.py``) can all use it.
"""
from __future__ import annotations

import math
import numbers

import torch

__all__ = ["check_int"]


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (bool excluded; 3.0 accepted, 3.5 refused) within [minimum, maximum]."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"{name} must be an int, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    f = float(value)
    if not (math.isfinite(f) and f.is_integer()):
        raise TypeError(f"{name} must be an int, got {value!r}")
    v = int(f)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return v
