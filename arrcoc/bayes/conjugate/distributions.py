r"""Small ``torch.distributions`` subclasses that torch lacks, used as conjugate predictives and posteriors.

* :class:`BetaBinomialDistribution` — k ~ Binomial(n, p), p ~ Beta(a, b):
  ``log p(k) = log C(n, k) + log B(k + a, n - k + b) - log B(a, b)``.
* :class:`DirichletMultinomialDistribution` — x ~ Multinomial(n, p), p ~ Dirichlet(alpha):
  ``log p(x) = log n! - sum_k log x_k! + log Gamma(A) - log Gamma(n + A) + sum_k [log Gamma(x_k + alpha_k) - log Gamma(alpha_k)]``
  with ``A = sum_k alpha_k``.
* :class:`NormalInverseGammaDistribution` — the joint law of (mu, sigma^2) with
  sigma^2 ~ InvGamma(alpha, beta) and mu | sigma^2 ~ N(loc, sigma^2 / kappa); a value is the pair
  stacked in the last dimension, ``value[..., 0] = mu`` and ``value[..., 1] = sigma^2`` (event shape (2,)).

Each ``sample`` / ``rsample`` takes an optional ``generator`` (a ``torch.Generator`` on the parameters'
device) so seeded runs are reproducible without touching the global RNG.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, InverseGamma, StudentT, constraints
from torch.distributions.utils import broadcast_all

__all__ = ["BetaBinomialDistribution", "DirichletMultinomialDistribution", "NormalInverseGammaDistribution"]


def _log_beta(a: Tensor, b: Tensor) -> Tensor:
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def _sample_beta(a: Tensor, b: Tensor, generator) -> Tensor:
    """Beta(a, b) draws through torch's Dirichlet sampler (stable for small concentrations)."""
    return torch._sample_dirichlet(torch.stack([a, b], -1), generator=generator)[..., 0]



def _params(**values) -> list[Tensor]:
    """Parameters as tensors broadcast together; a non-numeric one raises TypeError naming it."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (Tensor, int, float)):
            raise TypeError(f"{name} must be a number or a tensor, got {type(v).__name__}")
        if isinstance(v, Tensor) and (v.is_complex() or v.dtype == torch.bool):
            raise TypeError(f"{name} must be a real floating tensor, got dtype {v.dtype}")
    return list(broadcast_all(*values.values()))

class _MultinomialSupport(constraints.Constraint):
    """Non-negative integer vectors summing to ``total_count``."""

    is_discrete = True
    event_dim = 1

    def __init__(self, total_count: Tensor):
        self.total_count = total_count
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        ok = (value >= 0) & (value == torch.round(value))
        return ok.all(-1) & (value.sum(-1) == self.total_count)


class _MeanVarianceSupport(constraints.Constraint):
    """Pairs (mu, sigma^2) with real mu and positive sigma^2, stacked in the last dimension."""

    event_dim = 1

    def check(self, value: Tensor) -> Tensor:
        return torch.isfinite(value[..., 0]) & (value[..., 1] > 0) & torch.isfinite(value[..., 1])


class BetaBinomialDistribution(Distribution):
    r"""Beta-binomial: number of successes in ``total_count`` trials whose success probability is Beta.

    Args:
        total_count: number of trials n (non-negative integers).
        concentration1: Beta's first shape a (weight of successes), > 0.
        concentration0: Beta's second shape b (weight of failures), > 0.

    Mean ``n a / (a + b)``; variance ``n a b (a + b + n) / ((a + b)^2 (a + b + 1))``.
    """

    arg_constraints = {"total_count": constraints.nonnegative_integer,
                       "concentration1": constraints.positive, "concentration0": constraints.positive}
    has_enumerate_support = True

    def __init__(self, total_count, concentration1, concentration0, validate_args=None):
        self.total_count, self.concentration1, self.concentration0 = _params(
            total_count=total_count, concentration1=concentration1, concentration0=concentration0)
        super().__init__(self.concentration1.shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.total_count)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(BetaBinomialDistribution, _instance)
        batch_shape = torch.Size(batch_shape)
        new.total_count = self.total_count.expand(batch_shape)
        new.concentration1 = self.concentration1.expand(batch_shape)
        new.concentration0 = self.concentration0.expand(batch_shape)
        super(BetaBinomialDistribution, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> Tensor:
        a, b, n = self.concentration1, self.concentration0, self.total_count
        return n * a / (a + b)

    @property
    def variance(self) -> Tensor:
        a, b, n = self.concentration1, self.concentration0, self.total_count
        s = a + b
        return n * a * b * (s + n) / (s.square() * (s + 1))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        n, a, b = self.total_count, self.concentration1, self.concentration0
        log_choose = torch.lgamma(n + 1) - torch.lgamma(value + 1) - torch.lgamma(n - value + 1)
        return log_choose + _log_beta(value + a, n - value + b) - _log_beta(a, b)

    def sample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            p = _sample_beta(self.concentration1.expand(shape), self.concentration0.expand(shape), generator)
            return torch.binomial(self.total_count.expand(shape).contiguous(), p, generator=generator)

    def enumerate_support(self, expand: bool = True) -> Tensor:
        n = int(self.total_count.max())
        if not bool((self.total_count == n).all()):
            raise NotImplementedError("enumerate_support needs a homogeneous total_count")
        values = torch.arange(n + 1, dtype=self.concentration1.dtype, device=self.concentration1.device)
        values = values.view((-1,) + (1,) * len(self.batch_shape))
        return values.expand((-1,) + self.batch_shape) if expand else values


class DirichletMultinomialDistribution(Distribution):
    r"""Dirichlet-multinomial: category counts of ``total_count`` draws with Dirichlet category probabilities.

    Args:
        total_count: number of draws n per batch element (non-negative integers), shape broadcastable to
            ``concentration.shape[:-1]``.
        concentration: Dirichlet concentration alpha, shape (*batch, K), > 0.

    Mean ``n alpha / A``; variance ``n p (1 - p) (n + A) / (1 + A)`` with ``p = alpha / A``, ``A = sum alpha``.
    """

    arg_constraints = {"total_count": constraints.nonnegative_integer,
                       "concentration": constraints.independent(constraints.positive, 1)}

    def __init__(self, total_count, concentration, validate_args=None):
        _params(total_count=total_count)
        if not isinstance(concentration, Tensor) or concentration.is_complex() or concentration.dtype == torch.bool:
            raise TypeError(f"concentration must be a real tensor (*batch, K), got {type(concentration).__name__}")
        if concentration.dim() < 1:
            raise ValueError("concentration must have a category dimension (shape (*batch, K))")
        total_count = torch.as_tensor(total_count, dtype=concentration.dtype, device=concentration.device)
        batch_shape = torch.broadcast_shapes(total_count.shape, concentration.shape[:-1])
        self.total_count = total_count.expand(batch_shape)
        self.concentration = concentration.expand(batch_shape + concentration.shape[-1:])
        super().__init__(batch_shape, concentration.shape[-1:], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return _MultinomialSupport(self.total_count)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DirichletMultinomialDistribution, _instance)
        batch_shape = torch.Size(batch_shape)
        new.total_count = self.total_count.expand(batch_shape)
        new.concentration = self.concentration.expand(batch_shape + self.event_shape)
        super(DirichletMultinomialDistribution, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> Tensor:
        return self.total_count.unsqueeze(-1) * self.concentration / self.concentration.sum(-1, keepdim=True)

    @property
    def variance(self) -> Tensor:
        a0 = self.concentration.sum(-1, keepdim=True)
        n = self.total_count.unsqueeze(-1)
        p = self.concentration / a0
        return n * p * (1 - p) * (n + a0) / (1 + a0)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        alpha, n = self.concentration, self.total_count
        a0 = alpha.sum(-1)
        return (torch.lgamma(n + 1) - torch.lgamma(value + 1).sum(-1) + torch.lgamma(a0) - torch.lgamma(n + a0)
                + (torch.lgamma(value + alpha) - torch.lgamma(alpha)).sum(-1))

    def sample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        """Draw p ~ Dirichlet, then the counts by the conditional-binomial method (loop over K only)."""
        shape = self._extended_shape(torch.Size(sample_shape))  # (*S, *B, K)
        with torch.no_grad():
            p = torch._sample_dirichlet(self.concentration.expand(shape).contiguous(), generator=generator)
            remaining = self.total_count.expand(shape[:-1]).clone()  # (*S, *B)
            rest = torch.ones_like(remaining)  # probability mass not yet assigned
            out = torch.zeros(shape, dtype=p.dtype, device=p.device)
            k_last = shape[-1] - 1
            for k in range(k_last):
                q = (p[..., k] / rest).clamp(0.0, 1.0).nan_to_num(0.0)
                x = torch.binomial(remaining, q, generator=generator)
                out[..., k] = x
                remaining = remaining - x
                rest = rest - p[..., k]
            out[..., k_last] = remaining
            return out


class NormalInverseGammaDistribution(Distribution):
    r"""Normal-inverse-gamma law of (mu, sigma^2), stacked in the last dimension of a value.

    ``sigma^2 ~ InvGamma(alpha, beta)`` and ``mu | sigma^2 ~ N(loc, sigma^2 / kappa)``, so

    ``log p(mu, s2) = -0.5 log(2 pi s2 / kappa) - kappa (mu - loc)^2 / (2 s2)
    + alpha log beta - log Gamma(alpha) - (alpha + 1) log s2 - beta / s2``.

    A value has event shape (2,): ``value[..., 0] = mu`` and ``value[..., 1] = sigma^2``.
    Marginals: ``mu ~ StudentT(2 alpha, loc, sqrt(beta / (alpha kappa)))`` (:meth:`marginal_mu`) and
    ``sigma^2 ~ InvGamma(alpha, beta)`` (:meth:`marginal_sigma2`).
    ``mean`` is ``(loc, beta / (alpha - 1))``, with ``inf`` for sigma^2 where ``alpha <= 1``.
    """

    arg_constraints = {"loc": constraints.real, "kappa": constraints.positive,
                       "alpha": constraints.positive, "beta": constraints.positive}
    support = _MeanVarianceSupport()
    has_rsample = True

    def __init__(self, loc, kappa, alpha, beta, validate_args=None):
        self.loc, self.kappa, self.alpha, self.beta = _params(loc=loc, kappa=kappa, alpha=alpha, beta=beta)
        super().__init__(self.loc.shape, torch.Size([2]), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(NormalInverseGammaDistribution, _instance)
        batch_shape = torch.Size(batch_shape)
        for k in ("loc", "kappa", "alpha", "beta"):
            setattr(new, k, getattr(self, k).expand(batch_shape))
        super(NormalInverseGammaDistribution, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def marginal_mu(self) -> StudentT:
        """Marginal of mu: Student-t with 2 alpha degrees of freedom, location loc, scale sqrt(beta/(alpha kappa))."""
        return StudentT(2 * self.alpha, self.loc, torch.sqrt(self.beta / (self.alpha * self.kappa)))

    def marginal_sigma2(self) -> InverseGamma:
        """Marginal of sigma^2: InvGamma(alpha, beta)."""
        return InverseGamma(self.alpha, self.beta)

    @property
    def mean(self) -> Tensor:
        s2 = torch.where(self.alpha > 1, self.beta / (self.alpha - 1), torch.full_like(self.beta, math.inf))
        return torch.stack([self.loc, s2], -1)

    @property
    def mode(self) -> Tensor:
        return torch.stack([self.loc, self.beta / (self.alpha + 1.5)], -1)

    @property
    def variance(self) -> Tensor:
        inf = torch.full_like(self.beta, math.inf)
        var_mu = torch.where(self.alpha > 1, self.beta / ((self.alpha - 1) * self.kappa), inf)
        var_s2 = torch.where(self.alpha > 2, self.beta.square() / ((self.alpha - 1).square() * (self.alpha - 2)), inf)
        return torch.stack([var_mu, var_s2], -1)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        mu, s2 = value[..., 0], value[..., 1]
        log_s2 = torch.log(s2)
        return (-0.5 * (math.log(2 * math.pi) + log_s2 - torch.log(self.kappa))
                - self.kappa * (mu - self.loc).square() / (2 * s2)
                + self.alpha * torch.log(self.beta) - torch.lgamma(self.alpha) - (self.alpha + 1) * log_s2
                - self.beta / s2)

    def rsample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))[:-1]  # (*S, *B)
        g = torch._standard_gamma(self.alpha.expand(shape).contiguous(), generator=generator)
        s2 = self.beta / g
        z = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device, generator=generator)
        mu = self.loc + z * torch.sqrt(s2 / self.kappa)
        return torch.stack([mu, s2], -1)  # (*S, *B, 2)

    def sample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)
