r"""Normal prior on a mean, normal observations with known noise scale."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch.distributions import Normal

from ._base import ConjugateFamily, prior_param
from ._validate import (POSITIVE, POSITIVE_OR_INF, REAL, Domain, broadcast_batch, check_posterior_scale, prepare_data,
                        prepare_params)

__all__ = ["NormalNormal"]

# a proper prior scale; the message points at the flat limit
_PROPER_SCALE = Domain(0.0, False, False, "finite and > 0 (scale=inf, a flat prior, needs allow_improper=True)")


@dataclass(frozen=True, eq=False, repr=False)
class NormalNormal(ConjugateFamily):
    r"""Normal-Normal conjugate model with known observation noise (batched).

    Model, with observations ``i = 1..N`` along ``dim``::

        mu ~ N(loc, scale^2)
        x_i | mu ~ N(mu, noise_scale^2)          (noise_scale known)

    Posterior, with precisions ``t0 = 1/scale^2`` and ``t = 1/noise_scale^2``::

        mu | x ~ N(loc_N, scale_N^2),  1/scale_N^2 = t0 + N t,  loc_N = (t0 loc + t sum x) / (t0 + N t)

    Log evidence (x is jointly normal with mean ``loc`` and covariance ``noise^2 I + scale^2 11^T``)::

        log p(x) = -N/2 log(2 pi noise^2) - 1/2 log(1 + N scale^2/noise^2) - S / (2 noise^2)
                   - N (xbar - loc)^2 / (2 (noise^2 + N scale^2)),       S = sum (x - xbar)^2

    Predictive of one new observation: ``N(loc, scale^2 + noise_scale^2)``.

    Named priors:

    ====================================  =================  ============================================
    constructor                           prior on mu        note
    ====================================  =================  ============================================
    ``NormalNormal(loc, scale, noise)``   N(loc, scale^2)    informative
    ``.weakly_informative(noise)``        N(0, 100 noise^2)  worth 1/100 of an observation; proper
    ``.uniform(noise)``                   flat on R          scale = inf; IMPROPER
    ``.jeffreys(noise)``                  flat on R          same as uniform (Jeffreys for a location);
                                                             IMPROPER; posterior N(xbar, noise^2 / N)
    ====================================  =================  ============================================

    Improper priors are the ``scale = inf`` limit (``allow_improper=True``); ``log_evidence`` raises
    ``ValueError`` for them and ``dist`` / ``predictive`` raise until at least one observation is in.

    Args:
        loc: prior mean of mu.
        scale: prior standard deviation of mu (> 0; +inf only with ``allow_improper``).
        noise_scale: known standard deviation of each observation (> 0).
        allow_improper: admit ``scale = inf``.
    """

    loc: Tensor
    scale: Tensor
    noise_scale: Tensor
    allow_improper: bool = False

    _fields = ("loc", "scale", "noise_scale")

    def __post_init__(self):
        p = prepare_params({"loc": self.loc, "scale": self.scale, "noise_scale": self.noise_scale},
                           {"loc": REAL, "scale": POSITIVE_OR_INF if self.allow_improper else _PROPER_SCALE,
                            "noise_scale": POSITIVE})
        for k, v in p.items():
            object.__setattr__(self, k, v)

    # ----- named priors -------------------------------------------------------------------------
    @classmethod
    def jeffreys(cls, noise_scale, *, batch_shape: Sequence[int] = (), dtype=None, device=None) -> "NormalNormal":
        """Jeffreys prior for a location: flat on mu (scale = inf, improper)."""
        s = prior_param(noise_scale, "noise_scale", POSITIVE, batch_shape, dtype, device)
        return cls(torch.zeros_like(s), torch.full_like(s, math.inf), s, allow_improper=True)

    @classmethod
    def uniform(cls, noise_scale, *, batch_shape: Sequence[int] = (), dtype=None, device=None) -> "NormalNormal":
        """Flat prior on mu (scale = inf, improper); identical to :meth:`jeffreys`."""
        return cls.jeffreys(noise_scale, batch_shape=batch_shape, dtype=dtype, device=device)

    @classmethod
    def weakly_informative(cls, noise_scale, *, loc=0.0, prior_count: float = 0.01, batch_shape: Sequence[int] = (),
                           dtype=None, device=None) -> "NormalNormal":
        """N(loc, noise_scale^2 / prior_count): the prior is worth ``prior_count`` observations (default 1/100)."""
        s = prior_param(noise_scale, "noise_scale", POSITIVE, batch_shape, dtype, device)
        c = prior_param(prior_count, "prior_count", POSITIVE, batch_shape, s.dtype, s.device)
        m = prior_param(loc, "loc", REAL, batch_shape, s.dtype, s.device)
        return cls(m, s / torch.sqrt(c), s)

    # ----- inference ----------------------------------------------------------------------------
    @property
    def is_proper(self) -> Tensor:
        """Boolean (*batch): whether the prior on mu is proper (finite scale)."""
        return torch.isfinite(self.scale)

    def _stats(self, x, dim: int, validate: bool):
        x = prepare_data(x, "x", dtype=self.dtype, device=self.device, dim=dim, validate=validate)  # (*b, N)
        batch = broadcast_batch(self.batch_shape, x.shape[:-1], "x")
        return x, batch

    def update(self, x, *, dim: int = -1, validate: bool = True) -> "NormalNormal":
        """Posterior of mu after observations ``x`` (*batch, N) along ``dim``.

        Computed in float64 in weight form, w = N scale^2 / (noise^2 + N scale^2) = 1 / (1 + r) with
        r = (noise / scale)^2 / N, loc_N = loc + w (xbar - loc), scale_N = noise sqrt(w / N): no prior
        precision 1 / scale^2 is formed, so a float32 prior scale of 1e-20 (1/scale^2 overflows) or a
        flat prior (scale = inf, r = 0) stays exact. A posterior scale the family's dtype cannot hold
        (it underflows to 0) raises ValueError when ``validate``.
        """
        x, batch = self._stats(x, dim, validate)
        n = x.shape[-1]
        if n == 0:
            return self._replace(loc=self.loc.expand(batch), scale=self.scale.expand(batch),
                                 noise_scale=self.noise_scale.expand(batch))
        loc, scale, noise = (t.double() for t in (self.loc, self.scale, self.noise_scale))  # (*batch)
        w = 1.0 / (1.0 + (noise / scale).square() / n)  # (*batch) weight of the data mean
        loc_n = loc + w * (x.double().mean(-1) - loc)  # (*b)
        scale_n = noise * torch.sqrt(w / n)  # (*batch)
        out_loc, out_scale = loc_n.to(self.dtype), scale_n.to(self.dtype)
        if validate:
            check_posterior_scale(out_scale, "scale", self.dtype)
        return self._replace(loc=out_loc.expand(batch), scale=out_scale.expand(batch),
                             noise_scale=self.noise_scale.expand(batch))

    def log_evidence(self, x, *, dim: int = -1, validate: bool = True) -> Tensor:
        """Exact log marginal likelihood of ``x`` (*batch); raises ValueError for an improper prior.
        Computed in float64 with q = N scale^2 / noise^2 (no overflow of scale^2 in float32)."""
        self._require_proper("log_evidence")
        x, batch = self._stats(x, dim, validate)
        n = x.shape[-1]
        if n == 0:
            return torch.zeros(batch, dtype=self.dtype, device=self.device)
        x = x.double()
        loc, noise = self.loc.double(), self.noise_scale.double()  # (*batch)
        q = n * (self.scale.double() / noise).square()  # (*batch) N scale^2 / noise^2
        xbar = x.mean(-1)  # (*b)
        ss = ((x - xbar.unsqueeze(-1)) / noise.unsqueeze(-1)).square().sum(-1)  # (*b) S / noise^2
        out = (-0.5 * n * (math.log(2 * math.pi) + 2 * torch.log(noise)) - 0.5 * torch.log1p(q) - 0.5 * ss
               - 0.5 * n * ((xbar - loc) / noise).square() / (1 + q))
        return out.to(self.dtype).expand(batch)

    def dist(self) -> Normal:
        """The Normal distribution of mu (raises ValueError when improper)."""
        self._require_proper("dist")
        return Normal(self.loc, self.scale)

    def predictive(self) -> Normal:
        """Predictive of one new observation: N(loc, scale^2 + noise_scale^2)."""
        self._require_proper("predictive")
        return Normal(self.loc, torch.sqrt(self.scale.square() + self.noise_scale.square()))
