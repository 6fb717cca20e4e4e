r"""Beta prior on a success probability, binomial observations."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch.distributions import Beta

from ._base import ConjugateFamily, prior_kwargs
from ._validate import NONNEGATIVE, POSITIVE, broadcast_batch, prepare_count, prepare_data, prepare_params
from .distributions import BetaBinomialDistribution, _log_beta

__all__ = ["BetaBinomial"]


@dataclass(frozen=True, eq=False, repr=False)
class BetaBinomial(ConjugateFamily):
    r"""Beta-Binomial conjugate model (batched).

    Model, with observations ``i = 1..N`` along ``dim``::

        p ~ Beta(alpha, beta)
        k_i | p ~ Binomial(n_i, p)

    Posterior: ``p | k ~ Beta(alpha + sum_i k_i, beta + sum_i (n_i - k_i))``.

    Log evidence (the binomial coefficients included, so it is the exact probability of the counts)::

        log p(k) = sum_i log C(n_i, k_i) + log B(alpha + sum k, beta + sum (n - k)) - log B(alpha, beta)

    Predictive of ``k*`` successes in ``n*`` new trials: ``BetaBinomial(n*, alpha, beta)``
    (a :class:`BetaBinomialDistribution`).

    Named priors (all proper, so every one has a finite evidence):

    ============================  ===================  =========================================
    constructor                   prior                note
    ============================  ===================  =========================================
    ``BetaBinomial(a, b)``        Beta(a, b)           informative; a, b > 0
    ``.weakly_informative()``     Beta(2, 2)           mild pull towards 1/2, away from 0 and 1
    ``.uniform()``                Beta(1, 1)           flat on p (Bayes-Laplace)
    ``.jeffreys()``               Beta(1/2, 1/2)       Jeffreys; posterior Beta(k + 1/2, n - k + 1/2)
    ============================  ===================  =========================================

    ``allow_improper=True`` admits the limit ``alpha = 0`` or ``beta = 0`` (e.g. Haldane's Beta(0, 0));
    evidence, ``dist`` and ``predictive`` then raise ``ValueError`` until the data make it proper.

    Args:
        alpha: Beta shape for successes, shape broadcastable with ``beta``; the batch shape is the broadcast.
        beta: Beta shape for failures.
        allow_improper: admit zero shapes (improper priors).
    """

    alpha: Tensor
    beta: Tensor
    allow_improper: bool = False

    _fields = ("alpha", "beta")

    def __post_init__(self):
        dom = NONNEGATIVE if self.allow_improper else POSITIVE
        p = prepare_params({"alpha": self.alpha, "beta": self.beta}, {"alpha": dom, "beta": dom})
        for k, v in p.items():
            object.__setattr__(self, k, v)

    # ----- named priors -------------------------------------------------------------------------
    @classmethod
    def jeffreys(cls, *, batch_shape: Sequence[int] = (), dtype=None, device=None) -> "BetaBinomial":
        """Jeffreys prior Beta(1/2, 1/2) (proper)."""
        kw = prior_kwargs(batch_shape, dtype, device)
        return cls(torch.full(fill_value=0.5, **kw), torch.full(fill_value=0.5, **kw))

    @classmethod
    def uniform(cls, *, batch_shape: Sequence[int] = (), dtype=None, device=None) -> "BetaBinomial":
        """Flat prior Beta(1, 1) on p (proper)."""
        kw = prior_kwargs(batch_shape, dtype, device)
        return cls(torch.full(fill_value=1.0, **kw), torch.full(fill_value=1.0, **kw))

    @classmethod
    def weakly_informative(cls, *, batch_shape: Sequence[int] = (), dtype=None, device=None) -> "BetaBinomial":
        """Beta(2, 2): worth 2 successes and 2 failures, keeps estimates off 0 and 1 (proper)."""
        kw = prior_kwargs(batch_shape, dtype, device)
        return cls(torch.full(fill_value=2.0, **kw), torch.full(fill_value=2.0, **kw))

    # ----- inference ----------------------------------------------------------------------------
    @property
    def is_proper(self) -> Tensor:
        """Boolean (*batch): whether Beta(alpha, beta) is a proper distribution there."""
        return (self.alpha > 0) & (self.beta > 0)

    def _stats(self, successes, trials, dim: int, validate: bool):
        s_raw = successes if isinstance(successes, Tensor) else torch.as_tensor(successes, device=self.device)
        t_raw = trials if isinstance(trials, Tensor) else torch.as_tensor(trials, device=self.device)
        try:
            ok = torch.broadcast_shapes(s_raw.shape, t_raw.shape) == s_raw.shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"shape mismatch: trials with shape {tuple(t_raw.shape)} must broadcast to successes "
                             f"with shape {tuple(s_raw.shape)}")
        k = prepare_data(s_raw, "successes", dtype=self.dtype, device=self.device, dim=dim,
                         integer=True, nonnegative=True, validate=validate)  # (*b, N)
        n = prepare_data(t_raw.expand(s_raw.shape), "trials", dtype=self.dtype, device=self.device, dim=dim,
                         integer=True, nonnegative=True, validate=validate)  # (*b, N)
        if validate and (k > n).any():
            raise ValueError("successes must not exceed trials")
        batch = broadcast_batch(self.batch_shape, k.shape[:-1], "successes")
        return k, n, batch

    def update(self, successes, trials, *, dim: int = -1, validate: bool = True) -> "BetaBinomial":
        """Posterior after ``successes`` out of ``trials`` per observation along ``dim`` (shape (*batch, N)).

        ``trials`` is an int or a tensor broadcastable to ``successes``. ``validate=False`` skips the value
        checks (no host sync), for hot loops on trusted data.
        """
        k, n, batch = self._stats(successes, trials, dim, validate)
        sk = k.sum(-1)  # (*b)
        sf = (n - k).sum(-1)  # (*b)
        return self._replace(alpha=(self.alpha + sk).expand(batch), beta=(self.beta + sf).expand(batch))

    def log_evidence(self, successes, trials, *, dim: int = -1, validate: bool = True) -> Tensor:
        """Exact log marginal likelihood ``log p(k | n)`` (*batch); raises ValueError for an improper prior."""
        self._require_proper("log_evidence")
        k, n, batch = self._stats(successes, trials, dim, validate)
        log_choose = (torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)).sum(-1)  # (*b)
        a_post, b_post = self.alpha + k.sum(-1), self.beta + (n - k).sum(-1)  # (*batch)
        return (log_choose + _log_beta(a_post, b_post) - _log_beta(self.alpha, self.beta)).expand(batch)

    def dist(self) -> Beta:
        """The Beta distribution of p (raises ValueError when improper)."""
        self._require_proper("dist")
        return Beta(self.alpha, self.beta)

    def predictive(self, trials=1) -> BetaBinomialDistribution:
        """Predictive of the successes in ``trials`` new trials: BetaBinomial(trials, alpha, beta)."""
        self._require_proper("predictive")
        n = prepare_count(trials, "trials", dtype=self.dtype, device=self.device)
        return BetaBinomialDistribution(n, self.alpha, self.beta)
