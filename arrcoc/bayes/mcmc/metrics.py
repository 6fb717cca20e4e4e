"""Euclidean metrics (mass matrices) for HMC/NUTS, one per chain.

A metric holds the inverse mass matrix per chain: diagonal (C, d) or dense (C, d, d).  Momentum is
p ~ N(0, M) with M = inverse_mass^{-1}; kinetic energy K(p) = p^T M^{-1} p / 2; velocity M^{-1} p.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["Metric", "make_metric", "identity_metric", "sample_momentum", "momentum_from_normal",
           "kinetic_energy", "velocity"]


class Metric(NamedTuple):
    inverse_mass: torch.Tensor        # (C, d) diagonal or (C, d, d) dense
    chol: torch.Tensor | None         # (C, d, d) lower Cholesky factor of a dense inverse mass, else None
    # (C, d, d) L^{-T} for a dense metric (momentum = L^{-T} z as one batched matmul; a triangular
    # solve per leapfrog step cost ~30 us inside a compiled NUTS step), else None; None with a dense
    # metric: momentum_from_normal solves with chol
    momentum_factor: torch.Tensor | None = None

    @property
    def dense(self) -> bool:
        return self.inverse_mass.dim() == 3


def make_metric(inverse_mass: torch.Tensor) -> Metric:
    """Metric from a per-chain inverse mass matrix, diagonal (C, d) or dense (C, d, d)."""
    if inverse_mass.dim() == 2:
        if not bool((inverse_mass > 0).all()):
            raise ValueError("diagonal inverse mass matrix must be positive")
        return Metric(inverse_mass, None)
    if inverse_mass.dim() == 3 and inverse_mass.shape[-1] == inverse_mass.shape[-2]:
        chol, info = torch.linalg.cholesky_ex(inverse_mass)  # (C, d, d)
        if bool((info != 0).any()):
            raise ValueError("dense inverse mass matrix must be symmetric positive definite")
        return Metric(inverse_mass, chol, _inverse_transpose(chol))
    raise ValueError(f"inverse mass matrix must be (C, d) or (C, d, d), got {tuple(inverse_mass.shape)}")


def _inverse_transpose(chol: torch.Tensor) -> torch.Tensor:
    """L^{-T} (C, d, d) of lower triangular factors L, upper triangular (contiguous)."""
    eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device).expand_as(chol)
    return torch.linalg.solve_triangular(chol.transpose(-1, -2), eye, upper=True).contiguous()


def identity_metric(num_chains: int, dim: int, dense: bool = False, dtype=torch.float64, device=None) -> Metric:
    """Unit metric for C chains in d dimensions."""
    if dense:
        eye = torch.eye(dim, dtype=dtype, device=device).expand(num_chains, dim, dim).clone()  # (C, d, d)
        return Metric(eye, eye.clone(), eye.clone())
    return Metric(torch.ones(num_chains, dim, dtype=dtype, device=device), None)


def sample_momentum(metric: Metric, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """p ~ N(0, M) per chain, (C, d)."""
    z = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)  # (C, d)
    return momentum_from_normal(metric, z)


def momentum_from_normal(metric: Metric, z: torch.Tensor) -> torch.Tensor:
    """Momentum with covariance M from standard normal draws z (C, d)."""
    if metric.chol is None:
        return z / metric.inverse_mass.sqrt()
    # inverse_mass = L L^T  =>  M = L^{-T} L^{-1};  p = L^{-T} z has covariance M
    if metric.momentum_factor is not None:
        return (metric.momentum_factor @ z.unsqueeze(-1)).squeeze(-1)
    return torch.linalg.solve_triangular(metric.chol.transpose(-1, -2), z.unsqueeze(-1), upper=True).squeeze(-1)


def velocity(metric: Metric, p: torch.Tensor) -> torch.Tensor:
    """M^{-1} p, (C, d)."""
    if metric.chol is None:
        return metric.inverse_mass * p
    return (metric.inverse_mass @ p.unsqueeze(-1)).squeeze(-1)


def kinetic_energy(metric: Metric, p: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
    """p^T M^{-1} p / 2, (C,); ``v`` = M^{-1} p (C, d) when the caller has it already."""
    return 0.5 * (p * (velocity(metric, p) if v is None else v)).sum(-1)
