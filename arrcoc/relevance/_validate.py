"""Argument checks for the public boundary of ``arrcoc.relevance``.

Public functions and ``RelevanceAllocator.forward`` call these once on what the user gave; the
internal steps they then call (``posterior._build``, the scorers' kernels, the knapsack solvers'
``_solve_*``) trust their inputs. Each check raises ``TypeError`` / ``ValueError`` naming the argument.
Checks that must look at tensor values (finiteness, ranges) are batched into one reduction each so a
forward pass costs a handful of device-to-host synchronisations, not one per check.
"""
from __future__ import annotations

import numbers

import torch
from torch import Tensor

from arrcoc.bayes._validate import check_generator

__all__ = ["all_finite", "first_non_finite", "check_observations", "as_batch", "as_channels", "check_features", "check_pixels",
           "check_values", "as_budget", "check_table", "check_generator_or_none", "check_region_index"]


def check_observations(obs, mask, name: str = "obs") -> Tensor:
    """obs (B, K, R) floating, mask (bool, same shape, or None = all observed); returns the mask.
    Observed entries must be finite; unobserved ones are ignored (they may hold anything)."""
    if not isinstance(obs, Tensor) or not obs.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor of shape (B, K, R), got {type(obs).__name__}")
    if obs.dim() != 3:
        raise ValueError(f"{name} must have shape (B, K, R), got {tuple(obs.shape)}")
    if obs.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch (B = 0)")
    if obs.shape[2] == 0:
        raise ValueError(f"{name} has no regions (R = 0)")
    if mask is None:
        mask = torch.ones(obs.shape, dtype=torch.bool, device=obs.device)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != obs.shape:
        raise ValueError(f"mask must be a bool tensor of shape {tuple(obs.shape)}")
    bad = mask & ~torch.isfinite(obs)
    if bad.any():
        b, k, r = bad.nonzero()[0].tolist()
        raise ValueError(f"{name} has a NaN or inf observed entry (image {b}, channel {k}, region {r})")
    return mask


def _as_vector(x, n: int, like: Tensor, name: str, what: str, positive: bool) -> Tensor:
    if isinstance(x, Tensor):
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"{name} must be a real scalar or a real tensor of shape ({n},) ({what}), got dtype {x.dtype}")
    elif isinstance(x, bool) or not isinstance(x, (numbers.Real, list, tuple)):
        raise TypeError(f"{name} must be a real scalar or a tensor of shape ({n},) ({what}), got "
                        f"{type(x).__name__} {x!r}")
    try:
        t = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a real scalar or a tensor of shape ({n},) ({what}): {err}") from None
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},) ({what}), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    if positive and (t <= 0).any():
        raise ValueError(f"{name} must be positive, got {t.tolist()}")
    return t


def as_batch(x, B: int, like: Tensor, name: str, positive: bool = False) -> Tensor:
    """A scalar or (B,) per-image parameter as a (B,) tensor of like's dtype."""
    return _as_vector(x, B, like, name, "one per image", positive)


def as_channels(x, K: int, like: Tensor, name: str, positive: bool = False) -> Tensor:
    """A scalar or (K,) per-channel parameter as a (K,) tensor of like's dtype."""
    return _as_vector(x, K, like, name, "one per channel", positive)


def all_finite(x: Tensor) -> bool:
    """True when every entry is finite: one reduction (a NaN or inf anywhere makes the sum non-finite);
    the elementwise check runs only when the sum is not finite (overflow or a bad entry)."""
    if x.numel() == 0:
        return True
    if torch.isfinite(x.sum()).item():
        return True
    return bool(torch.isfinite(x).all())


def first_non_finite(named: dict) -> str | None:
    """Name of the first tensor in ``named`` holding a NaN or inf, with ONE host sync for all of them
    when they are finite (the common case); None if all are finite."""
    if not named:
        return None
    sums = torch.stack([t.detach().sum().to(torch.float64) for t in named.values()])  # (n,)
    if bool(torch.isfinite(sums).all()):
        return None
    for name, t in named.items():  # a non-finite sum: overflow or a bad entry; look closer
        if not bool(torch.isfinite(t).all()):
            return name
    return None


def check_features(x, name: str = "region_features", finite: bool = True) -> Tensor:
    """Region features (B, R, D): floating point, non-empty, finite."""
    shape = tuple(getattr(x, "shape", ()))
    if isinstance(x, Tensor) and x.is_floating_point() and len(shape) == 3 and 0 in shape:
        raise ValueError(f"{name} has an empty batch (B = 0)" if shape[0] == 0 else
                         f"{name} must have R >= 1 regions and D >= 1 dims, got {shape}")
    return check_values(x, name, "(B, R, D)", 3, finite=finite)


def check_pixels(x, name: str = "region_pixels", finite: bool = True) -> Tensor:
    """Region pixels (B, R, C, h, w): floating point, non-empty, finite."""
    return check_values(x, name, "(B, R, C, h, w)", 5, finite=finite)


def check_values(x, name: str, shape: str, ndim: int, *, finite: bool = True, low: float | None = None) -> Tensor:
    """A floating-point tensor of ``ndim`` dims (``shape`` describes them, e.g. "(B, R, h, w)"), with no
    empty dimension, finite (one reduction) and every entry >= ``low`` when given."""
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
        got = f"dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point tensor of shape {shape}, got {got}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    if 0 in x.shape:
        raise ValueError(f"{name} has an empty dimension: {tuple(x.shape)}")
    if finite and not all_finite(x):
        raise ValueError(f"{name} contains NaN or inf")
    if low is not None and bool((x < low).any()):
        raise ValueError(f"{name} must be >= {low}, got min {float(x.min())}")
    return x


def as_budget(budget, batch: int, device=None, minimum: int | None = 0) -> Tensor:
    """Region-token budget: a non-negative int or an integer tensor of shape () or (B,) -> (B,) long."""
    if isinstance(budget, bool):
        raise TypeError("budget must be an int or an integer LongTensor, got bool")
    if isinstance(budget, Tensor):
        if budget.dtype.is_floating_point or budget.dtype == torch.bool or budget.is_complex():
            raise TypeError(f"budget must be an integer tensor, got dtype {budget.dtype}")
        out = budget.to(device=device, dtype=torch.long)
        if out.dim() == 0:
            out = out.expand(batch)
        if out.shape != (batch,):
            raise ValueError(f"budget must be a scalar or have shape ({batch},), got {tuple(budget.shape)}")
    elif isinstance(budget, int) or (isinstance(budget, float) and budget.is_integer()):
        out = torch.full((batch,), int(budget), dtype=torch.long, device=device)
    else:
        raise TypeError(f"budget must be an int number of tokens or an integer tensor, got "
                        f"{type(budget).__name__} {budget!r}")
    if minimum is not None and bool((out < minimum).any()):
        raise ValueError(f"budget must be >= {minimum}, got {out.tolist()}")
    return out


def check_table(table, num_levels: int) -> None:
    """Utility table (B, R, L): floating, finite except -inf ('forbidden'), level 0 finite."""
    if not isinstance(table, Tensor) or not table.dtype.is_floating_point:
        raise TypeError("table must be a floating-point tensor of shape (B, R, L)")
    if table.dim() != 3:
        raise ValueError(f"table must have shape (B, R, L), got {tuple(table.shape)}")
    B, R, L = table.shape
    if B == 0:
        raise ValueError("table has an empty batch (B = 0)")
    if R == 0:
        raise ValueError("table has no regions (R = 0)")
    if L != num_levels:
        raise ValueError(f"table's last dim ({L}) must equal the number of levels ({num_levels})")
    if torch.isnan(table).any() or torch.isposinf(table).any():
        raise ValueError("table contains NaN or +inf (only -inf, meaning 'forbidden', is allowed)")
    if not torch.isfinite(table[..., 0]).all():
        raise ValueError("table[..., 0] (the zero-token level) must be finite")


def check_generator_or_none(generator, deterministic: bool, name: str = "generator"):
    """Thompson draws need a torch.Generator; deterministic mode needs none (any given is checked too)."""
    if generator is None:
        if not deterministic:
            raise TypeError(f"{name} must be a torch.Generator for Thompson sampling (randomness is always "
                            "passed explicitly); pass deterministic=True for the posterior mean")
        return None
    return check_generator(generator, name)


def check_region_index(region_index, B: int, R: int) -> Tensor:
    """Region indices (B, M) integer tensor with values in [0, R)."""
    if not isinstance(region_index, Tensor) or region_index.dtype not in (torch.long, torch.int32, torch.int64):
        raise TypeError("region_index must be an integer (long) tensor of shape (B, M)")
    if region_index.dim() != 2 or region_index.shape[0] != B:
        raise ValueError(f"region_index must have shape ({B}, M), got {tuple(region_index.shape)}")
    if region_index.numel() and ((region_index < 0) | (region_index >= R)).any():
        raise ValueError(f"region_index must lie in [0, {R}), got values outside")
    return region_index.long()

