r"""Normal-inverse-gamma prior on (mean, variance), normal observations with both unknown."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch.distributions import StudentT

from ._base import ConjugateFamily, prior_kwargs, prior_param
from ._validate import NONNEGATIVE, POSITIVE, REAL, broadcast_batch, prepare_data, prepare_params
from .distributions import NormalInverseGammaDistribution

__all__ = ["NormalInverseGamma"]


@dataclass(frozen=True, eq=False, repr=False)
class NormalInverseGamma(ConjugateFamily):
    r"""Normal-inverse-gamma conjugate model for normal data with unknown mean and variance (batched).

    Model, with observations ``i = 1..N`` along ``dim``::

        sigma^2 ~ InvGamma(alpha, beta)
        mu | sigma^2 ~ N(loc, sigma^2 / kappa)
        x_i | mu, sigma^2 ~ N(mu, sigma^2)

    Posterior, with ``xbar`` the sample mean and ``S = sum (x - xbar)^2``::

        kappa_N = kappa + N
        loc_N   = (kappa loc + N xbar) / kappa_N
        alpha_N = alpha + N / 2
        beta_N  = beta + S / 2 + kappa N (xbar - loc)^2 / (2 kappa_N)

    Log evidence::

        log p(x) = log Gamma(alpha_N) - log Gamma(alpha) + alpha log beta - alpha_N log beta_N
                   + 1/2 log(kappa / kappa_N) - N/2 log(2 pi)

    Predictive of one new observation: ``StudentT(2 alpha, loc, sqrt(beta (kappa + 1) / (alpha kappa)))``.
    ``dist()`` is a :class:`NormalInverseGammaDistribution` over ``(mu, sigma^2)`` stacked in the last
    dimension (``value[..., 0] = mu``, ``value[..., 1] = sigma^2``), with ``marginal_mu()`` (Student-t)
    and ``marginal_sigma2()`` (inverse gamma).

    Improper priors are the ``kappa -> 0`` limit with the kernel ``p(mu, sigma^2) ~ (sigma^2)^-(alpha + 3/2)
    exp(-beta / sigma^2)`` (the Gaussian factor's sqrt(kappa) constant dropped), so the update formulas
    above stay exact. Named priors:

    ===================================  ========================  ===========================================
    constructor                          prior                     note
    ===================================  ========================  ===========================================
    ``NormalInverseGamma(m, k, a, b)``   NIG(m, k, a, b)           informative; k, a, b > 0
    ``.weakly_informative()``            NIG(0, 0.01, 1/2, 1/2)    = N-Inv-chi^2(0, 0.01; 1 dof, scale 1):
                                                                   worth 1/100 observation on mu and one
                                                                   observation on sigma^2; proper
    ``.uniform()``                       NIG(0, 0, -3/2, 0)        flat in (mu, sigma^2); IMPROPER; posterior
                                                                   proper for N >= 4 distinct values
    ``.jeffreys()``                      NIG(0, 0, -1/2, 0)        p ~ 1/sigma^2 (independence Jeffreys);
                                                                   IMPROPER; posterior NIG(xbar, N, (N-1)/2,
                                                                   S/2): mu ~ t_{N-1}(xbar, s^2/N), N >= 2
    ===================================  ========================  ===========================================

    ``log_evidence`` raises ``ValueError`` for an improper prior; ``dist`` / ``predictive`` raise until
    ``kappa, alpha, beta > 0``.

    Args:
        loc: prior location of mu.
        kappa: prior precision multiplier of mu, "number of prior observations of the mean" (> 0;
            >= 0 with ``allow_improper``).
        alpha: inverse-gamma shape (> 0; any finite real with ``allow_improper``).
        beta: inverse-gamma scale (> 0; >= 0 with ``allow_improper``).
        allow_improper: admit the improper limits above.
    """

    loc: Tensor
    kappa: Tensor
    alpha: Tensor
    beta: Tensor
    allow_improper: bool = False

    _fields = ("loc", "kappa", "alpha", "beta")

    def __post_init__(self):
        imp = self.allow_improper
        p = prepare_params({"loc": self.loc, "kappa": self.kappa, "alpha": self.alpha, "beta": self.beta},
                           {"loc": REAL, "kappa": NONNEGATIVE if imp else POSITIVE,
                            "alpha": REAL if imp else POSITIVE, "beta": NONNEGATIVE if imp else POSITIVE})
        for k, v in p.items():
            object.__setattr__(self, k, v)

    # ----- named priors -------------------------------------------------------------------------
    @classmethod
    def _improper(cls, alpha: float, batch_shape, dtype, device) -> "NormalInverseGamma":
        kw = prior_kwargs(batch_shape, dtype, device)
        z = torch.zeros(**kw)
        return cls(z, z, torch.full(fill_value=alpha, **kw), z, allow_improper=True)

    @classmethod
    def jeffreys(cls, *, batch_shape: Sequence[int] = (), dtype=None, device=None) -> "NormalInverseGamma":
        """Independence Jeffreys prior p(mu, sigma^2) ~ 1/sigma^2, stored as NIG(0, 0, -1/2, 0) (improper)."""
        return cls._improper(-0.5, batch_shape, dtype, device)

    @classmethod
    def uniform(cls, *, batch_shape: Sequence[int] = (), dtype=None, device=None) -> "NormalInverseGamma":
        """Flat prior in (mu, sigma^2), stored as NIG(0, 0, -3/2, 0) (improper)."""
        return cls._improper(-1.5, batch_shape, dtype, device)

    @classmethod
    def weakly_informative(cls, *, loc=0.0, scale=1.0, kappa=0.01, dof=1.0, batch_shape: Sequence[int] = (),
                           dtype=None, device=None) -> "NormalInverseGamma":
        """Normal-scaled-inverse-chi^2 prior: sigma^2 ~ Scale-Inv-chi^2(dof, scale^2), mu | sigma^2 ~ N(loc, sigma^2/kappa).

        In NIG form ``NIG(loc, kappa, dof / 2, dof scale^2 / 2)``; the defaults (``kappa = 0.01``,
        ``dof = 1``) make it worth 1/100 of an observation on mu and one observation on sigma^2, centred
        on a noise scale of ``scale``.
        """
        s = prior_param(scale, "scale", POSITIVE, batch_shape, dtype, device)
        m = prior_param(loc, "loc", REAL, batch_shape, s.dtype, s.device)
        k = prior_param(kappa, "kappa", POSITIVE, batch_shape, s.dtype, s.device)
        d = prior_param(dof, "dof", POSITIVE, batch_shape, s.dtype, s.device)
        return cls(m, k, d / 2, d * s.square() / 2)

    # ----- inference ----------------------------------------------------------------------------
    @property
    def is_proper(self) -> Tensor:
        """Boolean (*batch): whether the NIG law is proper (kappa, alpha, beta > 0)."""
        return (self.kappa > 0) & (self.alpha > 0) & (self.beta > 0)

    def _stats(self, x, dim: int, validate: bool):
        x = prepare_data(x, "x", dtype=self.dtype, device=self.device, dim=dim, validate=validate)  # (*b, N)
        batch = broadcast_batch(self.batch_shape, x.shape[:-1], "x")
        return x, batch

    def _posterior_params(self, x: Tensor):
        n = x.shape[-1]
        xbar = x.mean(-1)  # (*b)
        ss = (x - xbar.unsqueeze(-1)).square().sum(-1)  # (*b)
        kappa_n = self.kappa + n  # (*batch)
        loc_n = (self.kappa * self.loc + n * xbar) / kappa_n  # (*batch)
        alpha_n = self.alpha + 0.5 * n  # (*batch)
        beta_n = self.beta + 0.5 * ss + 0.5 * (self.kappa * n / kappa_n) * (xbar - self.loc).square()  # (*batch)
        return loc_n, kappa_n, alpha_n, beta_n

    def update(self, x, *, dim: int = -1, validate: bool = True) -> "NormalInverseGamma":
        """Posterior after observations ``x`` (*batch, N) along ``dim``."""
        x, batch = self._stats(x, dim, validate)
        if x.shape[-1] == 0:
            return self.expand(batch)
        loc_n, kappa_n, alpha_n, beta_n = self._posterior_params(x)
        return self._replace(loc=loc_n.expand(batch), kappa=kappa_n.expand(batch),
                             alpha=alpha_n.expand(batch), beta=beta_n.expand(batch))

    def log_evidence(self, x, *, dim: int = -1, validate: bool = True) -> Tensor:
        """Exact log marginal likelihood of ``x`` (*batch); raises ValueError for an improper prior."""
        self._require_proper("log_evidence")
        x, batch = self._stats(x, dim, validate)
        n = x.shape[-1]
        if n == 0:
            return torch.zeros(batch, dtype=self.dtype, device=self.device)
        _, kappa_n, alpha_n, beta_n = self._posterior_params(x)
        out = (torch.lgamma(alpha_n) - torch.lgamma(self.alpha) + self.alpha * torch.log(self.beta)
               - alpha_n * torch.log(beta_n) + 0.5 * (torch.log(self.kappa) - torch.log(kappa_n))
               - 0.5 * n * math.log(2 * math.pi))
        return out.expand(batch)

    def dist(self) -> NormalInverseGammaDistribution:
        """The joint law of (mu, sigma^2), stacked in the last dimension (raises ValueError when improper)."""
        self._require_proper("dist")
        return NormalInverseGammaDistribution(self.loc, self.kappa, self.alpha, self.beta)

    def predictive(self) -> StudentT:
        """Predictive of one new observation: StudentT(2 alpha, loc, sqrt(beta (kappa + 1) / (alpha kappa)))."""
        self._require_proper("predictive")
        scale = torch.sqrt(self.beta * (self.kappa + 1) / (self.alpha * self.kappa))
        return StudentT(2 * self.alpha, self.loc, scale)
