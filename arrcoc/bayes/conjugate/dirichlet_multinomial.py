r"""Dirichlet prior on category probabilities, multinomial count observations."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch.distributions import Dirichlet

from ._base import ConjugateFamily, prior_kwargs
from ._validate import NONNEGATIVE, POSITIVE, broadcast_batch, prepare_count, prepare_data, prepare_params
from .distributions import DirichletMultinomialDistribution

__all__ = ["DirichletMultinomial"]


def _log_mvbeta(alpha: Tensor) -> Tensor:
    """log B(alpha) = sum_k log Gamma(alpha_k) - log Gamma(sum_k alpha_k), over the last dim."""
    return torch.lgamma(alpha).sum(-1) - torch.lgamma(alpha.sum(-1))


@dataclass(frozen=True, eq=False, repr=False)
class DirichletMultinomial(ConjugateFamily):
    r"""Dirichlet-Multinomial conjugate model (batched).

    Model, with observations ``i = 1..N`` along ``dim`` (default -2) and categories ``k = 1..K`` last::

        p ~ Dirichlet(alpha)                         alpha: (*batch, K)
        x_i | p ~ Multinomial(n_i = sum_k x_ik, p)   counts: (*batch, N, K)

    Posterior: ``p | x ~ Dirichlet(alpha + sum_i x_i)``.

    Log evidence (multinomial coefficients included, so it is the exact probability of the counts)::

        log p(x) = sum_i [log n_i! - sum_k log x_ik!] + log B(alpha + sum_i x_i) - log B(alpha),
        log B(a) = sum_k log Gamma(a_k) - log Gamma(sum_k a_k)

    Predictive of the category counts of ``n*`` new draws: ``DirichletMultinomial(n*, alpha)``
    (a :class:`DirichletMultinomialDistribution`).

    Named priors (all proper):

    ====================================  ==================  ======================================
    constructor                           prior               note
    ====================================  ==================  ======================================
    ``DirichletMultinomial(alpha)``       Dirichlet(alpha)    informative; alpha > 0
    ``.weakly_informative(K)``            Dirichlet(2, ...)   keeps probabilities off 0; = Beta(2, 2)
                                                              for K = 2
    ``.uniform(K)``                       Dirichlet(1, ...)   flat on the simplex
    ``.jeffreys(K)``                      Dirichlet(1/2,...)  Jeffreys; posterior Dir(counts + 1/2)
    ====================================  ==================  ======================================

    ``allow_improper=True`` admits zero concentrations (Haldane-type limits); evidence, ``dist`` and
    ``predictive`` then raise ``ValueError`` until every concentration is positive.

    Args:
        concentration: alpha, shape (*batch, K) with K >= 2.
        allow_improper: admit zero concentrations.
    """

    concentration: Tensor
    allow_improper: bool = False

    _fields = ("concentration",)
    _event_dims = {"concentration": 1}

    def __post_init__(self):
        dom = NONNEGATIVE if self.allow_improper else POSITIVE
        c = prepare_params({"concentration": self.concentration}, {"concentration": dom},
                           event_dims={"concentration": 1})["concentration"]
        if c.shape[-1] < 2:
            raise ValueError(f"concentration must have K >= 2 categories in its last dimension, "
                             f"got shape {tuple(c.shape)}")
        object.__setattr__(self, "concentration", c)

    # ----- named priors -------------------------------------------------------------------------
    @classmethod
    def _symmetric(cls, value: float, num_categories: int, batch_shape, dtype, device) -> "DirichletMultinomial":
        if not isinstance(num_categories, int) or isinstance(num_categories, bool) or num_categories < 2:
            raise ValueError(f"num_categories must be an int >= 2, got {num_categories!r}")
        kw = prior_kwargs(tuple(batch_shape) + (num_categories,), dtype, device)
        return cls(torch.full(fill_value=value, **kw))

    @classmethod
    def jeffreys(cls, num_categories: int, *, batch_shape: Sequence[int] = (), dtype=None,
                 device=None) -> "DirichletMultinomial":
        """Jeffreys prior Dirichlet(1/2, ..., 1/2) (proper)."""
        return cls._symmetric(0.5, num_categories, batch_shape, dtype, device)

    @classmethod
    def uniform(cls, num_categories: int, *, batch_shape: Sequence[int] = (), dtype=None,
                device=None) -> "DirichletMultinomial":
        """Flat prior Dirichlet(1, ..., 1) on the simplex (proper)."""
        return cls._symmetric(1.0, num_categories, batch_shape, dtype, device)

    @classmethod
    def weakly_informative(cls, num_categories: int, *, batch_shape: Sequence[int] = (), dtype=None,
                           device=None) -> "DirichletMultinomial":
        """Dirichlet(2, ..., 2): one extra pseudo-count per category over the flat prior (proper)."""
        return cls._symmetric(2.0, num_categories, batch_shape, dtype, device)

    # ----- inference ----------------------------------------------------------------------------
    @property
    def num_categories(self) -> int:
        return self.concentration.shape[-1]

    @property
    def is_proper(self) -> Tensor:
        """Boolean (*batch): whether Dirichlet(concentration) is proper (all alpha_k > 0)."""
        return (self.concentration > 0).all(-1)

    def _stats(self, counts, dim: int, validate: bool):
        x = prepare_data(counts, "counts", dtype=self.dtype, device=self.device, dim=dim, event_dims=1,
                         integer=True, nonnegative=True, validate=validate)  # (*b, N, K)
        if x.shape[-1] != self.num_categories:
            raise ValueError(f"shape mismatch: counts has {x.shape[-1]} categories in its last dimension, "
                             f"the concentration has {self.num_categories}")
        batch = broadcast_batch(self.batch_shape, x.shape[:-2], "counts")
        return x, batch

    def update(self, counts, *, dim: int = -2, validate: bool = True) -> "DirichletMultinomial":
        """Posterior after category ``counts`` (*batch, N, K), observations along ``dim``."""
        x, batch = self._stats(counts, dim, validate)
        post = self.concentration + x.sum(-2)  # (*batch, K)
        return self._replace(concentration=post.expand(batch + post.shape[-1:]))

    def log_evidence(self, counts, *, dim: int = -2, validate: bool = True) -> Tensor:
        """Exact log marginal likelihood of ``counts`` (*batch); raises ValueError for an improper prior."""
        self._require_proper("log_evidence")
        x, batch = self._stats(counts, dim, validate)
        log_coef = (torch.lgamma(x.sum(-1) + 1) - torch.lgamma(x + 1).sum(-1)).sum(-1)  # (*b)
        alpha = self.concentration
        out = log_coef + _log_mvbeta(alpha + x.sum(-2)) - _log_mvbeta(alpha)
        return out.expand(batch)

    def dist(self) -> Dirichlet:
        """The Dirichlet distribution of p (raises ValueError when improper)."""
        self._require_proper("dist")
        return Dirichlet(self.concentration)

    def predictive(self, total_count=1) -> DirichletMultinomialDistribution:
        """Predictive of the counts of ``total_count`` new draws: DirichletMultinomial(total_count, alpha)."""
        self._require_proper("predictive")
        n = prepare_count(total_count, "total_count", dtype=self.dtype, device=self.device)
        return DirichletMultinomialDistribution(n, self.concentration)
