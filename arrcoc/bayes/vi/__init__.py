"""Variational inference: Gaussian SVI (mean-field / full-rank, minibatch), CAVI, and a Pyro bridge.

    from arrcoc.bayes.vi import fit_vi
    res = fit_vi(log_likelihood, prior, generator=g, family="fullrank")
    res.elbo, res.sample(1000, g)
"""
from .cavi import GaussianMixtureCAVI, LinearRegressionCAVI, cavi_gaussian_mixture, cavi_linear_regression
from .families import FullRankNormal, GaussianFamily, MeanFieldNormal, gaussian_kl, gaussian_prior_params
from .pyro_bridge import PyroGuideApprox, fit_pyro
from .svi import VIConfig, VIResult, elbo, fit_vi, make_family, minibatch, prior_log_prob, relative_change, window_converged

__all__ = [
    "VIConfig", "VIResult", "elbo", "fit_vi", "make_family", "minibatch", "prior_log_prob", "relative_change", "window_converged",
    "GaussianFamily", "MeanFieldNormal", "FullRankNormal", "gaussian_kl", "gaussian_prior_params",
    "LinearRegressionCAVI", "cavi_linear_regression", "GaussianMixtureCAVI", "cavi_gaussian_mixture",
    "PyroGuideApprox", "fit_pyro",
]
