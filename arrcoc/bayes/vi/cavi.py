"""Coordinate-ascent VI (CAVI) for two conjugate-exponential models, batched over leading dims.

Bayesian linear regression  y = X w + e,  e ~ N(0, 1 / tau),  w ~ N(m0, Lambda0^-1),  tau ~ Gamma(a0, b0)
(rate b0). Mean-field q(w) q(tau) = N(w; m, S) Gamma(tau; a, b). With the noise precision known
(``noise_precision=``) q(w) is the exact posterior and the ELBO equals the log evidence.

Gaussian mixture with known isotropic component variance (Blei, Kucukelbir & McAuliffe 2017, sec. 3):
mu_k ~ N(m0, s0^2 I), c_i ~ Cat(pi), x_i | c_i, mu ~ N(mu_{c_i}, sigma^2 I);
q(mu_k) = N(m_k, s_k^2 I), q(c_i) = Cat(phi_i).

Both iterate closed-form updates until the relative ELBO change is below ``tol`` (ELBO is
non-decreasing in CAVI, checked by the tests) and return dataclasses with ``sample(n, generator)``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from .._validate import check_finite_tensor, check_generator, check_int, check_real

__all__ = ["LinearRegressionCAVI", "cavi_linear_regression", "GaussianMixtureCAVI", "cavi_gaussian_mixture"]

_LOG2PI = math.log(2 * math.pi)


@dataclass
class LinearRegressionCAVI:
    """q(w) = N(mean, cov) and q(tau) = Gamma(a, b) (tau fixed at ``noise_precision`` if known)."""
    mean: torch.Tensor  # (*batch, D)
    cov: torch.Tensor  # (*batch, D, D)
    a: torch.Tensor | None  # (*batch,)
    b: torch.Tensor | None  # (*batch,)
    elbo: torch.Tensor  # (*batch,)
    elbo_trace: torch.Tensor  # (iters, *batch)
    num_iter: int
    converged: bool

    @property
    def tau_mean(self) -> torch.Tensor | None:
        return None if self.a is None else self.a / self.b

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Draws {'w': (n, *batch, D), 'tau': (n, *batch)} from q."""
        n, generator = check_int(n, "n", minimum=1), check_generator(generator)
        l = torch.linalg.cholesky(self.cov)
        eps = torch.randn((n,) + tuple(self.mean.shape), generator=generator, dtype=self.mean.dtype,
                          device=generator.device).to(self.mean.device)
        out = {"w": self.mean + (l @ eps.unsqueeze(-1)).squeeze(-1)}
        if self.a is not None:
            conc = self.a.expand((n,) + tuple(self.a.shape)).contiguous()
            out["tau"] = torch._standard_gamma(conc, generator=generator) / self.b
        return out

    def __str__(self) -> str:
        tau = "" if self.a is None else f", E[tau] = {self.tau_mean.flatten()[:4].tolist()}"
        return (f"LinearRegressionCAVI(ELBO = {self.elbo.flatten()[:4].tolist()}, iterations = {self.num_iter}, "
                f"converged = {self.converged}{tau})\n  E[w] = {self.mean.flatten()[:8].tolist()}")


def _check_regression(X, y, m0, prior_precision):
    check_finite_tensor(X, "X")
    check_finite_tensor(y, "y")
    if X.ndim < 2:
        raise ValueError(f"X must have shape (*batch, N, D), got {tuple(X.shape)}")
    if y.shape != X.shape[:-1]:
        raise ValueError(f"y must have shape {tuple(X.shape[:-1])} (= X.shape[:-1]), got {tuple(y.shape)}")
    d = X.shape[-1]
    m0 = torch.zeros(d, dtype=X.dtype, device=X.device) if m0 is None else torch.as_tensor(m0, dtype=X.dtype, device=X.device)
    lam0 = torch.as_tensor(prior_precision, dtype=X.dtype, device=X.device)
    if lam0.ndim == 0:
        lam0 = lam0 * torch.eye(d, dtype=X.dtype, device=X.device)
    elif lam0.ndim == 1:
        lam0 = torch.diag_embed(lam0)
    if lam0.shape[-2:] != (d, d):
        raise ValueError(f"prior_precision must be a scalar, (D,) or (D, D) with D = {d}, got {tuple(lam0.shape)}")
    if m0.shape[-1:] != (d,):
        raise ValueError(f"prior_mean must have last dim D = {d}, got {tuple(m0.shape)}")
    check_finite_tensor(m0, "prior_mean")
    check_finite_tensor(lam0, "prior_precision")
    if not (torch.linalg.eigvalsh(0.5 * (lam0 + lam0.transpose(-1, -2))) > 0).all():
        raise ValueError("prior_precision must be positive definite (a scalar or entries > 0)")
    return m0, lam0


def cavi_linear_regression(X: torch.Tensor, y: torch.Tensor, *, prior_mean=None, prior_precision=1.0,
                           a0: float = 1.0, b0: float = 1.0, noise_precision=None, max_iter: int = 500,
                           tol: float = 1e-12) -> LinearRegressionCAVI:
    """CAVI for Bayesian linear regression; X (*batch, N, D), y (*batch, N)."""
    m0, lam0 = _check_regression(X, y, prior_mean, prior_precision)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    tol = check_real(tol, "tol", low=0.0)
    if noise_precision is None:
        a0 = check_real(a0, "a0", low=0.0, low_open=True)
        b0 = check_real(b0, "b0", low=0.0, low_open=True)
    else:
        noise = torch.as_tensor(noise_precision, dtype=X.dtype, device=X.device)
        if not (torch.isfinite(noise) & (noise > 0)).all():
            raise ValueError(f"noise_precision must be finite and > 0, got {noise.flatten()[:5].tolist()}")
    n, d = X.shape[-2], X.shape[-1]
    xtx = X.transpose(-1, -2) @ X  # (*B, D, D)
    xty = (X.transpose(-1, -2) @ y.unsqueeze(-1)).squeeze(-1)  # (*B, D)
    lam0_m0 = (lam0 @ m0.unsqueeze(-1)).squeeze(-1)
    logdet_lam0 = torch.linalg.slogdet(lam0)[1]
    known = noise_precision is not None
    a0_t = torch.as_tensor(a0, dtype=X.dtype, device=X.device)
    b0_t = torch.as_tensor(b0, dtype=X.dtype, device=X.device)
    if known:
        e_tau = torch.as_tensor(noise_precision, dtype=X.dtype, device=X.device).expand(y.shape[:-1])
        if not (e_tau > 0).all():
            raise ValueError("noise_precision must be positive")
    else:
        if not (a0_t > 0).all() or not (b0_t > 0).all():
            raise ValueError("a0 and b0 must be positive")
        a = (a0_t + n / 2).expand(y.shape[:-1])
        e_tau = (a0_t / b0_t).expand(y.shape[:-1])
    trace, converged, it = [], False, 0
    for it in range(1, max_iter + 1):
        prec = lam0 + e_tau[..., None, None] * xtx  # (*B, D, D)
        chol = torch.linalg.cholesky(prec)
        cov = torch.cholesky_inverse(chol)
        mean = (cov @ (lam0_m0 + e_tau[..., None] * xty).unsqueeze(-1)).squeeze(-1)  # (*B, D)
        resid = y - (X @ mean.unsqueeze(-1)).squeeze(-1)
        e_sq = (resid ** 2).sum(-1) + (xtx * cov).sum((-2, -1))  # E||y - Xw||^2
        if known:
            e_log_tau = e_tau.log()
        else:
            b = b0_t + 0.5 * e_sq
            e_tau = a / b
            e_log_tau = torch.digamma(a) - b.log()
        dm = mean - m0
        e_log_lik = 0.5 * n * (e_log_tau - _LOG2PI) - 0.5 * e_tau * e_sq
        e_log_pw = 0.5 * (logdet_lam0 - d * _LOG2PI) - 0.5 * ((dm.unsqueeze(-2) @ lam0 @ dm.unsqueeze(-1))[..., 0, 0] + (lam0 * cov).sum((-2, -1)))
        h_w = 0.5 * d * (1 + _LOG2PI) - torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
        value = e_log_lik + e_log_pw + h_w
        if not known:
            e_log_pt = a0_t * b0_t.log() - torch.lgamma(a0_t) + (a0_t - 1) * e_log_tau - b0_t * e_tau
            h_t = a - b.log() + torch.lgamma(a) + (1 - a) * torch.digamma(a)
            value = value + e_log_pt + h_t
        trace.append(value)
        if known or (len(trace) > 1 and ((trace[-1] - trace[-2]).abs() / trace[-1].abs().clamp_min(1)).max() < tol):
            converged = True
            break
    if not converged:
        warnings.warn(f"CAVI did not converge in {max_iter} iterations", RuntimeWarning)
    return LinearRegressionCAVI(mean, cov, None if known else a, None if known else b, trace[-1],
                                torch.stack(trace), it, converged)


@dataclass
class GaussianMixtureCAVI:
    """q(mu_k) = N(means_k, variances_k I), q(c_i) = Cat(resp_i)."""
    means: torch.Tensor  # (*batch, K, D)
    variances: torch.Tensor  # (*batch, K)
    resp: torch.Tensor  # (*batch, N, K)
    elbo: torch.Tensor  # (*batch,)
    elbo_trace: torch.Tensor  # (iters, *batch)
    num_iter: int
    converged: bool

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Draws {'mu': (n, *batch, K, D), 'c': (n, *batch, N)} from q."""
        n, generator = check_int(n, "n", minimum=1), check_generator(generator)
        dev = generator.device
        eps = torch.randn((n,) + tuple(self.means.shape), generator=generator, dtype=self.means.dtype, device=dev).to(self.means.device)
        mu = self.means + self.variances.sqrt().unsqueeze(-1) * eps
        k = self.resp.shape[-1]
        c = torch.multinomial(self.resp.reshape(-1, k).to(dev), n, replacement=True, generator=generator)  # (B*N, n)
        c = c.T.reshape((n,) + tuple(self.resp.shape[:-1])).to(self.means.device)
        return {"mu": mu, "c": c}

    def __str__(self) -> str:
        return (f"GaussianMixtureCAVI(ELBO = {self.elbo.flatten()[:4].tolist()}, iterations = {self.num_iter}, "
                f"converged = {self.converged})\n  E[mu] = {self.means.flatten()[:8].tolist()}")


def cavi_gaussian_mixture(x: torch.Tensor, num_components: int, *, generator: torch.Generator | None = None,
                          sigma: float = 1.0, prior_mean: float = 0.0, prior_scale: float = 5.0,
                          weights=None, init_means: torch.Tensor | None = None, max_iter: int = 500,
                          tol: float = 1e-10) -> GaussianMixtureCAVI:
    """CAVI for a K-component mixture of N(mu_k, sigma^2 I); x (*batch, N, D) (or (N,) for 1-d data).
    Means start at ``init_means`` (*batch, K, D) or at K distinct data points drawn with ``generator``
    (required then: the global RNG is never used)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim < 2:
        raise ValueError(f"x must have shape (*batch, N, D), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    k, (n, d) = check_int(num_components, "num_components", minimum=1), x.shape[-2:]
    if k < 1 or k > n:
        raise ValueError(f"num_components must be in [1, N = {n}], got {num_components}")
    sigma = check_real(sigma, "sigma", low=0.0, low_open=True)
    prior_scale = check_real(prior_scale, "prior_scale", low=0.0, low_open=True)
    prior_mean = check_real(prior_mean, "prior_mean")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    tol = check_real(tol, "tol", low=0.0)
    if init_means is None:
        generator = check_generator(generator)  # random initial means need explicit randomness
    elif generator is not None:
        check_generator(generator)
    if weights is not None:
        wt = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
        if not (torch.isfinite(wt).all() and (wt > 0).all()) or abs(float(wt.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must be positive and sum to 1, got {wt.flatten()[:5].tolist()}")
    batch = x.shape[:-2]
    log_pi = (torch.full((k,), -math.log(k), dtype=x.dtype, device=x.device) if weights is None
              else torch.as_tensor(weights, dtype=x.dtype, device=x.device).log())
    if log_pi.shape[-1] != k:
        raise ValueError(f"weights must have {k} entries, got shape {tuple(log_pi.shape)}")
    s2, v0 = sigma ** 2, prior_scale ** 2
    if init_means is None:
        dev = generator.device
        idx = torch.stack([torch.randperm(n, generator=generator, device=dev)[:k] for _ in range(max(1, math.prod(batch)))])
        idx = idx.reshape(*batch, k).to(x.device)
        m = torch.gather(x, -2, idx.unsqueeze(-1).expand(*batch, k, d)).clone()  # (*B, K, D)
    else:
        m = torch.as_tensor(init_means, dtype=x.dtype, device=x.device)
        try:
            m = m.expand(*batch, k, d).clone()
        except RuntimeError:
            raise ValueError(f"init_means must broadcast to (*batch, K, D) = {(*batch, k, d)}, got {tuple(m.shape)}") from None
        check_finite_tensor(m, "init_means")
    v = torch.full((*batch, k), v0, dtype=x.dtype, device=x.device)
    trace, converged, it = [], False, 0
    x2 = (x ** 2).sum(-1, keepdim=True)  # (*B, N, 1)
    for it in range(1, max_iter + 1):
        # q(c): phi_ik ∝ pi_k exp(E[log N(x_i; mu_k, s2 I)])
        e_sq = x2 - 2 * x @ m.transpose(-1, -2) + ((m ** 2).sum(-1) + d * v).unsqueeze(-2)  # (*B, N, K)
        logits = log_pi - 0.5 * e_sq / s2
        phi = torch.softmax(logits, -1)
        # q(mu_k)
        nk = phi.sum(-2)  # (*B, K)
        v = 1.0 / (1.0 / v0 + nk / s2)
        m = v.unsqueeze(-1) * (prior_mean / v0 + (phi.transpose(-1, -2) @ x) / s2)  # (*B, K, D)
        # ELBO
        e_sq = x2 - 2 * x @ m.transpose(-1, -2) + ((m ** 2).sum(-1) + d * v).unsqueeze(-2)
        e_lik = (phi * (-0.5 * d * math.log(2 * math.pi * s2) - 0.5 * e_sq / s2)).sum((-2, -1))
        e_pmu = (-0.5 * d * math.log(2 * math.pi * v0) - 0.5 * (((m - prior_mean) ** 2).sum(-1) + d * v) / v0).sum(-1)
        e_pc = (phi * log_pi).sum((-2, -1))
        h_c = -(phi * torch.log(phi.clamp_min(1e-300))).sum((-2, -1))
        h_mu = (0.5 * d * (torch.log(2 * math.pi * math.e * v))).sum(-1)
        trace.append(e_lik + e_pmu + e_pc + h_c + h_mu)
        if len(trace) > 1 and ((trace[-1] - trace[-2]).abs() / trace[-1].abs().clamp_min(1)).max() < tol:
            converged = True
            break
    if not converged:
        warnings.warn(f"CAVI did not converge in {max_iter} iterations", RuntimeWarning)
    return GaussianMixtureCAVI(m, v, phi, trace[-1], torch.stack(trace), it, converged)
