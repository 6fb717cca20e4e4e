"""Gaussian variational families over R^d (nn.Modules holding the variational parameters).

``MeanFieldNormal``: q(z) = prod_i N(z_i; m_i, s_i^2), parameters m and log s (2d numbers).
``FullRankNormal``: q(z) = N(z; m, L L^T), L lower triangular with positive (exp) diagonal.
Both draw with an explicit ``torch.Generator`` (reparameterised), give log q, entropy, analytic KL to a
Gaussian, and a ``torch.distributions`` view. ``gaussian_prior_params`` turns a Gaussian prior into
(mean, scale_tril) for the analytic KL, or returns None for non-Gaussian priors.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from .._validate import check_finite_tensor, check_generator, check_int

__all__ = ["GaussianFamily", "MeanFieldNormal", "FullRankNormal", "gaussian_kl", "gaussian_prior_params"]


def gaussian_kl(m_q: torch.Tensor, l_q: torch.Tensor, m_p: torch.Tensor, l_p: torch.Tensor) -> torch.Tensor:
    """KL(N(m_q, L_q L_q^T) || N(m_p, L_p L_p^T)) for (d,) means and (d, d) lower Cholesky factors."""
    for name, t in (("m_q", m_q), ("l_q", l_q), ("m_p", m_p), ("l_p", l_p)):
        check_finite_tensor(t, name)
    d = m_q.shape[-1]
    for name, t, shape in (("m_p", m_p, (d,)), ("l_q", l_q, (d, d)), ("l_p", l_p, (d, d))):
        if t.shape[-len(shape):] != shape:
            raise ValueError(f"{name} must have trailing shape {shape} (d = {d} from m_q), got {tuple(t.shape)}")
    for name, t in (("l_q", l_q), ("l_p", l_p)):
        if not bool((torch.diagonal(t, dim1=-2, dim2=-1) > 0).all()):
            raise ValueError(f"{name} must be a lower Cholesky factor with a positive diagonal")
    a = torch.linalg.solve_triangular(l_p, l_q, upper=False)  # (d, d) L_p^-1 L_q
    diff = torch.linalg.solve_triangular(l_p, (m_p - m_q)[..., None], upper=False)[..., 0]  # (d,)
    logdet = 2 * (torch.diagonal(l_p, dim1=-2, dim2=-1).log().sum(-1) - torch.diagonal(l_q, dim1=-2, dim2=-1).log().sum(-1))
    return 0.5 * ((a ** 2).sum((-2, -1)) + (diff ** 2).sum(-1) - d + logdet)


def gaussian_prior_params(prior, dim: int | None = None):
    """(mean (d,), scale_tril (d, d)) of a Gaussian prior over R^d, or None if ``prior`` is not one.
    Accepts MultivariateNormal, Independent(Normal, 1) and Normal (broadcast to ``dim``)."""
    dim = None if dim is None else check_int(dim, "dim", minimum=1)
    if isinstance(prior, MultivariateNormal) and prior.batch_shape == ():
        return prior.loc, prior.scale_tril
    base = prior.base_dist if isinstance(prior, Independent) and prior.reinterpreted_batch_ndims == 1 else prior
    if isinstance(base, Normal):
        loc, scale = base.loc, base.scale
        if dim is not None:
            loc, scale = loc.expand(dim), scale.expand(dim)
        if loc.ndim != 1:
            return None
        return loc, torch.diag_embed(scale)
    return None


class GaussianFamily(nn.Module):
    """Common parts of the Gaussian families; subclasses define ``scale_tril()``."""

    loc: nn.Parameter

    @property
    def dim(self) -> int:
        return self.loc.shape[-1]

    def scale_tril(self) -> torch.Tensor:  # (d, d)
        raise NotImplementedError

    @staticmethod
    def _init_loc_log_scale(dim: int, loc, scale, dtype, device) -> tuple[nn.Parameter, nn.Parameter]:
        """Initial ``loc`` (d,) (zeros by default) and per-coordinate log scale (d,) as parameters."""
        dim = check_int(dim, "dim", minimum=1)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        loc = torch.zeros(dim, dtype=dtype, device=device) if loc is None else torch.as_tensor(loc, dtype=dtype, device=device).clone()
        if loc.shape != (dim,):
            raise ValueError(f"loc must have shape ({dim},), got {tuple(loc.shape)}")
        check_finite_tensor(loc, "loc")
        if isinstance(scale, bool) or not isinstance(scale, (int, float, torch.Tensor)):
            raise TypeError(f"scale must be a number or a tensor, got {type(scale).__name__}")
        scale = torch.as_tensor(scale, dtype=dtype, device=device)
        if scale.numel() not in (1, dim) or not (torch.isfinite(scale) & (scale > 0)).all():
            raise ValueError(f"scale must be a finite number > 0 (or {dim} of them), got {scale.flatten()[:5].tolist()}")
        log_scale = torch.log(scale).expand(dim).clone()  # (d,)
        return nn.Parameter(loc), nn.Parameter(log_scale)

    def covariance(self) -> torch.Tensor:  # (d, d)
        l = self.scale_tril()
        return l @ l.T

    def rsample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n reparameterised draws (n, d), differentiable in the variational parameters."""
        n, generator = check_int(n, "n", minimum=1), check_generator(generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=self.loc.dtype,
                          device=generator.device).to(self.loc.device)
        return self.loc + eps @ self.scale_tril().T  # (n, d)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(n, generator)

    def log_prob(self, z: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """log q(z) for z (..., d); ``detach_params`` stops gradients through m, L (sticking the landing)."""
        loc, tril = self.loc, self.scale_tril()
        if detach_params:
            loc, tril = loc.detach(), tril.detach()
        diff = torch.linalg.solve_triangular(tril, (z - loc).unsqueeze(-1), upper=False).squeeze(-1)  # (..., d)
        logdet = torch.diagonal(tril).log().sum()
        return -0.5 * (diff ** 2).sum(-1) - logdet - 0.5 * self.dim * math.log(2 * math.pi)

    def entropy(self) -> torch.Tensor:
        return torch.diagonal(self.scale_tril()).log().sum() + 0.5 * self.dim * (1 + math.log(2 * math.pi))

    def kl_to(self, mean: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
        """Analytic KL(q || N(mean, scale_tril scale_tril^T))."""
        return gaussian_kl(self.loc, self.scale_tril(), mean.to(self.loc), scale_tril.to(self.loc))

    def dist(self) -> Distribution:
        return MultivariateNormal(self.loc.detach(), scale_tril=self.scale_tril().detach())

    @property
    def mean(self) -> torch.Tensor:
        return self.loc.detach()


class MeanFieldNormal(GaussianFamily):
    """Diagonal Gaussian q(z) = N(m, diag(s^2)); parameters ``loc`` (d,) and ``log_scale`` (d,)."""

    def __init__(self, dim: int, *, loc: torch.Tensor | None = None, scale: float | torch.Tensor = 0.1,
                 dtype: torch.dtype = torch.float64, device=None):
        super().__init__()
        self.loc, self.log_scale = self._init_loc_log_scale(dim, loc, scale, dtype, device)

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def scale_tril(self) -> torch.Tensor:
        return torch.diag_embed(self.scale())

    def rsample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        n, generator = check_int(n, "n", minimum=1), check_generator(generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=self.loc.dtype,
                          device=generator.device).to(self.loc.device)
        return self.loc + eps * self.scale()  # (n, d)

    def log_prob(self, z: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        loc, log_s = (self.loc.detach(), self.log_scale.detach()) if detach_params else (self.loc, self.log_scale)
        return (-0.5 * ((z - loc) / log_s.exp()) ** 2 - log_s - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return self.log_scale.sum() + 0.5 * self.dim * (1 + math.log(2 * math.pi))

    def dist(self) -> Distribution:
        return Independent(Normal(self.loc.detach(), self.scale().detach()), 1)


class FullRankNormal(GaussianFamily):
    """Full-covariance Gaussian q(z) = N(m, L L^T); parameters ``loc`` (d,), ``tril_offdiag`` (d, d)
    (strictly lower part used) and ``log_diag`` (d,)."""

    def __init__(self, dim: int, *, loc: torch.Tensor | None = None, scale: float | torch.Tensor = 0.1,
                 dtype: torch.dtype = torch.float64, device=None):
        super().__init__()
        self.loc, self.log_diag = self._init_loc_log_scale(dim, loc, scale, dtype, device)
        self.tril_offdiag = nn.Parameter(torch.zeros(dim, dim, dtype=dtype, device=device))

    def scale_tril(self) -> torch.Tensor:
        return torch.tril(self.tril_offdiag, diagonal=-1) + torch.diag_embed(self.log_diag.exp())

    def entropy(self) -> torch.Tensor:
        return self.log_diag.sum() + 0.5 * self.dim * (1 + math.log(2 * math.pi))
