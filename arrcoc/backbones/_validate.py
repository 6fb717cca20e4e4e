"""Argument checks for the public boundary of ``arrcoc.backbones``.

The backbones layer imports no other part of arrcoc (tests/test_architecture.py), so it keeps its own
copy of the one check it needs; it behaves as ``arrcoc.bayes._validate.check_int``.
"""
from __future__ import annotations

import math
import numbers

import torch

__all__ = ["check_int"]


def check_int(value, name: str, *, minimum: int | None = None) -> int:
    """An integer (bool excluded; 3.0 accepted, 3.5 refused) >= minimum; raises naming ``name``."""
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
    return v
