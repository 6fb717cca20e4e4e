"""The normal-normal hierarchical model, exactly (BDA3 ch. 5), batched over independent groups-of-groups.

    y_j | theta_j ~ N(theta_j, sigma_j^2)   (sigma_j known)          j = 1..J
    theta_j | mu, tau ~ N(mu, tau^2)
    mu ~ N(mu_loc, mu_scale^2)   (mu_scale = inf: flat prior)
    tau ~ p(tau)   ("uniform" (BDA3), "half_cauchy" / "half_normal" with ``tau_scale``, or a callable log density)

Eight schools is this model; so is the relevance model r_i ~ N(mu, sigma^2), mu ~ N(mu_global, tau^2)
(with noisy scores s_i ~ N(r_i, noise_i^2) it is ``posterior_given_tau(s, noise, sigma, mu_global, tau)``).

Given tau everything is Gaussian: ``conditional_theta`` (theta | mu, tau, y), ``conditional_mu``
(mu | tau, y) and ``posterior_given_tau`` (theta | tau, y with mu integrated out). The marginal
posterior of tau is computed on a grid (``log_marginal_tau``), from which ``hierarchical_normal`` gives
posterior moments by quadrature and exact draws of (tau, mu, theta). ``empirical_bayes`` maximises the
marginal likelihood p(y | mu, tau) (type-II ML). Data y, sigma have shape (*batch, J).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from ._validate import check_generator, check_int, check_real, check_real_tensor

__all__ = [
    "PooledNormal", "pool_normal", "conditional_theta", "conditional_mu", "GivenTau", "posterior_given_tau", "shrinkage", "log_marginal_tau",
    "HierarchicalNormalPosterior", "hierarchical_normal", "EmpiricalBayes", "empirical_bayes",
]

_LOG2PI = math.log(2 * math.pi)


def _check(y, sigma):
    y = torch.as_tensor(y)
    if not y.is_floating_point():
        y = y.double()
    sigma = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)
    if y.ndim < 1:
        raise ValueError(f"y must have shape (*batch, J), got {tuple(y.shape)}")
    try:
        y, sigma = torch.broadcast_tensors(y, sigma)
    except RuntimeError:
        raise ValueError(f"sigma {tuple(sigma.shape)} does not broadcast with y {tuple(y.shape)}") from None
    if not (torch.isfinite(y).all() and torch.isfinite(sigma).all()):
        raise ValueError("y and sigma must be finite")
    if not (sigma > 0).all():
        raise ValueError("sigma (the known sampling standard deviations) must be positive")
    return y, sigma


def _check_tau(tau, like: torch.Tensor, positive: bool = False) -> torch.Tensor:
    return check_real_tensor(tau, "tau", low=0.0, low_open=positive, dtype=like.dtype, device=like.device)


def _check_mu_prior(mu_loc, mu_scale) -> tuple[float, float]:
    """mu ~ N(mu_loc, mu_scale^2): mu_loc finite, mu_scale > 0 (inf = flat prior)."""
    return (check_real(mu_loc, "mu_loc"),
            check_real(mu_scale, "mu_scale", low=0.0, low_open=True, allow_inf=True))


def shrinkage(sigma: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Shrinkage factors B_j = sigma_j^2 / (sigma_j^2 + tau^2): the weight of the pooled mean in
    E[theta_j | mu, tau, y] = B_j mu + (1 - B_j) y_j. sigma (..., J) positive, tau (...) >= 0."""
    sigma = check_real_tensor(sigma, "sigma", low=0.0, low_open=True)
    if sigma.dim() < 1:
        raise ValueError(f"sigma must have shape (..., J), got {tuple(sigma.shape)}")
    return _shrinkage(sigma, _check_tau(tau, sigma))


def _shrinkage(sigma: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    return sigma ** 2 / (sigma ** 2 + tau[..., None] ** 2)


def conditional_theta(y, sigma, mu, tau) -> tuple[torch.Tensor, torch.Tensor]:
    """theta_j | mu, tau, y ~ N(mean_j, var_j). y, sigma (..., J); mu, tau (...) with tau > 0 (at
    tau = 0 theta_j = mu exactly). Returns (..., J) each."""
    y, sigma = _check(y, sigma)
    mu = check_real_tensor(mu, "mu", dtype=y.dtype, device=y.device)
    return _conditional_theta(y, sigma, mu, _check_tau(tau, y, positive=True))


def _conditional_theta(y, sigma, mu, tau):  # checked inputs
    mu = torch.as_tensor(mu, dtype=y.dtype, device=y.device)[..., None]
    tau = torch.as_tensor(tau, dtype=y.dtype, device=y.device)[..., None]
    prec = 1 / sigma ** 2 + 1 / tau ** 2
    return (y / sigma ** 2 + mu / tau ** 2) / prec, 1 / prec


def conditional_mu(y, sigma, tau, mu_loc=0.0, mu_scale=math.inf) -> tuple[torch.Tensor, torch.Tensor]:
    """mu | tau, y ~ N(mean, var) with theta integrated out: y_j | mu, tau ~ N(mu, sigma_j^2 + tau^2).
    y, sigma (..., J); tau (...) >= 0 (broadcast against the batch). Returns (mean, var), each (...)."""
    y, sigma = _check(y, sigma)
    mu_loc, mu_scale = _check_mu_prior(mu_loc, mu_scale)
    return _conditional_mu(y, sigma, _check_tau(tau, y), mu_loc, mu_scale)


def _conditional_mu(y, sigma, tau, mu_loc, mu_scale):  # checked inputs
    tau = torch.as_tensor(tau, dtype=y.dtype, device=y.device)
    w = 1 / (sigma ** 2 + tau[..., None] ** 2)  # (..., J)
    prior_prec = 0.0 if math.isinf(mu_scale) else 1 / mu_scale ** 2
    prec = prior_prec + w.sum(-1)
    return (prior_prec * mu_loc + (w * y).sum(-1)) / prec, 1 / prec


class PooledNormal(NamedTuple):
    """Exact posterior of partially pooled Gaussian groups (see :func:`pool_normal`)."""

    mean: torch.Tensor       # (..., J) E[theta_j | y]
    var: torch.Tensor        # (..., J) Var[theta_j | y] = cond_var_j + coupling_j^2 mu_var
    cond_var: torch.Tensor   # (..., J) Var[theta_j | mu, y] = 1 / (1/group_var + precision_j)
    coupling: torch.Tensor   # (..., J) dE[theta_j | mu, y] / d mu = 1 / (1 + group_var precision_j)
    mu_mean: torch.Tensor    # (...)    E[mu | y]
    mu_var: torch.Tensor     # (...)    Var[mu | y]


def pool_normal(precision: torch.Tensor, info: torch.Tensor, group_var, mu_loc, mu_var) -> PooledNormal:
    """The pooling kernel of the normal-normal hierarchy, in information form (no checks: internal).

        mu ~ N(mu_loc, mu_var)            theta_j | mu ~ N(mu, group_var)
        evidence on theta_j: a Gaussian likelihood with precision P_j and information h_j
        (P_j = sum of the precisions of its observations, h_j = sum of precision x observation;
        P_j = 0 for a group with no data).

    With d_j = 1/group_var + P_j and c_j = 1 / (1 + group_var P_j):
    Var[mu | y] = 1 / (1/mu_var + sum_j P_j c_j), E[mu | y] = Var[mu | y] (mu_loc / mu_var + sum_j c_j h_j),
    E[theta_j | y] = c_j E[mu | y] + h_j / d_j, Var[theta_j | y] = 1/d_j + c_j^2 Var[mu | y].
    ``mu_var = inf`` is a flat prior on mu; ``group_var = 0`` is complete pooling. The data model
    y_j ~ N(theta_j, sigma_j^2) is P_j = 1/sigma_j^2, h_j = y_j / sigma_j^2 (``posterior_given_tau``);
    the relevance posterior (``arrcoc.relevance.posterior``) is P_j, h_j summed over its scorers.
    Shapes: precision, info (..., J); group_var, mu_loc, mu_var broadcast against (...).

    Checks are cheap and sync-free (the kernel stays fast and traceable): precision / info must be
    floating tensors; group_var, mu_loc, mu_var given as Python numbers are checked (group_var >= 0
    finite, mu_loc finite, mu_var > 0 or inf); tensor values are the caller's responsibility.
    """
    if not isinstance(precision, torch.Tensor) or not precision.is_floating_point():
        raise TypeError(f"precision must be a floating-point tensor (..., J), got {type(precision).__name__}")
    if not isinstance(info, torch.Tensor) or not info.is_floating_point():
        raise TypeError(f"info must be a floating-point tensor (..., J), got {type(info).__name__}")
    if not isinstance(group_var, torch.Tensor):
        check_real(group_var, "group_var", low=0.0)
    if not isinstance(mu_loc, torch.Tensor):
        check_real(mu_loc, "mu_loc")
    if not isinstance(mu_var, torch.Tensor):
        check_real(mu_var, "mu_var", low=0.0, low_open=True, allow_inf=True)
    kw = dict(dtype=precision.dtype, device=precision.device)
    group_var = torch.as_tensor(group_var, **kw)[..., None]  # (..., 1)
    mu_loc = torch.as_tensor(mu_loc, **kw)
    mu_prec = 1.0 / torch.as_tensor(mu_var, **kw)  # (...) 0 for a flat prior
    coupling = 1.0 / (1.0 + group_var * precision)  # (..., J)
    cond_var = 1.0 / (1.0 / group_var + precision)  # (..., J)
    mu_post_var = 1.0 / (mu_prec + (precision * coupling).sum(-1))  # (...)
    prior_info = torch.where(mu_prec > 0, mu_loc * mu_prec, torch.zeros_like(mu_prec))
    mu_mean = mu_post_var * (prior_info + (coupling * info).sum(-1))  # (...)
    mean = coupling * mu_mean[..., None] + info * cond_var  # (..., J)
    var = cond_var + coupling ** 2 * mu_post_var[..., None]  # (..., J)
    return PooledNormal(mean, var, cond_var, coupling, mu_mean, mu_post_var)


class GivenTau(NamedTuple):
    theta_mean: torch.Tensor  # (..., J)
    theta_var: torch.Tensor  # (..., J)
    mu_mean: torch.Tensor  # (...)
    mu_var: torch.Tensor  # (...)
    shrinkage: torch.Tensor  # (..., J)


def posterior_given_tau(y, sigma, tau, mu_loc=0.0, mu_scale=math.inf) -> GivenTau:
    """Exact posterior of theta (mu integrated out) and mu given tau: E[theta_j] = B_j mu_hat + (1 - B_j) y_j,
    Var[theta_j] = (1 - B_j) sigma_j^2 + B_j^2 V_mu (BDA3 5.17 with the mu uncertainty). tau >= 0."""
    y, sigma = _check(y, sigma)
    mu_loc, mu_scale = _check_mu_prior(mu_loc, mu_scale)
    return _posterior_given_tau(y, sigma, _check_tau(tau, y), mu_loc, mu_scale)


def _posterior_given_tau(y, sigma, tau, mu_loc, mu_scale) -> GivenTau:  # checked inputs
    prec = sigma ** -2  # (..., J)
    p = pool_normal(prec, y * prec, tau ** 2, mu_loc, mu_scale ** 2)
    batch = torch.broadcast_shapes(y.shape[:-1], tau.shape)
    mu_mean, mu_var = p.mu_mean.expand(batch), p.mu_var.expand(batch)
    return GivenTau(p.mean, p.var, mu_mean, mu_var, p.coupling.expand(p.mean.shape))


def _log_prior_tau(tau: torch.Tensor, prior, scale: float) -> torch.Tensor:
    if callable(prior):
        return prior(tau)
    if prior == "uniform":
        return torch.zeros_like(tau)
    if prior == "half_cauchy":
        return math.log(2 / (math.pi * scale)) - torch.log1p((tau / scale) ** 2)
    if prior == "half_normal":
        return 0.5 * math.log(2 / math.pi) - math.log(scale) - 0.5 * (tau / scale) ** 2
    raise ValueError(f"tau_prior must be 'uniform', 'half_cauchy', 'half_normal' or a callable, got {prior!r}")


def log_marginal_tau(tau: torch.Tensor, y, sigma, *, mu_loc=0.0, mu_scale=math.inf, tau_prior="uniform",
                     tau_scale: float = 5.0) -> torch.Tensor:
    """log p(tau | y) + const on the grid ``tau`` (G,), for data (*batch, J) -> (*batch, G).

    log p(y | tau) = sum_j log N(y_j; mu_hat, v_j) + log N(mu_hat; mu_loc, mu_scale^2) + 1/2 log(2 pi V_mu),
    v_j = sigma_j^2 + tau^2 (the second term is dropped for a flat prior on mu: BDA3 eq. 5.21)."""
    y, sigma = _check(y, sigma)
    mu_loc, mu_scale = _check_mu_prior(mu_loc, mu_scale)
    tau_scale = check_real(tau_scale, "tau_scale", low=0.0, low_open=True)
    tau = _check_tau(tau, y)
    if tau.ndim != 1:
        raise ValueError(f"tau must be a 1-d grid of non-negative values, got shape {tuple(tau.shape)}")
    return _log_marginal_tau(tau, y, sigma, mu_loc, mu_scale, tau_prior, tau_scale)


def _log_marginal_tau(tau, y, sigma, mu_loc, mu_scale, tau_prior, tau_scale):  # checked inputs
    yy, ss = y[..., None, :], sigma[..., None, :]  # (*B, 1, J)
    m, v = _conditional_mu(yy, ss, tau, mu_loc, mu_scale)  # (*B, G)
    var = ss ** 2 + tau[:, None] ** 2  # (*B, G, J)
    ll = (-0.5 * (_LOG2PI + var.log() + (yy - m[..., None]) ** 2 / var)).sum(-1) + 0.5 * (_LOG2PI + v.log())
    if not math.isinf(mu_scale):
        ll = ll - 0.5 * (_LOG2PI + 2 * math.log(mu_scale) + (m - mu_loc) ** 2 / mu_scale ** 2)
    return ll + _log_prior_tau(tau, tau_prior, tau_scale)


@dataclass
class HierarchicalNormalPosterior:
    """Posterior on a tau grid: p(tau | y) as normalised cell weights, everything else exact given tau."""
    y: torch.Tensor  # (*B, J)
    sigma: torch.Tensor  # (*B, J)
    tau_grid: torch.Tensor  # (G,) cell midpoints
    cell_width: float
    log_weights: torch.Tensor  # (*B, G) log p(tau cell | y), normalised
    mu_loc: float
    mu_scale: float

    def _given(self) -> GivenTau:
        return _posterior_given_tau(self.y[..., None, :], self.sigma[..., None, :], self.tau_grid, self.mu_loc, self.mu_scale)

    def _avg(self, x: torch.Tensor) -> torch.Tensor:  # x (*B, G, ...) -> (*B, ...)
        w = self.log_weights.exp()
        return (w.reshape(w.shape + (1,) * (x.ndim - w.ndim)) * x).sum(w.ndim - 1)

    def tau_mean(self) -> torch.Tensor:
        return self._avg(self.tau_grid.expand_as(self.log_weights))

    def tau_sd(self) -> torch.Tensor:
        return (self._avg(self.tau_grid.expand_as(self.log_weights) ** 2) - self.tau_mean() ** 2).clamp_min(0).sqrt()

    def mu_mean(self) -> torch.Tensor:
        return self._avg(self._given().mu_mean)

    def mu_sd(self) -> torch.Tensor:
        g = self._given()
        return (self._avg(g.mu_var + g.mu_mean ** 2) - self.mu_mean() ** 2).clamp_min(0).sqrt()

    def theta_mean(self) -> torch.Tensor:
        """E[theta_j | y] (*B, J) by quadrature over tau."""
        return self._avg(self._given().theta_mean)

    def theta_sd(self) -> torch.Tensor:
        """sd[theta_j | y] (*B, J) by the law of total variance over tau."""
        g = self._given()
        return (self._avg(g.theta_var + g.theta_mean ** 2) - self.theta_mean() ** 2).clamp_min(0).sqrt()

    def shrinkage(self) -> torch.Tensor:
        """Posterior expected shrinkage E[B_j | y] (*B, J): 1 = complete pooling, 0 = no pooling."""
        return self._avg(self._given().shrinkage)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Exact draws: tau from the grid posterior (uniform within its cell), mu | tau, y, then
        theta | mu, tau, y. Returns {'tau': (n, *B), 'mu': (n, *B), 'theta': (n, *B, J)}.
        ``generator`` (a torch.Generator) is required: randomness is always passed explicitly."""
        n = check_int(n, "n", minimum=1)
        dev = check_generator(generator).device
        batch = self.log_weights.shape[:-1]
        w = self.log_weights.exp().reshape(-1, self.tau_grid.shape[0]).to(dev)
        idx = torch.multinomial(w, n, replacement=True, generator=generator).T.reshape(n, *batch)  # (n, *B)
        u = torch.rand(n, *batch, generator=generator, dtype=self.y.dtype, device=dev)
        tau = (self.tau_grid.to(dev)[idx] + (u - 0.5) * self.cell_width).clamp_min(0).to(self.y.device)
        m, v = _conditional_mu(self.y, self.sigma, tau, self.mu_loc, self.mu_scale)  # (n, *B)
        mu = m + v.sqrt() * torch.randn(n, *batch, generator=generator, dtype=self.y.dtype, device=dev).to(self.y.device)
        tm, tv = _conditional_theta(self.y, self.sigma, mu, tau)  # (n, *B, J)
        theta = tm + tv.sqrt() * torch.randn(tm.shape, generator=generator, dtype=self.y.dtype, device=dev).to(self.y.device)
        return {"tau": tau, "mu": mu, "theta": theta}

    def __str__(self) -> str:
        tm, ts = self.theta_mean(), self.theta_sd()
        flat = lambda t: t.reshape(-1, t.shape[-1])[0]  # noqa: E731 - first batch member
        lines = [f"HierarchicalNormalPosterior(J = {self.y.shape[-1]}, batch = {tuple(self.y.shape[:-1])}, grid = "
                 f"{self.tau_grid.shape[0]} points on [0, {float(self.tau_grid[-1] + self.cell_width / 2):.3g}])",
                 f"  tau  mean {float(self.tau_mean().reshape(-1)[0]):8.3f}  sd {float(self.tau_sd().reshape(-1)[0]):8.3f}",
                 f"  mu   mean {float(self.mu_mean().reshape(-1)[0]):8.3f}  sd {float(self.mu_sd().reshape(-1)[0]):8.3f}"]
        lines += [f"  theta[{j}] mean {float(m):8.3f}  sd {float(s):8.3f}  shrinkage {float(b):6.3f}"
                  for j, (m, s, b) in enumerate(zip(flat(tm), flat(ts), flat(self.shrinkage())))]
        return "\n".join(lines)


def hierarchical_normal(y, sigma, *, tau_prior: str | Callable = "uniform", tau_scale: float = 5.0,
                        mu_loc: float = 0.0, mu_scale: float = math.inf, tau_max: float | None = None,
                        num_grid: int = 4000) -> HierarchicalNormalPosterior:
    """Posterior of the normal-normal hierarchical model with tau on a midpoint grid over [0, tau_max]
    (default tau_max = 10 * max(sd(y), max sigma, tau_scale for a proper prior)). y, sigma (*batch, J)."""
    y, sigma = _check(y, sigma)
    mu_loc, mu_scale = _check_mu_prior(mu_loc, mu_scale)
    tau_scale = check_real(tau_scale, "tau_scale", low=0.0, low_open=True)
    num_grid = check_int(num_grid, "num_grid", minimum=10)
    if tau_max is not None:
        tau_max = check_real(tau_max, "tau_max", low=0.0, low_open=True)
    if y.shape[-1] < 2 and math.isinf(mu_scale):
        raise ValueError("with a flat prior on mu at least J = 2 groups are needed")
    if tau_max is None:
        spread = y.std(-1).max() if y.shape[-1] > 1 else torch.zeros(())
        tau_max = 10 * max(float(spread), float(sigma.max()), tau_scale if tau_prior != "uniform" else 0.0)
    if tau_max <= 0 or num_grid < 10:
        raise ValueError("tau_max must be positive and num_grid >= 10")
    h = tau_max / num_grid
    grid = (torch.arange(num_grid, dtype=y.dtype, device=y.device) + 0.5) * h  # (G,)
    if not (callable(tau_prior) or tau_prior in ("uniform", "half_cauchy", "half_normal")):
        raise ValueError(f"tau_prior must be 'uniform', 'half_cauchy', 'half_normal' or a callable, got {tau_prior!r}")
    lw = _log_marginal_tau(grid, y, sigma, mu_loc, mu_scale, tau_prior, tau_scale)
    if not torch.isfinite(lw).all():
        raise ValueError("log p(tau | y) is not finite on the grid; check tau_prior")
    lw = lw - torch.logsumexp(lw, -1, keepdim=True)
    if (torch.logsumexp(lw[..., -(num_grid // 10):], -1) > math.log(1e-6)).any():
        warnings.warn("p(tau | y) puts more than 1e-6 of its mass on the last 10% of the grid; raise tau_max "
                      "(under a uniform prior the posterior is improper for J <= 2)", RuntimeWarning)
    return HierarchicalNormalPosterior(y, sigma, grid, h, lw, float(mu_loc), float(mu_scale))


@dataclass
class EmpiricalBayes:
    """Type-II maximum likelihood (mu, tau) maximising log p(y | mu, tau) = sum_j log N(y_j; mu, sigma_j^2 + tau^2)."""
    mu: torch.Tensor  # (*B,)
    tau: torch.Tensor  # (*B,)
    log_marginal_likelihood: torch.Tensor  # (*B,)
    posterior: GivenTau  # theta | y at the plug-in (mu, tau) (mu_var = 0)

    def __str__(self) -> str:
        return (f"EmpiricalBayes(mu = {self.mu.reshape(-1)[:4].tolist()}, tau = {self.tau.reshape(-1)[:4].tolist()}, "
                f"log p(y | mu, tau) = {self.log_marginal_likelihood.reshape(-1)[:4].tolist()})")


def _profile(y, sigma, tau):  # tau (*B,) -> profile log lik (*B,), mu_hat (*B,)
    var = sigma ** 2 + tau[..., None] ** 2
    mu = (y / var).sum(-1) / (1 / var).sum(-1)
    return (-0.5 * (_LOG2PI + var.log() + (y - mu[..., None]) ** 2 / var)).sum(-1), mu


def empirical_bayes(y, sigma, *, tau_max: float | None = None, num_grid: int = 512, iters: int = 100) -> EmpiricalBayes:
    """Type-II ML: profile out mu (closed form given tau), grid-search tau on [0, tau_max] (including
    the boundary tau = 0) and refine by golden-section search in the best bracket. Batched."""
    y, sigma = _check(y, sigma)
    num_grid = check_int(num_grid, "num_grid", minimum=2)
    iters = check_int(iters, "iters", minimum=0)
    if tau_max is not None:
        tau_max = check_real(tau_max, "tau_max", low=0.0, low_open=True)
    if y.shape[-1] < 2:
        raise ValueError("empirical Bayes needs at least J = 2 groups")
    if tau_max is None:
        tau_max = 10 * max(float(y.std(-1).max()), float(sigma.max()))
    grid = torch.cat([torch.zeros(1, dtype=y.dtype, device=y.device),
                      tau_max * torch.logspace(-4, 0, num_grid - 1, dtype=y.dtype, device=y.device)])  # (G,)
    prof, _ = _profile(y[..., None, :], sigma[..., None, :], grid)  # (*B, G)
    best = prof.argmax(-1)
    lo = grid[(best - 1).clamp_min(0)]
    hi = grid[(best + 1).clamp_max(num_grid - 1)]
    invphi = (math.sqrt(5) - 1) / 2
    c, d = hi - invphi * (hi - lo), lo + invphi * (hi - lo)
    fc, fd = _profile(y, sigma, c)[0], _profile(y, sigma, d)[0]
    for _ in range(iters):
        left = fc > fd  # maximum in [lo, d]
        hi = torch.where(left, d, hi)
        lo = torch.where(left, lo, c)
        c_new, d_new = hi - invphi * (hi - lo), lo + invphi * (hi - lo)
        c, d = c_new, d_new
        fc, fd = _profile(y, sigma, c)[0], _profile(y, sigma, d)[0]
    tau = torch.where(fc > fd, c, d)
    # compare with the grid optimum (covers the boundary tau = 0 exactly)
    ll, mu = _profile(y, sigma, tau)
    gbest = grid[best]
    gll, gmu = _profile(y, sigma, gbest)
    use_grid = gll >= ll
    tau, mu, ll = torch.where(use_grid, gbest, tau), torch.where(use_grid, gmu, mu), torch.where(use_grid, gll, ll)
    tm, tv = _conditional_theta(y, sigma, mu, tau.clamp_min(torch.finfo(y.dtype).tiny ** 0.25))
    post = GivenTau(tm, tv, mu, torch.zeros_like(mu), _shrinkage(sigma, tau))
    return EmpiricalBayes(mu, tau, ll, post)
