"""A warmup's first metric from the curvature at each chain's starting point.

Stan starts warmup with the identity metric and learns the first estimate from the draws of its first
slow window (warmup iterations 75-100 by default).  On a badly scaled or correlated posterior the
identity makes those first 100 iterations the most expensive part of the run: NUTS needs trees of
hundreds of leapfrog steps to cross the posterior's long axes (posteriordb diamonds, 26 correlated
regression parameters: ~50-450 steps per iteration there, against ~24 per draw once the metric is
learnt, so 60 % of a 250 + 250 run's gradients).

``hessian_inverse_mass`` gives each chain the inverse of the negative Hessian of the log density at
its own starting point instead, the Laplace approximation's covariance there.  On a Gaussian
posterior that is the exact covariance; on a regression it has the design's correlations from the
first iteration; elsewhere it is a local guess the windowed adaptation replaces at the end of the
first window, as it would replace the identity.  This is the idea behind initialising the metric
from an optimiser's inverse Hessian (Pathfinder, Zhang et al. 2022; nutpie starts from
gradient-based scales), done here with one Hessian per chain.

The Hessian is the central difference of the gradient, 2 d gradient evaluations of all chains
(d: the dimension), each in the kernel's own (C, d) shape so that a compiled log density needs no
new graph.  Where the density is not locally concave (an eigenvalue of the negative Hessian <= 0)
that direction keeps the identity's unit scale; variances are clipped to [min_var, max_var]; a
chain whose Hessian is not finite (a perturbed point outside the support, an overflow) keeps the
identity.  Above ``max_dim`` dimensions (2 d evaluations and a d x d eigendecomposition per chain)
every chain keeps the identity.

Where it fails: a starting point far from the posterior's bulk on a non-Gaussian target (a funnel's
neck, a saturated logistic regression) has curvature unlike the bulk's; the clip bounds the damage
(no variance above max_var) and the first window's estimate replaces it after 100 iterations.
"""
from __future__ import annotations

import torch

from .._validate import check_finite_tensor, check_int, check_real
from .base import LogDensityFn, value_and_grad
from .compiled import CompiledLogDensity

__all__ = ["hessian_inverse_mass", "finite_difference_hessian"]


def _check_fn_position(logdensity_fn, position) -> None:
    if not callable(logdensity_fn):
        raise TypeError(f"logdensity_fn must be callable (C, d) -> (C,), got {type(logdensity_fn).__name__}")
    check_finite_tensor(position, "position")
    if position.dim() != 2 or position.numel() == 0:
        raise ValueError(f"position must be a non-empty (num_chains, dim) tensor, got shape {tuple(position.shape)}")


def finite_difference_hessian(logdensity_fn: LogDensityFn, position: torch.Tensor,
                              block: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Hessian of the log density per chain, (C, d, d), by central differences of the gradient, and
    (C,) bool: whether every evaluation of that chain was finite.  The 2 d perturbed points of all
    chains are evaluated ``block`` coordinates at a time, (2 * block * C, d) rows per call."""
    _check_fn_position(logdensity_fn, position)
    block = check_int(block, "block", minimum=1)
    C, d = position.shape
    # step: the cube root of the dtype's epsilon balances truncation (h^2) against rounding (eps / h)
    h = torch.finfo(position.dtype).eps ** (1.0 / 3.0) * position.abs().clamp(min=1.0)   # (C, d)
    cols, finite = [], torch.ones(C, dtype=torch.bool, device=position.device)
    for lo in range(0, d, block):
        idx = torch.arange(lo, min(lo + block, d), device=position.device)            # (k,)
        k = idx.numel()
        e = torch.zeros(k, C, d, dtype=position.dtype, device=position.device)        # (k, C, d)
        e[torch.arange(k), :, idx] = h[:, idx].T
        x = torch.cat([position + e, position - e]).reshape(2 * k * C, d)            # (2kC, d)
        lp, g = value_and_grad(logdensity_fn, x)
        lp, g = lp.reshape(2, k, C), g.reshape(2, k, C, d)
        finite &= lp.isfinite().all(0).all(0)
        cols.append(((g[0] - g[1]) / (2.0 * h[:, idx].T.unsqueeze(-1))).permute(1, 2, 0))   # (C, d, k)
    hess = torch.cat(cols, -1)                                          # (C, d, d): [c, :, i] = dgrad/dx_i
    finite &= hess.isfinite().flatten(1).all(1)
    return torch.where(finite[:, None, None], hess, torch.zeros_like(hess)), finite


def hessian_inverse_mass(logdensity_fn: LogDensityFn, position: torch.Tensor, dense: bool,
                         mask: torch.Tensor | None = None, min_var: float = 1e-8, max_var: float = 1e2,
                         max_dim: int = 512) -> torch.Tensor:
    """Inverse mass (C, d, d) if ``dense`` else (C, d): per chain, the regularised inverse of minus
    the Hessian at ``position`` (C, d); its diagonal for a diagonal metric (the marginal variances,
    which Stan's diagonal adaptation estimates).  Only the chains in ``mask`` (C,) bool are evaluated
    (all when None); the others, and chains (or dimensions above max_dim) where it cannot be formed,
    get the identity; see the module docstring.

    ``logdensity_fn`` is called on batches of 2 * 16 * C perturbed rows: a ``CompiledLogDensity``
    (specialised to one batch shape) is evaluated through its eager function."""
    _check_fn_position(logdensity_fn, position)
    if not isinstance(dense, bool):
        raise TypeError(f"dense must be True or False, got {dense!r}")
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool
                             or tuple(mask.shape) != position.shape[:1]):
        raise ValueError(f"mask must be a bool tensor of shape ({position.shape[0]},), got {mask!r}")
    check_real(min_var, "min_var", low=0.0, low_open=True)
    check_real(max_var, "max_var", low=min_var)
    max_dim = check_int(max_dim, "max_dim", minimum=0)
    C, d = position.shape
    dt, dev = position.dtype, position.device
    eye = torch.eye(d, dtype=dt, device=dev).expand(C, d, d)            # (C, d, d)
    cov = eye.clone()
    rows = torch.ones(C, dtype=torch.bool, device=dev) if mask is None else mask
    if d <= max_dim and bool(rows.any()):
        fn = logdensity_fn.fn if isinstance(logdensity_fn, CompiledLogDensity) else logdensity_fn
        hess, finite = finite_difference_hessian(fn, position[rows])    # (A, d, d), (A,)
        neg = -0.5 * (hess + hess.transpose(-1, -2))                    # (A, d, d) symmetric
        lam, vec = torch.linalg.eigh(neg)                               # (A, d), (A, d, d)
        # not locally concave along a direction: the identity's unit scale there
        var = torch.where(lam > 0, 1.0 / lam.clamp(min=torch.finfo(dt).tiny), torch.ones_like(lam))
        var = var.clamp(min_var, max_var)                               # (A, d)
        got = (vec * var.unsqueeze(-2)) @ vec.transpose(-1, -2)         # (A, d, d)
        got = 0.5 * (got + got.transpose(-1, -2))
        cov[rows] = torch.where(finite[:, None, None], got, eye[rows])
    return cov if dense else torch.diagonal(cov, dim1=-2, dim2=-1).clone()
