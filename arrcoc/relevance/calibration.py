"""Empirical Bayes calibration of the relevance model, and the query head's last-layer Laplace.

Two fits of (a_k, b_k, lambda_k) per channel and (mu_global, tau, sigma):

fit_supervised       relevance targets r (N, R) are known (e.g. from grounding annotations): the
                     joint likelihood p(r) p(s | r) separates, and both parts have closed-form
                     maximisers -- per channel an ordinary least-squares line s ~ a r + b with
                     lambda = 1 / residual variance, and for r the balanced one-way random-effects
                     MLE (grand mean; sigma^2 = within-image variance; tau^2 = between-image
                     variance of the image means minus sigma^2 / R, floored at 0+).
fit_empirical_bayes  no targets: maximise the exact log marginal likelihood sum_n log p(s_n)
                     (posterior.log_evidence, O(R K) per image) with the toolkit's L-BFGS
                     (``arrcoc.bayes.laplace.find_map``). The location and scale
                     of r are not identified from scores alone, so by default mu_global and sigma
                     stay fixed at their initial values (`fix`), and `orient_channel` fixes the sign.

laplace_head_covariance / fit_query_laplace: the query scorer's output projection w is the last
layer; for a Gaussian loss on its score with noise precision beta and a N(0, I / alpha) prior the
Laplace (= exact, the model being linear in w) posterior covariance is (alpha I + beta Phi^T Phi)^-1,
computed by the toolkit's ``laplace_nn(subset="last_layer", hessian="ggn")``. The prior of the
relevance logits, log p(r_n), is the toolkit's ``NormalNormal.log_evidence`` (r_i ~ N(mu, sigma^2)
around an image mean mu ~ N(mu_global, tau^2)).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from arrcoc.bayes._validate import check_int, check_real, check_real_tensor
from arrcoc.bayes.conjugate import NormalNormal
from arrcoc.bayes.laplace import LaplaceConfig, find_map, laplace_nn

from ._validate import check_observations, check_values
from .config import CHANNELS
from .posterior import log_evidence_unchecked

__all__ = ["CalibrationResult", "fit_supervised", "fit_empirical_bayes", "hierarchical_log_likelihood",
           "laplace_head_covariance", "fit_query_laplace"]


@dataclass
class CalibrationResult:
    """Fitted calibration. slope/offset/precision: (K,) tensors; the prior: floats."""

    slope: Tensor
    offset: Tensor
    precision: Tensor
    mu_global: float
    tau: float
    sigma: float
    log_likelihood: float
    method: str
    iterations: int = 0
    channels: tuple = CHANNELS
    notes: tuple = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("slope", "offset", "precision"):
            v = getattr(self, name)
            check_values(v, name, "(K,)", 1, low=0.0 if name == "precision" else None)
        if self.slope.shape != self.offset.shape or self.slope.shape != self.precision.shape:
            raise ValueError(f"slope, offset and precision must have one shape (K,), got {tuple(self.slope.shape)}, "
                             f"{tuple(self.offset.shape)}, {tuple(self.precision.shape)}")
        if not bool((self.precision > 0).all()):
            raise ValueError("precision must be positive")
        self.mu_global = check_real(self.mu_global, "mu_global")
        self.tau = check_real(self.tau, "tau", low=0.0, low_open=True)
        self.sigma = check_real(self.sigma, "sigma", low=0.0, low_open=True)
        # log_likelihood NaN = not computed (a starting point, e.g. fit_empirical_bayes' default init)
        if isinstance(self.log_likelihood, bool) or not isinstance(self.log_likelihood, numbers.Real):
            raise TypeError(f"log_likelihood must be a real number, got {type(self.log_likelihood).__name__}")
        self.log_likelihood = float(self.log_likelihood)
        if not isinstance(self.method, str):
            raise TypeError(f"method must be a str, got {type(self.method).__name__}")
        self.iterations = check_int(self.iterations, "iterations", minimum=0)

    def __str__(self) -> str:
        lines = [f"CalibrationResult(method={self.method}, log_likelihood={self.log_likelihood:.4f}, "
                 f"iterations={self.iterations})",
                 f"  prior: mu_global={self.mu_global:.4f} tau={self.tau:.4f} sigma={self.sigma:.4f}",
                 f"  {'channel':<22}{'slope':>10}{'offset':>10}{'precision':>11}"]
        names = self.channels if len(self.channels) == self.slope.numel() else range(self.slope.numel())
        for k, n in enumerate(names):
            lines.append(f"  {str(n):<22}{float(self.slope[k]):>10.4f}{float(self.offset[k]):>10.4f}"
                         f"{float(self.precision[k]):>11.4f}")
        lines.extend("  note: " + n for n in self.notes)
        return "\n".join(lines)

    def kwargs(self) -> dict:
        """Keyword arguments for posterior.hierarchical_posterior / log_evidence."""
        return dict(slope=self.slope, offset=self.offset, precision=self.precision,
                    mu_global=self.mu_global, tau=self.tau, sigma=self.sigma)

    def apply(self, allocator) -> None:
        """Copy into a RelevanceAllocator's calibration parameters (channels must match CHANNELS)."""
        if self.slope.numel() != allocator.slope.numel():
            raise ValueError(f"result has {self.slope.numel()} channels, allocator {allocator.slope.numel()}")
        with torch.no_grad():
            allocator.slope.copy_(self.slope)
            allocator.offset.copy_(self.offset)
            allocator.log_precision.copy_(self.precision.log())
            allocator.mu_global.fill_(self.mu_global)
            allocator.log_tau.fill_(math.log(self.tau))
            allocator.log_sigma.fill_(math.log(self.sigma))


def hierarchical_log_likelihood(relevance: Tensor, mu_global, tau, sigma) -> Tensor:
    """log p(r_n) under r_n ~ N(mu 1, sigma^2 I + tau^2 1 1^T), per image: (N, R) -> (N,), O(R).
    This is the evidence of the toolkit's Normal-Normal model (image mean ~ N(mu_global, tau^2),
    each r_i ~ N(image mean, sigma^2)). mu_global, tau > 0, sigma > 0: scalars or (N,) tensors."""
    check_values(relevance, "relevance", "(N, R)", 2)
    kw = dict(dtype=relevance.dtype, device=relevance.device)
    model = NormalNormal(check_real_tensor(mu_global, "mu_global", **kw),
                         check_real_tensor(tau, "tau", low=0.0, low_open=True, **kw),
                         check_real_tensor(sigma, "sigma", low=0.0, low_open=True, **kw))
    return model.log_evidence(relevance)


def fit_supervised(obs: Tensor, mask: Tensor | None, relevance: Tensor, min_tau: float = 1e-3
                   ) -> CalibrationResult:
    """Closed-form maximum-likelihood calibration from known relevance logits.

    obs (N, K, R), mask (N, K, R) bool or None, relevance (N, R). Channels with fewer than 3
    observations keep slope 1, offset 0, precision 1 (listed in ``notes``).
    """
    mask = check_observations(obs, mask)
    min_tau = check_real(min_tau, "min_tau", low=0.0, low_open=True)
    N, K, R = obs.shape
    if not isinstance(relevance, Tensor) or relevance.shape != (N, R):
        raise ValueError(f"relevance must have shape ({N}, {R}), got {tuple(getattr(relevance, 'shape', ()))}")
    if not torch.isfinite(relevance).all():
        raise ValueError("relevance contains NaN or inf")
    r = relevance.to(obs.dtype)
    w = mask.to(obs.dtype)  # (N, K, R)
    s = torch.where(mask, obs, torch.zeros_like(obs))
    n = w.sum((0, 2))  # (K,)
    notes = []
    slope, offset, prec = obs.new_ones(K), obs.new_zeros(K), obs.new_ones(K)
    for k in range(K):
        if n[k] < 3:
            notes.append(f"channel {k} has {int(n[k])} observations: kept slope 1, offset 0, precision 1")
            continue
        wk, sk = w[:, k], s[:, k]
        mr = (wk * r).sum() / n[k]
        ms = (wk * sk).sum() / n[k]
        var_r = (wk * (r - mr) ** 2).sum() / n[k]
        cov = (wk * (r - mr) * (sk - ms)).sum() / n[k]
        if var_r <= 0:
            notes.append(f"channel {k}: relevance is constant where observed; slope kept at 1")
            a = obs.new_tensor(1.0)
        else:
            a = cov / var_r
        b = ms - a * mr
        resid = (wk * (sk - a * r - b) ** 2).sum() / n[k]
        slope[k], offset[k], prec[k] = a, b, 1.0 / resid.clamp_min(1e-12)
    mu = r.mean()
    rbar = r.mean(1)  # (N,)
    if R > 1:
        s2 = ((r - rbar[:, None]) ** 2).sum() / (N * (R - 1))
        t2 = ((rbar - mu) ** 2).mean() - s2 / R
    else:
        s2, t2 = ((r - mu) ** 2).mean(), obs.new_tensor(0.0)
        notes.append("R = 1: tau and sigma are not separately identified; all variance put in sigma")
    if t2 < min_tau ** 2:
        # boundary of the likelihood: tau -> 0 and sigma^2 absorbs the total variance
        notes.append(f"between-image variance not positive: tau set to min_tau={min_tau}")
        t2 = obs.new_tensor(min_tau ** 2)
        s2 = ((r - mu) ** 2).mean()
    tau, sigma = float(t2.sqrt()), float(s2.clamp_min(1e-12).sqrt())
    ll = hierarchical_log_likelihood(r, mu, tau, sigma).sum()
    resid = s - slope[None, :, None] * r[:, None, :] - offset[None, :, None]
    ll = ll + (w * 0.5 * (prec.log()[None, :, None] - math.log(2 * math.pi)
                          - prec[None, :, None] * resid ** 2)).sum()
    return CalibrationResult(slope, offset, prec, float(mu), tau, sigma, float(ll), "supervised",
                             0, CHANNELS if K == len(CHANNELS) else tuple(range(K)), tuple(notes))


def fit_empirical_bayes(obs: Tensor, mask: Tensor | None = None, *, init: CalibrationResult | None = None,
                        fix: tuple[str, ...] = ("mu_global", "sigma"), orient_channel: int | None = None,
                        max_iter: int = 200, progress: bool = False) -> CalibrationResult:
    """Maximise the exact log marginal likelihood of the scores over the calibration.

    obs (N, K, R); fix: names among mu_global, tau, sigma, slope, offset, precision kept at their
    initial values (default: mu_global and sigma, which fix the location and scale of r). init:
    starting values (default slope 1, offset = channel mean, precision 1, mu 0, tau 1, sigma 1).
    orient_channel: channel whose slope is made positive at the end (flips r's sign when mu_global = 0).
    """
    mask = check_observations(obs, mask)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    if init is not None and not isinstance(init, CalibrationResult):
        raise TypeError(f"init must be a CalibrationResult or None, got {type(init).__name__}")
    if orient_channel is not None:
        orient_channel = check_int(orient_channel, "orient_channel", minimum=0, maximum=obs.shape[1] - 1)
    if isinstance(fix, str) or not isinstance(fix, (tuple, list, set, frozenset)):
        raise TypeError(f"fix must be a tuple of parameter names, got {type(fix).__name__} {fix!r}")
    N, K, R = obs.shape
    allowed = {"mu_global", "tau", "sigma", "slope", "offset", "precision"}
    if not set(fix) <= allowed:
        raise ValueError(f"fix must name parameters among {sorted(allowed)}, got {fix}")
    w = mask.to(obs.dtype)
    if init is None:
        mean_k = (torch.where(mask, obs, torch.zeros_like(obs)).sum((0, 2)) / w.sum((0, 2)).clamp_min(1))
        init = CalibrationResult(obs.new_ones(K), mean_k, obs.new_ones(K), 0.0, 1.0, 1.0, float("nan"), "init")
    # unconstrained parameters, in this order; the free ones are packed into one vector for L-BFGS
    p = {"slope": init.slope.to(obs).clone(), "offset": init.offset.to(obs).clone(),
         "log_precision": init.precision.to(obs).log(), "mu_global": obs.new_tensor(init.mu_global)[None],
         "log_tau": obs.new_tensor(math.log(init.tau))[None], "log_sigma": obs.new_tensor(math.log(init.sigma))[None]}
    fixed_names = {"precision": "log_precision", "tau": "log_tau", "sigma": "log_sigma"}
    free = [k for k in p if not any(fixed_names.get(f, f) == k for f in fix)]
    sizes = [p[k].numel() for k in free]

    def unpack(theta: Tensor) -> dict:
        q = dict(p)
        q.update(zip(free, theta.split(sizes)))
        return q

    def objective(theta: Tensor) -> Tensor:
        q = unpack(theta)
        return -log_evidence_unchecked(obs, mask, q["slope"], q["offset"], q["log_precision"].exp(),
                                       q["mu_global"].expand(N), q["log_tau"].exp().expand(N),
                                       q["log_sigma"].exp().expand(N)).sum() / N

    theta0 = torch.cat([p[k] for k in free]) if free else obs.new_zeros(0)
    iterations = 0
    if free:
        bar = tqdm(total=max_iter, disable=not progress, desc="empirical Bayes")

        def counted(theta: Tensor) -> Tensor:  # objective evaluations = L-BFGS closure calls
            nonlocal iterations
            iterations += 1
            bar.update(1)
            return objective(theta)

        theta, _, _ = find_map(counted, theta0, LaplaceConfig(max_iter=max_iter, tolerance_grad=1e-9,
                                                              tolerance_change=1e-12))
        bar.close()
    else:
        theta = theta0
    with torch.no_grad():
        q = unpack(theta)
        slope, offset = q["slope"].clone(), q["offset"].clone()
        mu = float(q["mu_global"])
        if orient_channel is not None and slope[orient_channel] < 0 and mu == 0.0:
            slope = -slope
        ll = float(-objective(theta) * N)
    return CalibrationResult(slope, offset, q["log_precision"].exp(), mu, float(q["log_tau"].exp()),
                             float(q["log_sigma"].exp()), ll, "empirical_bayes", iterations,
                             CHANNELS if K == len(CHANNELS) else tuple(range(K)))


def laplace_head_covariance(phi: Tensor, noise_precision: float, prior_precision: float) -> Tensor:
    """(alpha I + beta Phi^T Phi)^-1 for last-layer inputs phi (N, H): the (exact) Laplace posterior
    covariance of a linear output layer under a Gaussian loss with precision beta, prior N(0, I/alpha).
    Computed by the toolkit's ``laplace_nn(subset="last_layer", hessian="ggn")`` on a bias-free
    linear head (the GGN does not depend on the weights or targets of a linear-Gaussian layer, so
    both are zero: the zero weights are then exactly the mode)."""
    if not isinstance(phi, Tensor) or phi.dim() != 2 or phi.shape[0] == 0:
        raise ValueError(f"phi must have shape (N, H) with N >= 1, got {tuple(getattr(phi, 'shape', ()))}")
    if not torch.isfinite(phi).all():
        raise ValueError("phi contains NaN or inf")
    noise_precision = check_real(noise_precision, "noise_precision", low=0.0, low_open=True)
    prior_precision = check_real(prior_precision, "prior_precision", low=0.0, low_open=True)
    head = nn.Linear(phi.shape[1], 1, bias=False).to(dtype=phi.dtype, device=phi.device)
    nn.init.zeros_(head.weight)
    with torch.enable_grad():  # the GGN is built by autograd (callers may run under no_grad)
        res = laplace_nn(head, phi, phi.new_zeros(phi.shape[0]), sigma_noise=float(noise_precision) ** -0.5,
                         prior_precision=float(prior_precision), subset="last_layer", hessian="ggn")
    return res.covariance


@torch.no_grad()
def fit_query_laplace(scorer, region_features: Tensor, query_embeds: Tensor, query_mask: Tensor | None = None,
                      *, noise_precision: float = 1.0, prior_precision: float = 1.0) -> Tensor:
    """Compute the query head's last-layer Laplace covariance on a data set and install it in the
    scorer (``QueryScorer.set_head_covariance``). Returns the (H, H) covariance."""
    from .scorers import QueryScorer

    if not isinstance(scorer, QueryScorer):
        raise TypeError(f"scorer must be a QueryScorer, got {type(scorer).__name__}")
    noise_precision = check_real(noise_precision, "noise_precision", low=0.0, low_open=True)
    prior_precision = check_real(prior_precision, "prior_precision", low=0.0, low_open=True)
    out = scorer(region_features, query_embeds, query_mask)
    phi = out.head_logits[out.present].reshape(-1, scorer.num_heads)  # (N R, H)
    if phi.shape[0] == 0:
        raise ValueError("no image in the data set has a query; cannot fit the Laplace posterior")
    cov = laplace_head_covariance(phi.double(), noise_precision, prior_precision)
    scorer.set_head_covariance(cov.to(scorer.head_cov_chol.dtype))
    return cov
