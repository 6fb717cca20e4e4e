"""Model comparison: Bayes factors, bridge sampling, WAIC, PSIS-LOO and a ranking table.

Everything works on torch tensors in float64 (inputs are promoted; numpy arrays are accepted).

* ``bayes_factor(log_evidence_1, log_evidence_2)`` from any log evidences (exact conjugate ones from
  ``arrcoc.bayes.conjugate``, Laplace ones from ``arrcoc.bayes.laplace``, or ``bridge_sampling``).
* ``bridge_sampling(log_density, draws, generator=...)``: Meng & Wong (1996) iterative bridge sampling
  with a Gaussian proposal fitted to the first half of the posterior draws (Gronau et al. 2017).
* ``waic(log_lik)`` and ``loo(log_lik)`` over a (chain, draw, *obs) log-likelihood array; ``loo`` uses
  Pareto-smoothed importance sampling (``psis``) with the Zhang & Stephens (2009) generalized Pareto fit
  and the weakly informative prior on k of Vehtari et al. (2024). Numbers match ArviZ on the same array.
* ``compare({name: result or log_lik})``: models ranked by elpd with standard errors of differences.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch

from ._validate import check_generator, check_int, check_real

__all__ = [
    "BayesFactor", "bayes_factor", "BridgeResult", "bridge_sampling", "ELPDResult", "waic", "loo",
    "psis", "gpd_fit", "CompareResult", "compare",
]


# ----------------------------------------------------------------------------------------- helpers
def _to_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray) or isinstance(x, (list, tuple, float, int)):
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not x.is_floating_point():
        x = x.double()
    return x.double()


def _bad_entries(mask: torch.Tensor, limit: int = 5) -> str:
    """The first ``limit`` indices where ``mask`` is True, as tuples into the user's array."""
    idx = [tuple(i) for i in mask.nonzero()[:limit].tolist()]
    more = int(mask.sum()) - len(idx)
    return ", ".join(map(str, idx)) + (f" and {more} more" if more > 0 else "")


def _check_log_lik_values(ll: torch.Tensor) -> None:
    """NaN, +inf and -inf log-likelihood entries are errors that name the entries (indices into ``log_lik``).

    -inf is refused, not handled: log p(y_i | θ_s) = -inf says that posterior draw θ_s gives zero
    probability to an observation the posterior was conditioned on, which cannot happen for draws of
    that posterior (p(θ_s | y) ∝ p(y | θ_s) p(θ_s) = 0). It means the draws or the log-likelihood are
    wrong, and neither WAIC (whose p_waic would be inf / NaN) nor PSIS-LOO (infinite importance ratio)
    has a meaningful value then.
    """
    for mask, what in ((torch.isnan(ll), "NaN"), (torch.isposinf(ll), "+inf"), (torch.isneginf(ll), "-inf")):
        if mask.any():
            hint = (" (zero likelihood at a posterior draw: the draws are not from the posterior of this "
                    "data, or the log-likelihood is wrong)" if what == "-inf" else "")
            raise ValueError(f"log_lik contains {what} values at entries {_bad_entries(mask)} (indices into "
                             f"log_lik of shape {tuple(ll.shape)}){hint}")


def _log_lik_matrix(log_lik, chain_axis: int | None, draw_axis: int):
    """Return (S, P) float64 matrix of log-lik values, the observation shape, and validate input."""
    ll = _to_tensor(log_lik, "log_lik")
    draw_axis = check_int(draw_axis, "draw_axis")
    chain_axis = None if chain_axis is None else check_int(chain_axis, "chain_axis")
    axes = [draw_axis] if chain_axis is None else [chain_axis, draw_axis]
    need = len(axes) + 1
    if ll.ndim < need:
        raise ValueError(
            f"log_lik must have shape ({'chain, ' if chain_axis is not None else ''}draw, *obs) with at "
            f"least one observation axis; got shape {tuple(ll.shape)}")
    for a, name in zip(axes, ["draw_axis"] if chain_axis is None else ["chain_axis", "draw_axis"]):
        if not -ll.ndim <= a < ll.ndim:
            raise ValueError(f"{name} = {a} is out of range for log_lik with {ll.ndim} dimensions")
    axes = [a % ll.ndim for a in axes]
    if len(set(axes)) != len(axes):
        raise ValueError(f"chain_axis and draw_axis must differ, got {chain_axis} and {draw_axis}")
    _check_log_lik_values(ll)
    obs_axes = [a for a in range(ll.ndim) if a not in axes]
    ll = ll.permute(*axes, *obs_axes)
    obs_shape = tuple(ll.shape[len(axes):])
    n_samples = int(np.prod(ll.shape[:len(axes)]))
    if n_samples < 2:
        raise ValueError(f"log_lik needs at least 2 posterior draws, got {n_samples}")
    return ll.reshape(n_samples, -1), obs_shape  # (S, P)


# ------------------------------------------------------------------------------------ Bayes factors
_JEFFREYS = ((0.0, "barely worth mentioning"), (math.log(10 ** 0.5), "substantial"),
             (math.log(10.0), "strong"), (math.log(10 ** 1.5), "very strong"), (math.log(100.0), "decisive"))


@dataclass(frozen=True)
class BayesFactor:
    """Bayes factor BF_12 = p(y | M1) / p(y | M2), kept on the log scale (tensor, batched)."""
    log_bf: torch.Tensor
    log_evidence_1: torch.Tensor
    log_evidence_2: torch.Tensor

    @property
    def bf(self) -> torch.Tensor:
        return self.log_bf.exp()

    def interpretation(self) -> str:
        """Jeffreys' scale for a scalar log Bayes factor."""
        lb = float(self.log_bf.reshape(-1)[0]) if self.log_bf.numel() == 1 else None
        if lb is None:
            raise ValueError("interpretation() needs a scalar Bayes factor")
        label = [name for cut, name in _JEFFREYS if abs(lb) >= cut][-1]
        return f"{label} evidence for {'M1' if lb >= 0 else 'M2'}"

    def __str__(self) -> str:
        if self.log_bf.numel() == 1:
            lb = float(self.log_bf)
            return (f"BayesFactor(log BF_12 = {lb:.4f}, BF_12 = {math.exp(lb) if lb < 700 else float('inf'):.4g}, "
                    f"log Z1 = {float(self.log_evidence_1):.4f}, log Z2 = {float(self.log_evidence_2):.4f}: "
                    f"{self.interpretation()})")
        return f"BayesFactor(log BF_12 = {self.log_bf.tolist()})"


def bayes_factor(log_evidence_1, log_evidence_2) -> BayesFactor:
    """Bayes factor of model 1 over model 2 from their log evidences (floats, tensors or results
    with a ``log_evidence`` attribute, e.g. ``BridgeResult`` or a Laplace result)."""
    def get(v, name):
        v = getattr(v, "log_evidence", v)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.ndarray, torch.Tensor)):
            raise TypeError(f"{name} must be a number, tensor or result with a log_evidence, got {type(v).__name__}")
        t = torch.as_tensor(v, dtype=torch.float64) if not isinstance(v, torch.Tensor) else v.double()
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} must be finite, got {t}")
        return t
    a, b = get(log_evidence_1, "log_evidence_1"), get(log_evidence_2, "log_evidence_2")
    return BayesFactor(a - b, a, b)


# -------------------------------------------------------------------------------- bridge sampling
@dataclass(frozen=True)
class BridgeResult:
    """Result of iterative bridge sampling. ``rel_mse`` is the approximate relative mean-square
    error of the evidence estimate (Fruhwirth-Schnatter 2004, independent-draws formula; it assumes the
    draws are posterior draws). ``converged`` is False when the fixed-point iteration did not settle or a
    check on the draws failed; ``reason`` then says which (empty when converged)."""
    log_evidence: float
    iterations: int
    converged: bool
    rel_mse: float
    num_posterior: int
    num_proposal: int
    reason: str = ""

    def __str__(self) -> str:
        tail = f"; NOT CONVERGED: {self.reason}" if self.reason else ""
        return (f"BridgeResult(log_evidence = {self.log_evidence:.4f}, approx. error ~ "
                f"{math.sqrt(max(self.rel_mse, 0.0)):.2%}, iterations = {self.iterations}, "
                f"converged = {self.converged}, N_post = {self.num_posterior}, N_prop = {self.num_proposal}{tail})")


# Draw checks of bridge_sampling, with the reason for each threshold.
_MIN_CORR_EIG = 1e-10   # smallest eigenvalue of the draws' correlation matrix: below it they lie on a subspace
_FIT_PER_DIM = 10       # proposal-fit draws per dimension (+ 10): fewer give a covariance too noisy to trust
_WIDE_FACTOR = 1.5      # the check proposal is 1.5x wider: still covers a well-fitted posterior (finite variance)
_WIDE_TOL = 0.5         # nats between the bridge and the wide-proposal estimate beyond their Monte Carlo error
_MIN_ESS_FRACTION = 0.01  # Kish ESS of g / q over the posterior draws: below 1% a handful of draws decide
_SLOPE_RANGE = (0.4, 2.5)  # d log q / d log g over the wide points; posterior draws give 0.7-1 (see below)


def _kish_ess(log_w: torch.Tensor) -> float:
    """Kish effective sample size of importance weights exp(log_w) (-inf weights count as zero)."""
    return float(torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)))


def _check_draws(draws) -> torch.Tensor:
    """Posterior draws as (n, d) float64; refuses non-finite, too few and degenerate (flat) draws."""
    x = _to_tensor(draws, "draws")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim == 3:
        x = x.reshape(-1, x.shape[-1])
    if x.ndim != 2 or x.shape[-1] < 1:
        raise ValueError(f"draws must have shape (n,), (n, d) or (chain, draw, d), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"draws contain NaN or inf at entries {_bad_entries(~torch.isfinite(x))}")
    n, d = x.shape
    if n < 2 * (d + 2):
        raise ValueError(f"bridge_sampling needs at least {2 * (d + 2)} draws for d = {d}, got {n}")
    sd = x.std(0)  # (d,)
    flat = sd <= 1e-12 * x.abs().amax(0).clamp_min(1.0)
    if flat.any():
        raise ValueError(f"draws have (numerically) zero variance in coordinate(s) {flat.nonzero().reshape(-1).tolist()}: "
                         "bridge sampling needs posterior draws that spread in every dimension (constant draws "
                         "are not posterior draws of a density on R^d)")
    if d > 1:
        z = (x - x.mean(0)) / sd
        eig = float(torch.linalg.eigvalsh(z.T @ z / (n - 1)).min())
        if eig < _MIN_CORR_EIG:
            raise ValueError(f"draws are degenerate: they lie on a lower-dimensional subspace (smallest eigenvalue "
                             f"of their correlation matrix {eig:.2e} < {_MIN_CORR_EIG:g}); reparameterise to "
                             "free coordinates before bridge sampling")
    return x


def bridge_sampling(log_density: Callable[[torch.Tensor], torch.Tensor], draws: torch.Tensor, *,
                    generator: torch.Generator, num_proposal: int | None = None, tol: float = 1e-10,
                    max_iter: int = 1000) -> BridgeResult:
    """Log evidence log ∫ q(θ) dθ of an unnormalised posterior ``log_density`` (θ (n, d) -> (n,)).

    ``draws``: posterior draws (n, d) or (chain, draw, d) (1-d parameters may be (n,)). The first half
    fits a multivariate normal proposal g; the second half and ``num_proposal`` (default: as many) draws
    from g enter the Meng-Wong fixed-point iteration for r = Z, run on the log scale.

    Degenerate draws are refused (ValueError): non-finite, fewer than 2 (d + 2), (numerically) constant
    in a coordinate, confined to a subspace, or at points where ``log_density`` is -inf. Draws that look
    wrong for ``log_density`` give ``converged=False`` with the ``reason`` (and a RuntimeWarning): too few
    to fit the proposal (< 10 d + 10), a proposal that covers only a handful of the posterior draws
    (Kish ESS of g / q below 1%), or an importance-sampling estimate with a 1.5 times wider proposal that
    disagrees with the bridge estimate (draws narrower or shifted relative to the density they claim to
    sample, the usual way a wrong evidence looks confident).
    """
    if not callable(log_density):
        raise TypeError(f"log_density must be callable (θ (n, d) -> (n,)), got {type(log_density).__name__}")
    generator = check_generator(generator)
    tol = check_real(tol, "tol", low=0.0, low_open=True)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    num_proposal = None if num_proposal is None else check_int(num_proposal, "num_proposal", minimum=2)
    x = _check_draws(draws)  # (n, d)
    n, d = x.shape
    perm = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
    fit, post = x[perm[: n // 2]], x[perm[n // 2:]]  # (n1, d), (n2, d)
    mean = fit.mean(0)
    cov = torch.cov(fit.T).reshape(d, d)
    chol = torch.linalg.cholesky(cov + 1e-12 * torch.eye(d, dtype=x.dtype, device=x.device))
    proposal = torch.distributions.MultivariateNormal(mean, scale_tril=chol)
    n2 = post.shape[0]
    n1 = n2 if num_proposal is None else num_proposal
    eps = torch.randn(2 * n1, d, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    prop = mean + eps[:n1] @ chol.T  # (n1, d)
    wide = mean + _WIDE_FACTOR * eps[n1:] @ chol.T  # (n1, d) draws of the check proposal
    wide_dist = torch.distributions.MultivariateNormal(mean, scale_tril=_WIDE_FACTOR * chol)

    def logq(t):
        out = torch.as_tensor(log_density(t)).double()
        if out.shape != (t.shape[0],):
            raise ValueError(f"log_density must map (n, d) to (n,), got {tuple(out.shape)}")
        return out
    with torch.no_grad():
        q_post = logq(post)  # (n2,)
        l_post = q_post - proposal.log_prob(post)  # (n2,) log p/g at posterior draws
        l_prop = logq(prop) - proposal.log_prob(prop)  # (n1,) log p/g at proposal draws
        q_wide, g_wide = logq(wide), proposal.log_prob(wide)  # (n1,) each
        l_wide = q_wide - wide_dist.log_prob(wide)  # (n1,)
    if torch.isnan(l_post).any() or torch.isnan(l_prop).any() or torch.isnan(l_wide).any() or torch.isposinf(l_post).any():
        raise ValueError("log_density returned NaN (or +inf) at some draws")
    if torch.isneginf(q_post).any():
        raise ValueError(f"log_density is -inf at {int(torch.isneginf(q_post).sum())} of the posterior draws: "
                         "they are not draws of this posterior (it has zero density there)")
    s1, s2 = n2 / (n1 + n2), n1 / (n1 + n2)  # weights of posterior and proposal samples
    ls1, ls2 = math.log(s1), math.log(s2)
    logr = float(torch.median(l_post))
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        num = torch.logsumexp(l_prop - torch.logaddexp(ls1 + l_prop, ls2 + torch.tensor(logr, dtype=x.dtype)), 0) - math.log(n1)
        den = torch.logsumexp(-torch.logaddexp(ls1 + l_post, ls2 + torch.tensor(logr, dtype=x.dtype)), 0) - math.log(n2)
        new = float(num - den)
        if not math.isfinite(new):
            raise ValueError("bridge sampling iteration diverged (non-finite estimate); check log_density")
        delta, logr = abs(new - logr), new
        if delta < tol:
            converged = True
            break
    reasons = [] if converged else [f"the fixed-point iteration did not converge in {max_iter} iterations"]
    # relative MSE (independent draws): f1 at proposal draws, f2 at posterior draws, both divided by r
    lr = torch.tensor(logr, dtype=x.dtype)
    f1 = torch.exp(l_prop - lr - torch.logaddexp(ls1 + l_prop - lr, torch.tensor(ls2, dtype=x.dtype)))
    f2 = torch.exp(-torch.logaddexp(ls1 + l_post - lr, torch.tensor(ls2, dtype=x.dtype)))
    rel_mse = float(f1.var() / f1.mean() ** 2 / n1 + f2.var() / f2.mean() ** 2 / n2)
    reasons += _draw_diagnostics(fit.shape[0], d, l_post, l_wide, logr, rel_mse, q_wide, g_wide)
    if reasons:
        warnings.warn("bridge_sampling: " + "; ".join(reasons), RuntimeWarning)
    return BridgeResult(logr, it, not reasons, rel_mse, n2, n1, "; ".join(reasons))


def _draw_diagnostics(n_fit: int, d: int, l_post: torch.Tensor, l_wide: torch.Tensor, logr: float,
                      rel_mse: float, q_wide: torch.Tensor, g_wide: torch.Tensor) -> list[str]:
    """Reasons to distrust a bridge estimate although the iteration converged (empty list: none).

    The slope check: over the wide-proposal points, log q regressed on log g has slope ~1 when g, fitted
    to posterior draws, has the posterior's shape (0.7 to 1 measured for Gaussian, Student-t and Gamma
    posteriors), ~0 when log_density is flat over the draws (draws far narrower than the posterior:
    the -28.2-for-0 failure), and >> 1 when the draws are far wider than the posterior."""
    out = []
    ok = torch.isfinite(q_wide)
    a, b = q_wide[ok] - q_wide[ok].mean(), g_wide[ok] - g_wide[ok].mean()
    slope = float((a * b).sum() / (b * b).sum()) if int(ok.sum()) > 2 else math.nan
    if not _SLOPE_RANGE[0] <= slope <= _SLOPE_RANGE[1]:
        out.append(f"the draws do not match log_density: log q varies {slope:.3g} times as fast as the log density "
                   f"of the proposal fitted to the draws (expected ~1 for posterior draws; "
                   f"{'draws narrower than the posterior' if slope < 1 else 'draws wider than the posterior'})")
    if n_fit < _FIT_PER_DIM * d + 10:
        out.append(f"too few draws: {n_fit} fitted the proposal for d = {d} (need >= {_FIT_PER_DIM * d + 10}, "
                   f"i.e. >= {2 * (_FIT_PER_DIM * d + 10)} draws)")
    ess = _kish_ess(-l_post)
    if ess < _MIN_ESS_FRACTION * l_post.numel():
        out.append(f"the proposal fitted to the draws does not cover them: importance ESS of g / q over the "
                   f"posterior draws is {ess:.1f} of {l_post.numel()}")
    n_w = l_wide.numel()
    log_wide = float(torch.logsumexp(l_wide, 0)) - math.log(n_w)  # IS estimate of log Z, wider proposal
    ess_w = max(_kish_ess(l_wide), 1.0)
    se = math.sqrt(max(rel_mse, 0.0)) + 1.0 / math.sqrt(ess_w)  # both estimates' relative errors
    if abs(log_wide - logr) > _WIDE_TOL + 3 * se:
        out.append(f"the draws do not match log_density: an importance-sampling estimate with a "
                   f"{_WIDE_FACTOR}x wider proposal gives log Z = {log_wide:.3f}, the bridge estimate "
                   f"{logr:.3f} (draws narrower than, or shifted from, the posterior they should sample)")
    return out


# ------------------------------------------------------------------------------------ PSIS and GPD
def _r_eff(r_eff) -> torch.Tensor:
    """Relative efficiencies as a flat float64 tensor: positive and finite."""
    if isinstance(r_eff, bool) or not isinstance(r_eff, (int, float, np.floating, np.ndarray, torch.Tensor)):
        raise TypeError(f"r_eff must be a number or a tensor of relative ESS values, got {type(r_eff).__name__}")
    r = torch.as_tensor(r_eff, dtype=torch.float64).reshape(-1)
    if not ((r > 0) & torch.isfinite(r)).all():
        raise ValueError(f"r_eff must be positive and finite, got {r[:5].tolist()}")
    return r


def gpd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zhang & Stephens (2009) fit of a generalized Pareto distribution to exceedances ``x``
    (..., M) sorted ascending along the last axis, with the weakly informative prior of Vehtari et al.
    (2024) shrinking k towards 0.5 (prior weight 10). Returns (k, sigma), each (...); an all-zero row
    (equal importance ratios: every moment finite) gives k = 0, sigma = 0 (psis then keeps the raw tail)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor of exceedances, got {type(x).__name__}"
                        + (f" of dtype {x.dtype}" if isinstance(x, torch.Tensor) else ""))
    if x.ndim < 1 or x.shape[-1] < 5:
        raise ValueError(f"x must have at least 5 exceedances along its last axis, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()) or bool((x < 0).any()):
        raise ValueError("x (exceedances over the tail cutoff) must be finite and >= 0")
    flat = x[..., -1] <= 0  # (...) an all-zero tail (equal ratios): a point mass, k = 0 and sigma = 0
    if bool(flat.any()):
        k, sigma = gpd_fit(torch.where(flat[..., None], torch.arange(1, x.shape[-1] + 1, dtype=x.dtype, device=x.device), x))
        return torch.where(flat, torch.zeros_like(k), k), torch.where(flat, torch.zeros_like(sigma), sigma)
    n = x.shape[-1]
    m_est = 30 + int(n ** 0.5)
    j = torch.arange(1, m_est + 1, dtype=x.dtype, device=x.device)
    b = 1 - torch.sqrt(m_est / (j - 0.5))  # (m,)
    b = b / (3 * x[..., int(n / 4 + 0.5) - 1, None]) + 1 / x[..., -1, None]  # (..., m)
    k = torch.log1p(-b[..., :, None] * x[..., None, :]).mean(-1)  # (..., m)
    len_scale = n * (torch.log(-(b / k)) - k - 1)  # (..., m)
    w = torch.softmax(len_scale, dim=-1)
    w = torch.where(w >= 10 * torch.finfo(x.dtype).eps, w, torch.zeros_like(w))
    w = w / w.sum(-1, keepdim=True)
    b_post = (b * w).sum(-1)  # (...)
    k_post = torch.log1p(-b_post[..., None] * x).mean(-1)
    sigma = -k_post / b_post
    k_post = (n * k_post + 10 * 0.5) / (n + 10)
    return k_post, sigma


def _gpd_quantile(p: torch.Tensor, k: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    small = k.abs() < torch.finfo(p.dtype).eps  # (...)
    ks = torch.where(small, torch.ones_like(k), k)[..., None]
    q = torch.where(small[..., None], -torch.log1p(-p), torch.expm1(-ks * torch.log1p(-p)) / ks)
    return sigma[..., None] * q


def _tail_length(n: int, r_eff: float, tail: str) -> int:
    if tail == "loo":  # loo R package / legacy ArviZ: ceil(min(S/5, 3 sqrt(S/r_eff)))
        return int(math.ceil(min(n / 5.0, 3 * (n / r_eff) ** 0.5)))
    if tail == "arviz_stats":  # arviz-stats >= 0.6
        return int(math.floor(3 * (n / r_eff) ** 0.5) if n * r_eff > 225 else math.floor(n / 5))
    raise ValueError(f"tail must be 'loo' or 'arviz_stats', got {tail!r}")


def psis(log_ratios, r_eff=1.0, *, tail: str = "loo") -> tuple[torch.Tensor, torch.Tensor]:
    """Pareto-smoothed importance sampling over the last axis of ``log_ratios`` (..., S).

    The largest M log ratios (M from ``tail``: ``"loo"`` = ceil(min(S/5, 3 sqrt(S / r_eff))) as in the
    loo package and legacy ArviZ; ``"arviz_stats"`` the arviz-stats rule) are replaced by expected
    order statistics of a fitted generalized Pareto, truncated at the largest raw ratio.
    ``r_eff``: relative efficiency (ESS / S) of the draws, a float or one per row (...).
    Returns (normalised log weights (..., S), Pareto k (...)); k = inf where the tail has < 5 draws.
    """
    lr = _to_tensor(log_ratios, "log_ratios")
    if lr.ndim == 0:
        raise ValueError("log_ratios must have a sample axis")
    if torch.isnan(lr).any() or torch.isposinf(lr).any():
        raise ValueError("log_ratios contain NaN or +inf values")
    batch, s = lr.shape[:-1], lr.shape[-1]
    x = lr.reshape(-1, s)  # (P, S)
    r = _r_eff(r_eff).cpu()
    if r.numel() == 1:
        r = r.expand(x.shape[0])
    if r.numel() != x.shape[0]:
        raise ValueError(f"r_eff must be a scalar or have shape {tuple(batch)}, got {r.numel()} values")
    if not ((r > 0) & torch.isfinite(r)).all():
        raise ValueError("r_eff must be positive and finite")
    x = x - x.max(-1, keepdim=True).values
    out = x.clone()
    khat = torch.full((x.shape[0],), math.inf, dtype=x.dtype, device=x.device)
    lengths = torch.tensor([_tail_length(s, float(ri), tail) for ri in r.tolist()])
    for m in lengths.unique().tolist():
        rows = (lengths == m).nonzero().reshape(-1).to(x.device)
        if m >= s:
            raise ValueError(f"too few draws ({s}) for a Pareto tail of {m}")
        xs, order = torch.sort(x[rows], dim=-1)  # (p, S)
        cutoff = xs[:, s - m - 1]
        if tail == "loo":
            cutoff = cutoff.clamp_min(math.log(torch.finfo(x.dtype).tiny))
        if m <= 4:
            if tail == "arviz_stats":
                raise ValueError("the Pareto tail needs at least 5 draws; pass more draws")
            continue
        exc = torch.exp(xs[:, s - m:]) - torch.exp(cutoff)[:, None]  # (p, m)
        k, sigma = gpd_fit(exc)
        p = (torch.arange(m, dtype=x.dtype, device=x.device) + 0.5) / m
        smooth = torch.log(_gpd_quantile(p, k, sigma) + torch.exp(cutoff)[:, None]).clamp_max(0.0)
        ok = torch.isfinite(k) & (sigma > 0)
        new_tail = torch.where(ok[:, None], smooth, xs[:, s - m:])
        xs = torch.cat([xs[:, : s - m], new_tail], dim=-1)
        out[rows] = torch.empty_like(xs).scatter_(-1, order, xs)
        khat[rows] = k
    out = out - torch.logsumexp(out, -1, keepdim=True)
    return out.reshape(*batch, s), khat.reshape(batch)


# ------------------------------------------------------------------------------------- WAIC / LOO
@dataclass(frozen=True)
class ELPDResult:
    """Estimated expected log pointwise predictive density (log scale; higher is better)."""
    method: str  # "loo" or "waic"
    elpd: float
    se: float
    p: float  # effective number of parameters (p_loo or p_waic)
    elpd_i: torch.Tensor  # (*obs) pointwise elpd
    p_i: torch.Tensor  # (*obs) pointwise effective number of parameters
    n_samples: int
    n_data: int
    warning: bool
    pareto_k: torch.Tensor | None = None  # (*obs), PSIS-LOO only
    good_k: float | None = None

    def __str__(self) -> str:
        lines = [f"Computed from {self.n_samples} posterior draws and {self.n_data} observations "
                 f"({'PSIS-LOO' if self.method == 'loo' else 'WAIC'}, log scale)",
                 "          Estimate       SE",
                 f"elpd_{self.method:<4} {self.elpd:10.2f} {self.se:8.2f}",
                 f"p_{self.method:<7} {self.p:10.2f}        -"]
        if self.pareto_k is not None:
            k = self.pareto_k.reshape(-1)
            good = self.good_k
            bins = [("(-inf, %.2f]" % good, int((k <= good).sum())), ("(%.2f, 1]" % good, int(((k > good) & (k <= 1)).sum())),
                    ("(1, inf)", int((k > 1).sum()))]
            lines.append("Pareto k diagnostic values:")
            lines += [f"  {name:<14} {cnt:6d} {100 * cnt / k.numel():6.1f}%" for name, cnt in bins]
        if self.warning:
            lines.append("WARNING: " + ("some Pareto k exceed %.2f; PSIS-LOO is unreliable there" % self.good_k
                                        if self.method == "loo" else "posterior variance of some log-lik > 0.4"))
        return "\n".join(lines)


def _se(elpd_i: torch.Tensor) -> float:
    v = elpd_i.reshape(-1)
    return float((v.numel() * v.var(unbiased=False)).sqrt())


def waic(log_lik, *, chain_axis: int | None = 0, draw_axis: int = 1) -> ELPDResult:
    """WAIC on the log scale: elpd_i = lppd_i - p_i with p_i the posterior variance (ddof 0, as
    ArviZ) of log p(y_i | θ). ``log_lik``: (chain, draw, *obs) by default (``chain_axis=None`` for
    (draw, *obs)). Warns when some p_i > 0.4."""
    ll, obs_shape = _log_lik_matrix(log_lik, chain_axis, draw_axis)  # (S, P)
    s = ll.shape[0]
    lppd_i = torch.logsumexp(ll, 0) - math.log(s)  # (P,)
    p_i = ll.var(0, unbiased=False)
    elpd_i = lppd_i - p_i
    warn = bool((p_i > 0.4).any())
    if warn:
        warnings.warn("For one or more observations the posterior variance of the log predictive "
                      "density exceeds 0.4; WAIC may be unreliable (use loo).", UserWarning)
    return ELPDResult("waic", float(elpd_i.sum()), _se(elpd_i), float(p_i.sum()), elpd_i.reshape(obs_shape),
                      p_i.reshape(obs_shape), s, elpd_i.numel(), warn)


def loo(log_lik, *, chain_axis: int | None = 0, draw_axis: int = 1, r_eff=1.0, tail: str = "loo") -> ELPDResult:
    """PSIS-LOO: elpd_i = log Σ_s w_is p(y_i | θ_s) with PSIS weights from ratios 1 / p(y_i | θ_s).

    ``r_eff``: relative ESS of the draws (scalar or (*obs)); 1.0 for independent draws, pass the
    relative ESS (e.g. ``arrcoc.bayes.diagnostics.ess(..., relative=True)``) for MCMC draws.
    Warns when some Pareto k > min(1 - 1 / log10(S), 0.7)."""
    ll, obs_shape = _log_lik_matrix(log_lik, chain_axis, draw_axis)  # (S, P)
    s = ll.shape[0]
    r = _r_eff(r_eff)
    if r.numel() not in (1, ll.shape[1]):
        raise ValueError(f"r_eff must be a scalar or have shape {obs_shape}, got {r.numel()} values")
    lw, k = psis(-ll.T, r, tail=tail)  # (P, S), (P,)
    elpd_i = torch.logsumexp(lw + ll.T, -1)  # (P,)
    lppd_i = torch.logsumexp(ll, 0) - math.log(s)
    p_i = lppd_i - elpd_i
    good_k = min(1 - 1 / math.log10(s), 0.7)
    warn = bool((k > good_k).any())
    if warn:
        warnings.warn(f"Estimated Pareto k is greater than {good_k:.2f} for {int((k > good_k).sum())} "
                      "observation(s); PSIS-LOO is unreliable for them (consider moment matching, "
                      "K-fold CV or a more robust model).", UserWarning)
    return ELPDResult("loo", float(elpd_i.sum()), _se(elpd_i), float(p_i.sum()), elpd_i.reshape(obs_shape),
                      p_i.reshape(obs_shape), s, elpd_i.numel(), warn, k.reshape(obs_shape), good_k)


# ----------------------------------------------------------------------------------------- compare
@dataclass(frozen=True)
class CompareRow:
    name: str
    rank: int
    elpd: float
    p: float
    elpd_diff: float
    se: float
    dse: float
    warning: bool
    weight: float  # pseudo-BMA weight exp(elpd) / Σ exp(elpd)


@dataclass(frozen=True)
class CompareResult:
    """Models ranked by elpd; ``dse`` is the standard error of the elpd difference to the best."""
    method: str
    rows: tuple[CompareRow, ...] = field(default_factory=tuple)

    @property
    def best(self) -> str:
        return self.rows[0].name

    def __str__(self) -> str:
        w = max([len(r.name) for r in self.rows] + [5])
        head = f"{'model':<{w}} {'rank':>4} {'elpd_' + self.method:>10} {'p':>8} {'elpd_diff':>10} {'se':>8} {'dse':>8} {'weight':>7} warning"
        body = [f"{r.name:<{w}} {r.rank:>4d} {r.elpd:10.2f} {r.p:8.2f} {r.elpd_diff:10.2f} {r.se:8.2f} {r.dse:8.2f} "
                f"{r.weight:7.3f} {r.warning}" for r in self.rows]
        return "\n".join([head] + body)


def compare(models: Mapping[str, "ELPDResult | torch.Tensor"], *, method: str = "loo", **kwargs) -> CompareResult:
    """Rank models by elpd (highest first). Values are ``ELPDResult`` or log-lik arrays (then
    ``method`` ("loo" or "waic") and ``kwargs`` are passed on). All models must share the data."""
    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a dict name -> ELPDResult or log-lik array, got {type(models).__name__}")
    if len(models) < 1:
        raise ValueError("compare needs at least one model")
    if method not in ("loo", "waic"):
        raise ValueError(f"method must be 'loo' or 'waic', got {method!r}")
    res = {}
    for name, m in models.items():
        if not isinstance(m, ELPDResult):
            try:
                m = (loo if method == "loo" else waic)(m, **kwargs)
            except (TypeError, ValueError) as e:
                raise type(e)(f"models[{name!r}]: {e}") from e
        res[name] = m
    methods = {r.method for r in res.values()}
    if len(methods) != 1:
        raise ValueError(f"all results must use the same method, got {sorted(methods)}")
    sizes = {r.elpd_i.numel() for r in res.values()}
    if len(sizes) != 1:
        raise ValueError(f"models were evaluated on different numbers of observations: "
                         f"{ {n: r.elpd_i.numel() for n, r in res.items()} }")
    order = sorted(res, key=lambda n: -res[n].elpd)
    best = res[order[0]].elpd_i.reshape(-1)
    elpds = torch.tensor([res[n].elpd for n in order], dtype=torch.float64)
    weights = torch.softmax(elpds, 0)
    rows = []
    for i, n in enumerate(order):
        r = res[n]
        diff = best - r.elpd_i.reshape(-1)
        rows.append(CompareRow(n, i, r.elpd, r.p, res[order[0]].elpd - r.elpd, r.se, _se(diff) if i else 0.0,
                               r.warning, float(weights[i])))
    return CompareResult(methods.pop(), tuple(rows))
