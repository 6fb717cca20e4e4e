"""Laplace approximation: MAP by L-BFGS, Gaussian N(θ*, H^-1) with H = -∇² log p(y, θ) at the mode.

* ``laplace(log_joint, init)`` for a log density over R^d (dense Hessian by autograd; small d).
* ``laplace_nn(model, X, y)`` for a torch ``nn.Module`` (all parameters or only the last nn.Linear),
  Hessian ``"full"`` (exact, autograd), ``"diag"`` (exact diagonal, small nets), ``"ggn"`` or
  ``"ggn_diag"`` (generalised Gauss-Newton J^T Λ J + prior precision), and the linearised predictive
  f(x) ~ N(f_θ*(x), J Σ J^T) with J = ∂f/∂θ at the mode.

Log evidence: log p(y) ≈ log p(y, θ*) + d/2 log 2π - 1/2 log det H (exact for Gaussian-linear models).
A Hessian that is not positive definite at the mode raises a ValueError unless ``jitter`` is given,
in which case jitter * I is added and a warning says so; results are never silently NaN.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, jacrev

from ._validate import check_finite_tensor, check_generator, check_int, check_real

__all__ = ["LaplaceConfig", "LaplaceResult", "find_map", "laplace", "NNLaplaceResult", "laplace_nn", "factor_precision"]


@dataclass(frozen=True)
class LaplaceConfig:
    max_iter: int = 500          # L-BFGS iterations (each with a strong-Wolfe line search); ample for d <= 1e4
    history_size: int = 50       # L-BFGS memory: more curvature pairs, faster on ill-conditioned problems
    tolerance_grad: float = 1e-10  # stop when max |gradient| is below this: modes accurate to ~1e-10
    tolerance_change: float = 1e-14  # stop when the objective stalls at this relative change
    grad_warn: float = 1e-4      # warn if the final max |gradient| exceeds this (not at a mode)
    jitter: float | None = None  # None: raise on a non-PD Hessian; float: add jitter * I with a warning

    def __post_init__(self):
        for name in ("max_iter", "history_size"):
            object.__setattr__(self, name, check_int(getattr(self, name), name, minimum=1))
        for name in ("tolerance_grad", "tolerance_change", "grad_warn"):
            object.__setattr__(self, name, check_real(getattr(self, name), name, low=0.0))
        object.__setattr__(self, "jitter", _check_jitter(self.jitter))


def _check_jitter(jitter) -> float | None:
    return None if jitter is None else check_real(jitter, "jitter", low=0.0, low_open=True)


def _check_config(config) -> "LaplaceConfig":
    if config is None:
        return LaplaceConfig()
    if not isinstance(config, LaplaceConfig):
        raise TypeError(f"config must be a LaplaceConfig, got {type(config).__name__}")
    return config


def find_map(neg_log_joint: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor,
             config: LaplaceConfig | None = None) -> tuple[torch.Tensor, float, float]:
    """Minimise ``neg_log_joint`` (θ (d,) -> scalar) by L-BFGS with strong-Wolfe line search.
    Returns (θ*, objective at θ*, max |gradient| at θ*)."""
    cfg = _check_config(config)
    if not callable(neg_log_joint):
        raise TypeError(f"neg_log_joint must be callable, got {type(neg_log_joint).__name__}")
    check_finite_tensor(init, "init")
    theta = init.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=cfg.max_iter, history_size=cfg.history_size,
                            tolerance_grad=cfg.tolerance_grad, tolerance_change=cfg.tolerance_change,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        val = neg_log_joint(theta)
        if not torch.isfinite(val):
            raise ValueError(f"the log density is not finite at θ = {theta.detach().tolist()[:8]}")
        val.backward()
        return val
    opt.step(closure)
    val = neg_log_joint(theta)
    (grad,) = torch.autograd.grad(val, theta)
    gmax = float(grad.abs().max()) if grad.numel() else 0.0
    if gmax > cfg.grad_warn:
        warnings.warn(f"L-BFGS stopped with max |gradient| = {gmax:.2e} > {cfg.grad_warn}; the Laplace "
                      "approximation may not be centred at a mode", RuntimeWarning)
    return theta.detach(), float(val.detach()), gmax


def _pd_ok(h: torch.Tensor) -> tuple[bool, float]:
    """Is h numerically positive definite? Eigenvalues (or diagonal entries) must exceed
    d * eps * max|eigenvalue| (a singular matrix can pass Cholesky with a round-off pivot)."""
    ev = h if h.ndim == 1 else torch.linalg.eigvalsh(h)
    tol = h.shape[-1] * torch.finfo(h.dtype).eps * 10 * float(ev.abs().max().clamp_min(torch.finfo(h.dtype).tiny))
    return bool((ev > tol).all()), float(ev.min())


def factor_precision(h: torch.Tensor, jitter: float | None = None, what: str = "Hessian") -> tuple[torch.Tensor, float]:
    """Cholesky factor of a precision matrix h (d, d), or sqrt of a diagonal precision (d,).
    Not (numerically) positive definite: ValueError, or with ``jitter`` add jitter * I and warn.
    Returns (factor, jitter used)."""
    jitter = _check_jitter(jitter)
    if not isinstance(h, torch.Tensor):
        raise TypeError(f"h must be a torch.Tensor, got {type(h).__name__}")
    if not h.is_floating_point() or h.ndim not in (1, 2) or (h.ndim == 2 and h.shape[0] != h.shape[1]) or h.numel() == 0:
        raise ValueError(f"h must be a non-empty floating (d, d) precision matrix or its (d,) diagonal, got "
                         f"shape {tuple(h.shape)} and dtype {h.dtype}")
    if not torch.isfinite(h).all():
        raise ValueError(f"the {what} at the mode contains NaN or inf")
    ok, eig = _pd_ok(h)
    used = 0.0
    if not ok:
        msg = (f"the {what} of the negative log density at the MAP is not positive definite (smallest eigenvalue "
               f"{eig:.3e}): the mode may be a saddle point or the model not identifiable")
        if jitter is None:
            raise ValueError(msg + "; pass jitter=<float> to add jitter * I (documented, with a warning)")
        warnings.warn(msg + f"; adding jitter {jitter:g} * I", RuntimeWarning)
        h = h + jitter * (torch.ones_like(h) if h.ndim == 1 else torch.eye(h.shape[-1], dtype=h.dtype, device=h.device))
        used = float(jitter)
        if not _pd_ok(h)[0]:
            raise ValueError(msg + f"; still not positive definite after adding jitter {jitter:g} * I")
    return (h.sqrt() if h.ndim == 1 else torch.linalg.cholesky(h)), used


@dataclass
class LaplaceResult:
    """Gaussian approximation N(mode, precision^-1) and the Laplace log evidence."""
    mode: torch.Tensor  # (d,)
    precision: torch.Tensor  # (d, d)
    scale_tril: torch.Tensor  # (d, d) Cholesky factor of the covariance
    log_joint: float  # log p(y, θ*)
    log_evidence: float
    jitter: float
    grad_norm: float

    @property
    def covariance(self) -> torch.Tensor:
        return self.scale_tril @ self.scale_tril.T

    def dist(self) -> torch.distributions.MultivariateNormal:
        return torch.distributions.MultivariateNormal(self.mode, scale_tril=self.scale_tril)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n draws (n, d) from the Laplace approximation."""
        n, generator = check_int(n, "n", minimum=1), check_generator(generator)
        eps = torch.randn(n, self.mode.shape[-1], generator=generator, dtype=self.mode.dtype,
                          device=generator.device).to(self.mode.device)
        return self.mode + eps @ self.scale_tril.T

    def __str__(self) -> str:
        sd = torch.diagonal(self.covariance).sqrt()
        rows = [f"  θ[{i}]  mode {float(m):10.4f}  sd {float(s):10.4f}" for i, (m, s) in enumerate(zip(self.mode, sd))][:20]
        return "\n".join([f"LaplaceResult(log evidence = {self.log_evidence:.4f}, log p(y, θ*) = {self.log_joint:.4f}, "
                          f"jitter = {self.jitter:g})"] + rows)


def laplace(log_joint: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor, *, optimize: bool = True,
            config: LaplaceConfig | None = None, jitter: float | None = None) -> LaplaceResult:
    """Laplace approximation of the posterior ∝ exp(log_joint(θ)), θ (d,) -> scalar (log p(y, θ),
    normalised, so that the evidence is meaningful). ``optimize=False`` takes ``init`` as the mode."""
    cfg = _check_config(config)
    jitter = cfg.jitter if jitter is None else _check_jitter(jitter)
    if not callable(log_joint):
        raise TypeError(f"log_joint must be callable, got {type(log_joint).__name__}")
    if isinstance(init, (str, bytes)) or init is None:
        raise TypeError(f"init must be a 1-d tensor (d,), got {type(init).__name__}")
    init = torch.as_tensor(init)
    if init.ndim != 1 or init.numel() == 0:
        raise ValueError(f"init must be a non-empty 1-d tensor (d,), got shape {tuple(init.shape)}")
    if not init.is_floating_point():
        init = init.double()
    check_finite_tensor(init, "init")
    neg = lambda t: -log_joint(t)  # noqa: E731
    if optimize:
        mode, val, gmax = find_map(neg, init, cfg)
    else:
        mode, val, gmax = init.detach(), float(neg(init.detach())), float("nan")
    h = torch.autograd.functional.hessian(neg, mode)  # (d, d)
    h = 0.5 * (h + h.T)
    chol, used = factor_precision(h, jitter)
    h = h + used * torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    d = mode.shape[0]
    logdet = 2 * torch.diagonal(chol).log().sum()
    log_ev = -val + 0.5 * d * math.log(2 * math.pi) - 0.5 * float(logdet)
    eye = torch.eye(d, dtype=h.dtype, device=h.device)
    cov_tril = torch.linalg.cholesky(torch.cholesky_inverse(chol)) if d else eye
    return LaplaceResult(mode, h, cov_tril, -val, log_ev, used, gmax)


# -------------------------------------------------------------------------------------- nn.Module
@dataclass
class NNLaplaceResult:
    """Laplace posterior over the selected parameters of a network (flattened, order ``names``)."""
    model: nn.Module
    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    mode: torch.Tensor  # (P,)
    precision: torch.Tensor  # (P, P) or (P,) for diagonal structures
    log_joint: float
    log_evidence: float
    hessian: str
    jitter: float

    @property
    def covariance(self) -> torch.Tensor:
        """(P, P) covariance (diagonal structures give a diagonal matrix)."""
        if self.precision.ndim == 1:
            return torch.diag(1.0 / self.precision)
        return torch.cholesky_inverse(torch.linalg.cholesky(self.precision))

    def _f(self, theta, x):
        params = {n: t for n, t in zip(self.names, _unflatten(theta, self.shapes))}
        return functional_call(self.model, params, (x,))

    def predictive(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Linearised predictive of the network output: mean f_θ*(x) (B, O) and covariance
        J Σ J^T (B, O, O) with J = ∂f(x)/∂θ at the mode. Add the noise variance for y itself."""
        with torch.no_grad():
            mean = self._f(self.mode, x)
        if mean.ndim == 1:
            mean = mean[:, None]
        jac = jacrev(lambda t: self._f(t, x).reshape(x.shape[0], -1))(self.mode).detach()  # (B, O, P)
        if self.precision.ndim == 1:
            var = torch.einsum("bop,p,bqp->boq", jac, 1.0 / self.precision, jac)
        else:
            var = jac @ torch.cholesky_solve(jac.transpose(-1, -2), torch.linalg.cholesky(self.precision))
        return mean, var

    def __str__(self) -> str:
        return (f"NNLaplaceResult({len(self.mode)} parameters of {', '.join(self.names)}; hessian = {self.hessian}; "
                f"log evidence = {self.log_evidence:.4f}; log p(y, θ*) = {self.log_joint:.4f}; jitter = {self.jitter:g})")


def _unflatten(theta: torch.Tensor, shapes):
    out, i = [], 0
    for s in shapes:
        n = math.prod(s)
        out.append(theta[i:i + n].reshape(s))
        i += n
    return out


def _last_linear(model: nn.Module) -> str:
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    if last is None:
        raise ValueError("subset='last_layer' needs an nn.Linear layer in the model")
    return last


def laplace_nn(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, likelihood: str = "regression",
               sigma_noise: float = 1.0, prior_precision: float = 1.0, subset: str = "all",
               hessian: str = "full", fit_map: bool = False, config: LaplaceConfig | None = None,
               jitter: float | None = None) -> NNLaplaceResult:
    """Laplace approximation for a network's parameters with an isotropic prior N(0, 1/prior_precision).

    ``likelihood``: "regression" (y ~ N(f(x), sigma_noise^2), y (N,) or (N, O)) or "classification"
    (y (N,) class indices, softmax of f(x)). ``subset``: "all" or "last_layer" (the last nn.Linear;
    other parameters stay fixed). ``fit_map``: first run L-BFGS on the selected parameters.
    """
    cfg = _check_config(config)
    jitter = cfg.jitter if jitter is None else _check_jitter(jitter)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_finite_tensor(X, "X")
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    check_finite_tensor(y, "y", floating=likelihood != "classification")
    if X.ndim < 1 or X.shape[0] < 1:
        raise ValueError(f"X must have at least one row, got shape {tuple(X.shape)}")
    sigma_noise = check_real(sigma_noise, "sigma_noise", low=0.0, low_open=True)
    prior_precision = check_real(prior_precision, "prior_precision", low=0.0, low_open=True)
    if not isinstance(fit_map, bool):
        raise TypeError(f"fit_map must be a bool, got {type(fit_map).__name__}")
    if likelihood not in ("regression", "classification"):
        raise ValueError(f"likelihood must be 'regression' or 'classification', got {likelihood!r}")
    if hessian not in ("full", "diag", "ggn", "ggn_diag"):
        raise ValueError(f"hessian must be 'full', 'diag', 'ggn' or 'ggn_diag', got {hessian!r}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y need the same number of rows, got {X.shape[0]} and {y.shape[0]}")
    if subset == "all":
        sel = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    elif subset == "last_layer":
        prefix = _last_linear(model)
        sel = [(f"{prefix}.{n}" if prefix else n, p) for n, p in model.get_submodule(prefix).named_parameters()]
    else:
        raise ValueError(f"subset must be 'all' or 'last_layer', got {subset!r}")
    names = tuple(n for n, _ in sel)
    shapes = tuple(p.shape for _, p in sel)
    theta0 = torch.cat([p.detach().reshape(-1) for _, p in sel])
    npar = theta0.numel()

    def f(theta, x=X):
        return functional_call(model, dict(zip(names, _unflatten(theta, shapes))), (x,))

    def log_lik(theta):
        out = f(theta)
        if likelihood == "regression":
            yy = y.reshape(out.shape)
            return torch.distributions.Normal(out, sigma_noise).log_prob(yy).sum()
        return -torch.nn.functional.cross_entropy(out, y, reduction="sum")

    def log_prior(theta):
        return (-0.5 * prior_precision * (theta ** 2).sum() + 0.5 * npar * math.log(prior_precision / (2 * math.pi)))

    neg = lambda t: -(log_lik(t) + log_prior(t))  # noqa: E731
    if fit_map:
        mode, val, _ = find_map(neg, theta0, cfg)
    else:
        mode = theta0
        t = mode.clone().requires_grad_(True)
        v = neg(t)
        (g,) = torch.autograd.grad(v, t)
        val = float(v.detach())
        if float(g.abs().max()) > cfg.grad_warn:
            warnings.warn(f"max |gradient| of the negative log posterior is {float(g.abs().max()):.2e} at the given "
                          "parameters: not a mode; train further or pass fit_map=True", RuntimeWarning)
    if hessian in ("full", "diag"):
        h = torch.autograd.functional.hessian(neg, mode)  # (P, P)
        h = 0.5 * (h + h.T)
        if hessian == "diag":
            h = torch.diagonal(h).clone()
    else:
        jac = jacrev(lambda t: f(t).reshape(X.shape[0], -1))(mode)  # (N, O, P)
        if likelihood == "regression":
            lam = None
        else:
            with torch.no_grad():
                p = torch.softmax(f(mode), -1)  # (N, O)
            lam = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (N, O, O)
        if hessian == "ggn":
            h = (torch.einsum("nop,noq->pq", jac, jac) / sigma_noise ** 2 if lam is None
                 else torch.einsum("nop,nor,nrq->pq", jac, lam, jac))
            h = h + prior_precision * torch.eye(npar, dtype=h.dtype, device=h.device)
        else:
            h = ((jac ** 2).sum((0, 1)) / sigma_noise ** 2 if lam is None
                 else torch.einsum("nop,nor,nrp->p", jac, lam, jac)) + prior_precision
    h = h.detach()  # the fixed (non-selected) parameters require grad; the precision must not
    fac, used = factor_precision(h, jitter)
    if h.ndim == 1:
        h = h + used
        logdet = 2 * fac.log().sum()
    else:
        h = h + used * torch.eye(npar, dtype=h.dtype, device=h.device)
        logdet = 2 * torch.diagonal(fac).log().sum()
    log_ev = -val + 0.5 * npar * math.log(2 * math.pi) - 0.5 * float(logdet)
    with torch.no_grad():  # write the mode back so the module predicts at the MAP
        for (_, p), t in zip(sel, _unflatten(mode, shapes)):
            p.copy_(t)
    return NNLaplaceResult(model, names, shapes, mode, h, -val, log_ev, hessian, used)
