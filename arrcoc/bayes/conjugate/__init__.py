r"""Exact conjugate Bayesian models, batched over any leading shape, on any device.

Five families, each a frozen dataclass of tensors broadcast to one batch shape:

====================================  ==========================  =================================
family                                parameter                   observation
====================================  ==========================  =================================
:class:`BetaBinomial`                 p ~ Beta                    successes out of trials
:class:`GammaPoisson`                 lambda ~ Gamma              Poisson counts
:class:`NormalNormal`                 mu ~ Normal                 Normal, known noise scale
:class:`NormalInverseGamma`           (mu, sigma^2) ~ NIG         Normal, unknown mean and variance
:class:`DirichletMultinomial`         p ~ Dirichlet               multinomial category counts
====================================  ==========================  =================================

Each has ``update(*data, dim=...)`` (the posterior, same class; sequential updates equal one batch
update), ``log_evidence(*data, dim=...)`` (exact log marginal likelihood, shape (*batch)),
``dist()`` (the law of the parameter as a ``torch.distributions`` object), ``predictive(...)`` (the
prior or posterior predictive of one new observation) and the named priors ``jeffreys``,
``uniform`` and ``weakly_informative`` (the plain constructor is the informative prior). Improper
priors (Jeffreys / uniform for Gamma-Poisson, Normal-Normal and Normal-Inverse-Gamma) update exactly,
but their ``log_evidence`` raises ``ValueError``: the evidence of an improper prior is defined only
up to an arbitrary constant.

Scalar-observation families take data (*batch, N) with observations along ``dim=-1``;
:class:`DirichletMultinomial` takes counts (*batch, N, K) with observations along ``dim=-2``. The data's
batch shape broadcasts with the prior's. Bad input raises ``ValueError`` naming the argument.

Example::

    >>> import torch
    >>> from arrcoc.bayes.conjugate import BetaBinomial
    >>> post = BetaBinomial.jeffreys().update(torch.tensor([3.0, 4.0]), trials=5)
    >>> post.alpha, post.beta
    (tensor(7.5000), tensor(3.5000))
"""
from .beta_binomial import BetaBinomial
from .dirichlet_multinomial import DirichletMultinomial
from .distributions import BetaBinomialDistribution, DirichletMultinomialDistribution, NormalInverseGammaDistribution
from .gamma_poisson import GammaPoisson
from .normal_inverse_gamma import NormalInverseGamma
from .normal_normal import NormalNormal

__all__ = [
    "BetaBinomial", "GammaPoisson", "NormalNormal", "NormalInverseGamma", "DirichletMultinomial",
    "BetaBinomialDistribution", "DirichletMultinomialDistribution", "NormalInverseGammaDistribution",
]
