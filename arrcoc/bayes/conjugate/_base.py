"""Behaviour shared by every conjugate family: shapes, device/dtype moves, propriety checks."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import Tensor

from ._validate import Domain, prepare_params

__all__ = ["ConjugateFamily", "prior_kwargs", "prior_param"]


def prior_kwargs(batch_shape: Sequence[int], dtype, device) -> dict:
    """Keyword arguments for ``torch.full`` building the constant parameters of a named prior."""
    return dict(size=tuple(batch_shape), dtype=dtype or torch.get_default_dtype(), device=device)


def prior_param(value, name: str, domain: Domain, batch_shape: Sequence[int], dtype, device) -> Tensor:
    """A user-set hyperparameter of a named prior, checked, cast and broadcast to ``batch_shape``.

    A tensor ``value`` keeps its dtype and device unless ``dtype`` / ``device`` are given.
    """
    t = prepare_params({name: value}, {name: domain})[name]
    if not isinstance(value, Tensor):
        t = t.to(dtype=dtype or torch.get_default_dtype(), device=device)
    else:
        t = t.to(dtype=dtype or t.dtype, device=device or t.device)
    try:
        shape = torch.broadcast_shapes(t.shape, torch.Size(batch_shape))
    except RuntimeError:
        raise ValueError(f"{name} with shape {tuple(t.shape)} does not broadcast with batch_shape "
                         f"{tuple(batch_shape)}") from None
    return t.expand(shape)


class ConjugateFamily:
    """Mixin for the frozen dataclasses of :mod:`arrcoc.bayes.conjugate`.

    Subclasses list their tensor fields in ``_fields`` and the number of trailing event dimensions
    of each in ``_event_dims`` (1 for a Dirichlet concentration vector, else 0), and implement
    ``is_proper``.
    """

    _fields: ClassVar[tuple[str, ...]] = ()
    _event_dims: ClassVar[dict[str, int]] = {}

    @classmethod
    def _trusted(cls, **fields):
        """Build an instance from already-checked, already-broadcast tensors (no validation, no sync)."""
        obj = object.__new__(cls)
        for k, v in fields.items():
            object.__setattr__(obj, k, v)
        return obj

    def _tensors(self) -> dict[str, Tensor]:
        return {k: getattr(self, k) for k in self._fields}

    def _replace(self, **fields):
        kw = self._tensors()
        kw["allow_improper"] = self.allow_improper
        kw.update(fields)
        return type(self)._trusted(**kw)

    @property
    def batch_shape(self) -> torch.Size:
        """Common batch shape of the parameters (event dimensions excluded)."""
        k = self._fields[0]
        t = getattr(self, k)
        return t.shape[: t.dim() - self._event_dims.get(k, 0)]

    @property
    def dtype(self) -> torch.dtype:
        return getattr(self, self._fields[0]).dtype

    @property
    def device(self) -> torch.device:
        return getattr(self, self._fields[0]).device

    def to(self, device=None, dtype=None):
        """The same prior/posterior with its tensors moved to ``device`` and/or cast to ``dtype``."""
        return self._replace(**{k: t.to(device=device, dtype=dtype) for k, t in self._tensors().items()})

    def expand(self, batch_shape: Sequence[int]):
        """The same prior/posterior broadcast to a larger ``batch_shape`` (views, no copy)."""
        batch_shape = torch.Size(batch_shape)
        try:
            ok = torch.broadcast_shapes(self.batch_shape, batch_shape) == batch_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"batch_shape {tuple(batch_shape)} is not a broadcast of the current batch shape "
                             f"{tuple(self.batch_shape)}")
        return self._replace(**{k: t.expand(batch_shape + t.shape[t.dim() - self._event_dims.get(k, 0):])
                                for k, t in self._tensors().items()})

    @property
    def is_proper(self) -> Tensor:  # pragma: no cover - every family overrides
        raise NotImplementedError

    def _require_proper(self, what: str) -> None:
        if not bool(self.is_proper.all()):
            raise ValueError(
                f"{what} is undefined for an improper {type(self).__name__} (e.g. an improper Jeffreys or "
                f"uniform prior, or a posterior from too little data): {self!r}")

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields)
        return f"{type(self).__name__}({body}, allow_improper={self.allow_improper})"

