"""Closed-form posterior of the hierarchical relevance model (DESIGN.md section 2, step 4).

Model, per image (batched over B), regions i = 1..R, observation channels k = 1..K:

    mu_img            ~ N(mu_global, tau^2)                 image-level mean (partial pooling)
    r_i | mu_img      ~ N(mu_img, sigma^2)                   relevance logit of region i
    s_ki | r_i        ~ N(a_k r_i + b_k, 1 / lambda_k)       scorer k's observation (if mask_ki)

Everything is Gaussian, so the posterior is exact and costs O(R K) tensor ops. With the evidence
precision and information of region i

    P_i = sum_k mask_ki a_k^2 lambda_k,      h_i = sum_k mask_ki a_k lambda_k (s_ki - b_k),

the per-region precision is d_i = 1/sigma^2 + P_i and, integrating the r's out, each region is a
Gaussian observation of mu_img, giving

    V   = Var(mu_img | s) = 1 / (1/tau^2 + sum_i P_i / (1 + sigma^2 P_i))
    m_mu = E(mu_img | s)  = V (mu_global / tau^2 + sum_i c_i h_i),    c_i = 1 / (1 + sigma^2 P_i)
    m_i  = E(r_i | s)     = c_i m_mu + h_i / d_i
    Cov(r | s)            = diag(1 / d) + V c c^T          (diagonal plus rank one: the shared mu_img)

Epistemic variance: if one channel's scores (the query scorer) carry parameter uncertainty with
score-space covariance F F^T (F: (B, R, E), e.g. a last-layer Laplace posterior of the query head),
the law of total variance adds J F F^T J^T, where J = d m / d s_query is linear:
J F = diag(g / d) F + V c (c * g)^T F with g_i = mask_i a_q lambda_q. The posterior then stays
"diagonal plus low rank" (rank 1 + E) and is exposed as a LowRankMultivariateNormal (joint) and
independent Normal marginals.

The moments come from the toolkit's pooling kernel ``arrcoc.bayes.hierarchical.pool_normal``: this
model is the normal-normal hierarchy of ``arrcoc.bayes.hierarchical`` with the regions as groups.
The two vocabularies (relevance keeps its own, which matches the DESIGN's model):

    relevance (here)                     arrcoc.bayes.hierarchical / pool_normal
    ----------------------------------   ----------------------------------------------
    region relevance logit r_i           group effect theta_j
    image mean mu_img                    population mean mu
    mu_global, tau^2 (prior of mu_img)   mu_loc, mu_scale^2 (mu_var in pool_normal)
    sigma^2 (spread of r_i)              tau^2 (group_var in pool_normal)
    evidence_precision P_i               1 / sigma_j^2 (precision)
    evidence_info h_i                    y_j / sigma_j^2 (info)
    channel precision lambda_k           (one scorer's share of P_i; no toolkit analogue)
    region_precision d_i                 1 / cond_var_j

Sequential update: new evidence for some regions only adds to their (P_i, h_i); every derived
quantity (all regions' means and variances, moved through mu_img) is recomputed from them, so
updating in turn equals conditioning on all the evidence at once.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import LowRankMultivariateNormal, MultivariateNormal, Normal

from arrcoc.bayes.hierarchical import PooledNormal, pool_normal

from ._validate import as_batch, as_channels, check_observations, check_region_index

# The unchecked cores (evidence, build_posterior, add_evidence, log_evidence_unchecked) are internal:
# the allocator and calibration import them by name after validating at their boundary.
__all__ = ["RelevancePosterior", "hierarchical_posterior", "update_posterior", "log_evidence"]

_LOG_2PI = math.log(2 * math.pi)


class RelevancePosterior(NamedTuple):
    """Sufficient statistics of the posterior; every other quantity is a cheap derived property."""

    prior_loc: Tensor           # (B,) mu_global
    prior_var: Tensor           # (B,) tau^2
    region_var: Tensor          # (B,) sigma^2
    evidence_precision: Tensor  # (B, R) P_i = sum_k mask_ki a_k^2 lambda_k
    evidence_info: Tensor       # (B, R) h_i = sum_k mask_ki a_k lambda_k (s_ki - b_k)
    epistemic_factor: Tensor    # (B, R, E) score-space covariance factor of the uncertain channel
    epistemic_weight: Tensor    # (B, R, E) g_ie = mask a_k lambda_k of factor column e's channel k (0 where unobserved)
    # Optional per-channel standardisation applied to the raw scores, (B, K) each: lets later
    # evidence from the same scorers be put on the same scale (None = raw scores were used).
    channel_loc: Tensor | None = None
    channel_scale: Tensor | None = None

    # ------------------------------------------------------------------ derived, all O(R)
    def pooled(self) -> PooledNormal:
        """The toolkit's pooling kernel on this posterior's evidence (one call gives every moment)."""
        return pool_normal(self.evidence_precision, self.evidence_info, self.region_var, self.prior_loc,
                           self.prior_var)

    @property
    def region_precision(self) -> Tensor:
        """d_i = 1/sigma^2 + P_i, precision of r_i given mu_img: (B, R)."""
        return 1.0 / self.region_var[:, None] + self.evidence_precision

    @property
    def coupling(self) -> Tensor:
        """c_i = 1 / (1 + sigma^2 P_i) = dE[r_i | mu_img, s] / d mu_img: (B, R)."""
        return self.pooled().coupling

    @property
    def mu_img_var(self) -> Tensor:
        """V = Var(mu_img | s): (B,)."""
        return self.pooled().mu_var

    @property
    def mu_img_mean(self) -> Tensor:
        """E(mu_img | s): (B,)."""
        return self.pooled().mu_mean

    @property
    def mean(self) -> Tensor:
        """Posterior mean m_i of the relevance logits: (B, R)."""
        return self.pooled().mean

    @property
    def aleatoric_var(self) -> Tensor:
        """Var(r_i | s) at the point estimate of the scorer parameters: 1/d_i + c_i^2 V, (B, R)."""
        return self.pooled().var

    @property
    def epistemic_cov_factor(self) -> Tensor:
        """J F: (B, R, E), the scorer-parameter uncertainty mapped to the relevance logits."""
        F, g, c = self.epistemic_factor, self.epistemic_weight, self.coupling
        direct = (g / self.region_precision[..., None]) * F  # (B, R, E)
        through_mu = torch.einsum("bre,bre->be", c[..., None] * g, F)  # (B, E)
        return direct + (self.mu_img_var[:, None] * c)[..., None] * through_mu[:, None, :]  # (B, R, E)

    @property
    def epistemic_var(self) -> Tensor:
        """Variance added by scorer-parameter uncertainty: (B, R)."""
        return self.epistemic_cov_factor.pow(2).sum(-1)

    @property
    def var(self) -> Tensor:
        """Total marginal posterior variance v_i = aleatoric + epistemic: (B, R)."""
        return self.aleatoric_var + self.epistemic_var

    @property
    def cov_factor(self) -> Tensor:
        """W with Cov(r | s) = W W^T + diag(cov_diag): (B, R, 1 + E)."""
        shared = (self.coupling * self.mu_img_var[:, None].sqrt())[..., None]  # (B, R, 1)
        return torch.cat([shared, self.epistemic_cov_factor], dim=-1)

    @property
    def cov_diag(self) -> Tensor:
        """Diagonal part 1/d_i of the posterior covariance: (B, R)."""
        return 1.0 / self.region_precision

    @property
    def batch_size(self) -> int:
        return self.evidence_precision.shape[0]

    @property
    def num_regions(self) -> int:
        return self.evidence_precision.shape[1]

    # ------------------------------------------------------------------ distributions
    def marginal(self) -> Normal:
        """Independent Normal marginals N(m_i, v_i), batch shape (B, R)."""
        return Normal(self.mean, self.var.sqrt())

    def joint(self) -> LowRankMultivariateNormal:
        """Joint posterior over (r_1..r_R) per image (diagonal + rank 1+E), batch (B,), event (R,)."""
        return LowRankMultivariateNormal(self.mean, self.cov_factor, self.cov_diag)

    def covariance(self) -> Tensor:
        """Dense posterior covariance (B, R, R) (O(R^2); for checks and small R)."""
        W = self.cov_factor
        return W @ W.transpose(-1, -2) + torch.diag_embed(self.cov_diag)

    def mu_img(self) -> Normal:
        """Posterior of the image-level mean, N(E mu_img, Var mu_img (+ epistemic)), batch (B,)."""
        return Normal(self.mu_img_mean, (self.mu_img_var + self._mu_epistemic().pow(2).sum(-1)).sqrt())

    def _mu_epistemic(self) -> Tensor:
        # d m_mu / d s_j = V c_j g_j  -> factor (B, E)
        F = self.epistemic_factor
        return self.mu_img_var[:, None] * torch.einsum("bre,bre->be", self.coupling[..., None] * self.epistemic_weight, F)

    def joint_with_mu(self) -> MultivariateNormal:
        """Dense joint over (mu_img, r_1..r_R) (index 0 is mu_img): batch (B,), event (R+1,)."""
        V, c = self.mu_img_var, self.coupling
        B, R = c.shape
        u = torch.cat([torch.ones_like(V)[:, None], c], dim=1) * V.sqrt()[:, None]  # (B, R+1)
        cov = u[:, :, None] * u[:, None, :]  # (B, R+1, R+1)
        cov[:, 1:, 1:] += torch.diag_embed(self.cov_diag)
        Fm = torch.cat([self._mu_epistemic()[:, None, :], self.epistemic_cov_factor], dim=1)  # (B, R+1, E)
        cov = cov + Fm @ Fm.transpose(-1, -2)
        loc = torch.cat([self.mu_img_mean[:, None], self.mean], dim=1)  # (B, R+1)
        return MultivariateNormal(loc, covariance_matrix=cov)


# ---------------------------------------------------------------------------- construction

def evidence(obs: Tensor, mask: Tensor, slope: Tensor, offset: Tensor, precision: Tensor
             ) -> tuple[Tensor, Tensor]:
    """(P, h): evidence precision and information per region, each (B, R). Internal: obs (B, K, R),
    mask bool (B, K, R), slope / offset / precision (K,) tensors, already checked."""
    m = mask.to(obs.dtype)  # (B, K, R)
    resid = torch.where(mask, obs - offset[None, :, None], torch.zeros_like(obs))  # (B, K, R)
    P = torch.einsum("bkr,k->br", m, slope * slope * precision)  # (B, R)
    h = torch.einsum("bkr,k->br", resid, slope * precision)  # (B, R)
    return P, h


def build_posterior(obs: Tensor, mask: Tensor, slope: Tensor, offset: Tensor, precision: Tensor,
                    mu_global: Tensor, tau: Tensor, sigma: Tensor, epistemic_factor: Tensor | None = None,
                    epistemic_channel: int | None = None) -> RelevancePosterior:
    """Unchecked core of :func:`hierarchical_posterior`: calibration as (K,) tensors, prior as (B,)."""
    B, K, R = obs.shape
    P, h = evidence(obs, mask, slope, offset, precision)
    if epistemic_factor is None:
        F, g = obs.new_zeros(B, R, 0), obs.new_zeros(B, R, 0)
    else:
        F = epistemic_factor.to(obs.dtype)  # (B, R, E)
        ch = torch.as_tensor(epistemic_channel, device=obs.device).long().reshape(-1).expand(F.shape[-1])  # (E,)
        g = mask[:, ch, :].transpose(1, 2).to(obs.dtype) * (slope * precision)[ch]  # (B, R, E)
    return RelevancePosterior(mu_global, tau ** 2, sigma ** 2, P, h, F, g)


def _check_calibration(obs, slope, offset, precision, mu_global, tau, sigma) -> dict:
    B, K, _ = obs.shape
    return dict(slope=as_channels(slope, K, obs, "slope"), offset=as_channels(offset, K, obs, "offset"),
                precision=as_channels(precision, K, obs, "precision", positive=True),
                mu_global=as_batch(mu_global, B, obs, "mu_global"), tau=as_batch(tau, B, obs, "tau", positive=True),
                sigma=as_batch(sigma, B, obs, "sigma", positive=True))


def hierarchical_posterior(obs: Tensor, mask: Tensor | None = None, *, slope=1.0, offset=0.0,
                           precision=1.0, mu_global=0.0, tau=1.0, sigma=1.0,
                           epistemic_factor: Tensor | None = None,
                           epistemic_channel: int | None = None) -> RelevancePosterior:
    """Exact posterior of the hierarchical relevance model.

    obs (B, K, R) scores, mask (B, K, R) bool (False = channel not observed for that region);
    slope/offset/precision: a_k, b_k, lambda_k (scalars or (K,)); mu_global, tau, sigma: scalars or
    (B,). epistemic_factor (B, R, E): covariance factor of channel `epistemic_channel`'s scores due
    to its parameters' uncertainty (None = no epistemic term).
    """
    mask = check_observations(obs, mask)
    B, K, R = obs.shape
    cal = _check_calibration(obs, slope, offset, precision, mu_global, tau, sigma)
    if epistemic_factor is not None:
        if isinstance(epistemic_channel, bool) or not isinstance(epistemic_channel, int) \
                or not (0 <= epistemic_channel < K):
            raise ValueError(f"epistemic_channel must be a channel index in [0, {K}) when "
                             f"epistemic_factor is given, got {epistemic_channel!r}")
        if not isinstance(epistemic_factor, Tensor) or epistemic_factor.dim() != 3 \
                or epistemic_factor.shape[:2] != (B, R):
            raise ValueError(f"epistemic_factor must have shape ({B}, {R}, E), got "
                             f"{tuple(getattr(epistemic_factor, 'shape', ()))}")
        if not torch.isfinite(epistemic_factor).all():
            raise ValueError("epistemic_factor contains NaN or inf")
    return build_posterior(obs, mask, **cal, epistemic_factor=epistemic_factor, epistemic_channel=epistemic_channel)


def add_evidence(posterior: RelevancePosterior, region_index: Tensor, scores: Tensor, slope, offset,
                 precision, mask: Tensor) -> RelevancePosterior:
    """Unchecked core of :func:`update_posterior` (slope, offset, precision broadcast to scores)."""
    dt = posterior.evidence_precision.dtype
    m = mask.to(dt)  # (B, M)
    resid = torch.where(mask, scores - offset, torch.zeros_like(scores))  # (B, M)
    P = posterior.evidence_precision.scatter_add(1, region_index, m * slope * slope * precision)  # (B, R)
    h = posterior.evidence_info.scatter_add(1, region_index, m * slope * precision * resid)  # (B, R)
    return posterior._replace(evidence_precision=P, evidence_info=h)


def update_posterior(posterior: RelevancePosterior, region_index: Tensor, scores: Tensor, *,
                     slope=1.0, offset=0.0, precision=1.0, mask: Tensor | None = None
                     ) -> RelevancePosterior:
    """Condition on new observations s_j ~ N(a r_{idx_j} + b, 1/lambda) of some regions.

    region_index (B, M) long, scores (B, M) (same shape), mask (B, M) bool or None; slope, offset,
    precision: scalars or (B, M). Repeated indices accumulate. Every region's mean and variance
    changes (through mu_img); the result equals conditioning on all evidence at once.
    """
    if not isinstance(posterior, RelevancePosterior):
        raise TypeError(f"posterior must be a RelevancePosterior (from hierarchical_posterior), got {type(posterior).__name__}")
    B, R = posterior.evidence_precision.shape
    idx = check_region_index(region_index, B, R)
    if not isinstance(scores, Tensor) or scores.shape != region_index.shape:
        raise ValueError(f"scores must have the shape of region_index {tuple(region_index.shape)}, "
                         f"got {tuple(getattr(scores, 'shape', ()))}")
    if mask is None:
        mask = torch.ones_like(region_index, dtype=torch.bool)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != region_index.shape:
        raise ValueError(f"mask must be a bool tensor of shape {tuple(region_index.shape)}")
    dt = posterior.evidence_precision.dtype
    scores = scores.to(dt)
    if (mask & ~torch.isfinite(scores)).any():
        raise ValueError("scores contain NaN or inf")
    a, b, lam = (_per_score(x, name, scores) for x, name in ((slope, "slope"), (offset, "offset"), (precision, "precision")))
    if not (torch.isfinite(a).all() and torch.isfinite(b).all() and torch.isfinite(lam).all()) \
            or (lam <= 0).any():
        raise ValueError("slope/offset must be finite and precision positive and finite")
    return add_evidence(posterior, idx, scores, a, b, lam, mask)


def _per_score(x, name: str, scores: Tensor) -> Tensor:
    """A scalar or a (B, M) tensor (one value per new score) as a tensor of scores' shape."""
    if isinstance(x, bool) or not isinstance(x, (numbers.Real, Tensor)) or (
            isinstance(x, Tensor) and (x.dtype == torch.bool or x.is_complex())):
        raise TypeError(f"{name} must be a real scalar or a tensor of shape {tuple(scores.shape)}, got {type(x).__name__}")
    t = torch.as_tensor(x, dtype=scores.dtype, device=scores.device)
    try:
        return t.expand_as(scores)
    except RuntimeError:
        raise ValueError(f"{name} must be a scalar or have shape {tuple(scores.shape)}, got {tuple(t.shape)}") from None


def log_evidence(obs: Tensor, mask: Tensor | None = None, *, slope=1.0, offset=0.0, precision=1.0,
                 mu_global=0.0, tau=1.0, sigma=1.0) -> Tensor:
    """Exact log marginal likelihood log p(s) per image, (B,), in O(R K).

    Uses log p(s) = log p(s | r) + log p(r | mu) + log p(mu) - log p(mu, r | s), all evaluated at
    the posterior mean, where log p(mu, r | s) at its mean = 0.5 log det(Lambda) - (R+1)/2 log 2 pi
    and det(Lambda) = prod_i d_i / V (block elimination of the joint precision).
    """
    mask = check_observations(obs, mask)
    cal = _check_calibration(obs, slope, offset, precision, mu_global, tau, sigma)
    return log_evidence_unchecked(obs, mask, **cal)


def log_evidence_unchecked(obs: Tensor, mask: Tensor, slope: Tensor, offset: Tensor, precision: Tensor,
                           mu_global: Tensor, tau: Tensor, sigma: Tensor) -> Tensor:
    """:func:`log_evidence` on checked inputs (calibration (K,), prior (B,)); differentiable."""
    R = obs.shape[2]
    post = build_posterior(obs, mask, slope, offset, precision, mu_global, tau, sigma)
    pooled = post.pooled()
    a, b, lam = slope[None, :, None], offset[None, :, None], precision[None, :, None]
    m, mu = pooled.mean, pooled.mu_mean  # (B, R), (B,)
    resid = obs - a * m[:, None, :] - b  # (B, K, R)
    ll = 0.5 * (torch.log(lam) - _LOG_2PI - lam * resid ** 2)  # (B, K, R)
    ll = torch.where(mask, ll, torch.zeros_like(ll)).sum((1, 2))  # (B,)
    lp_mu = -0.5 * (_LOG_2PI + torch.log(post.prior_var) + (mu - post.prior_loc) ** 2 / post.prior_var)
    lp_r = -0.5 * (_LOG_2PI + torch.log(post.region_var)[:, None]
                   + (m - mu[:, None]) ** 2 / post.region_var[:, None]).sum(-1)
    log_det_prec = -torch.log(pooled.cond_var).sum(-1) - torch.log(pooled.mu_var)
    lq = 0.5 * log_det_prec - 0.5 * (R + 1) * _LOG_2PI
    return ll + lp_mu + lp_r - lq
