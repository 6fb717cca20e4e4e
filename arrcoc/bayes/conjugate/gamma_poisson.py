r"""Gamma prior on a Poisson rate, Poisson count observations."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch.distributions import Gamma, NegativeBinomial

from ._base import ConjugateFamily, prior_kwargs, prior_param
from ._validate import NONNEGATIVE, POSITIVE, broadcast_batch, prepare_data, prepare_params

__all__ = ["GammaPoisson"]


@dataclass(frozen=True, eq=False, repr=False)
class GammaPoisson(ConjugateFamily):
    r"""Gamma-Poisson conjugate model (batched).

    Model, with observations ``i = 1..N`` along ``dim``::

        lambda ~ Gamma(concentration a, rate b)        p(lambda) = b^a lambda^(a-1) e^(-b lambda) / Gamma(a)
        x_i | lambda ~ Poisson(lambda)

    Posterior: ``lambda | x ~ Gamma(a + sum_i x_i, b + N)``.

    Log evidence (exact probability of the counts)::

        log p(x) = -sum_i log x_i! + a log b - log Gamma(a) + log Gamma(a + S) - (a + S) log(b + N),  S = sum x

    Predictive of one new count: negative binomial with ``total_count = a`` and success probability
    ``1 / (b + 1)`` (``torch.distributions.NegativeBinomial(a, logits=-log b)``), i.e.
    ``p(x*) = Gamma(x* + a) / (x*! Gamma(a)) (b / (b + 1))^a (1 / (b + 1))^x*``.

    Named priors:

    ===============================  =====================  ===========================================
    constructor                      prior                  note
    ===============================  =====================  ===========================================
    ``GammaPoisson(a, b)``           Gamma(a, b)            informative; a, b > 0
    ``.weakly_informative(m)``       Gamma(1, 1/m)          Exponential with mean m (max-entropy on
                                                            (0, inf) for that mean); proper
    ``.uniform()``                   Gamma(1, 0)            flat on lambda > 0; IMPROPER
    ``.jeffreys()``                  Gamma(1/2, 0)          p(lambda) ~ lambda^(-1/2); IMPROPER;
                                                            posterior Gamma(sum x + 1/2, N)
    ===============================  =====================  ===========================================

    Improper priors are stored as the rate-0 limit (``allow_improper=True``): updates are exact, but
    ``log_evidence`` raises ``ValueError`` (the evidence of an improper prior is defined only up to an
    arbitrary constant), and ``dist`` / ``predictive`` raise until the posterior is proper (N >= 1, and
    for a zero concentration at least one positive count).

    Args:
        concentration: Gamma shape a; the batch shape is the broadcast with ``rate``.
        rate: Gamma rate b (inverse scale).
        allow_improper: admit ``a = 0`` or ``b = 0`` (improper limits).
    """

    concentration: Tensor
    rate: Tensor
    allow_improper: bool = False

    _fields = ("concentration", "rate")

    def __post_init__(self):
        dom = NONNEGATIVE if self.allow_improper else POSITIVE
        p = prepare_params({"concentration": self.concentration, "rate": self.rate},
                           {"concentration": dom, "rate": dom})
        for k, v in p.items():
            object.__setattr__(self, k, v)

    # ----- named priors -------------------------------------------------------------------------
    @classmethod
    def jeffreys(cls, *, batch_shape: Sequence[int] = (), dtype=None, device=None) -> "GammaPoisson":
        """Jeffreys prior p(lambda) ~ lambda^(-1/2), stored as Gamma(1/2, 0) (improper)."""
        kw = prior_kwargs(batch_shape, dtype, device)
        return cls(torch.full(fill_value=0.5, **kw), torch.zeros(**kw), allow_improper=True)

    @classmethod
    def uniform(cls, *, batch_shape: Sequence[int] = (), dtype=None, device=None) -> "GammaPoisson":
        """Flat prior on lambda > 0, stored as Gamma(1, 0) (improper)."""
        kw = prior_kwargs(batch_shape, dtype, device)
        return cls(torch.ones(**kw), torch.zeros(**kw), allow_improper=True)

    @classmethod
    def weakly_informative(cls, prior_mean=1.0, *, batch_shape: Sequence[int] = (), dtype=None,
                           device=None) -> "GammaPoisson":
        """Exponential prior with mean ``prior_mean``: Gamma(1, 1 / prior_mean) (proper)."""
        m = prior_param(prior_mean, "prior_mean", POSITIVE, batch_shape, dtype, device)
        return cls(torch.ones_like(m), 1.0 / m)

    # ----- inference ----------------------------------------------------------------------------
    @property
    def is_proper(self) -> Tensor:
        """Boolean (*batch): whether Gamma(concentration, rate) is proper there."""
        return (self.concentration > 0) & (self.rate > 0)

    def _stats(self, counts, dim: int, validate: bool):
        x = prepare_data(counts, "counts", dtype=self.dtype, device=self.device, dim=dim,
                         integer=True, nonnegative=True, validate=validate)  # (*b, N)
        batch = broadcast_batch(self.batch_shape, x.shape[:-1], "counts")
        return x, batch

    def update(self, counts, *, dim: int = -1, validate: bool = True) -> "GammaPoisson":
        """Posterior after Poisson ``counts`` (*batch, N) observed along ``dim``."""
        x, batch = self._stats(counts, dim, validate)
        n = x.shape[-1]
        return self._replace(concentration=(self.concentration + x.sum(-1)).expand(batch),
                             rate=(self.rate + n).expand(batch))

    def log_evidence(self, counts, *, dim: int = -1, validate: bool = True) -> Tensor:
        """Exact log marginal likelihood of ``counts`` (*batch); raises ValueError for an improper prior."""
        self._require_proper("log_evidence")
        x, batch = self._stats(counts, dim, validate)
        a, b = self.concentration, self.rate
        s = x.sum(-1)  # (*b)
        n = x.shape[-1]
        out = (-torch.lgamma(x + 1).sum(-1) + a * torch.log(b) - torch.lgamma(a)
               + torch.lgamma(a + s) - (a + s) * torch.log(b + n))
        return out.expand(batch)

    def dist(self) -> Gamma:
        """The Gamma distribution of lambda (raises ValueError when improper)."""
        self._require_proper("dist")
        return Gamma(self.concentration, self.rate)

    def predictive(self) -> NegativeBinomial:
        """Predictive of one new count: NegativeBinomial(total_count=a, probs=1/(b+1))."""
        self._require_proper("predictive")
        return NegativeBinomial(self.concentration, logits=-torch.log(self.rate))
