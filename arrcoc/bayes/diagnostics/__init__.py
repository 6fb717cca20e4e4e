"""MCMC diagnostics on torch tensors of draws shaped (chain, draw, *param_shape).

Rank-normalised split R-hat and folded R-hat, bulk/tail (and other) effective sample sizes and Monte
Carlo standard errors (Vehtari et al. 2021), FFT autocovariance/autocorrelation, equal-tailed and
highest-density intervals, and a :func:`summary` table. Every function is batched over all parameters
(no Python loop per parameter), computes in float64, and agrees with ``arviz_stats.base.array_stats``
to rounding error (see ``tests/bayes/test_diagnostics.py``).

>>> import torch
>>> from arrcoc.bayes.diagnostics import rhat, ess, summary
>>> x = torch.randn(4, 500, 3, generator=torch.Generator().manual_seed(0))
>>> bool((rhat(x) < 1.01).all()), ess(x, method="bulk").shape
(True, torch.Size([3]))
"""
from ._array import autocorr, autocov
from .convergence import ESS_METHODS, MCSE_METHODS, RHAT_METHODS, ess, mcse, rhat
from .intervals import eti, hdi
from .summary import Summary, SummaryConfig, summary

__all__ = [
    "rhat", "ess", "mcse", "autocorr", "autocov", "eti", "hdi", "summary", "Summary",
    "SummaryConfig", "RHAT_METHODS", "ESS_METHODS", "MCSE_METHODS",
]
