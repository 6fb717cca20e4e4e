"""A Gaussian-process Poisson regression with its NumPyro reference draws (tests/data/gp_poisson).

The log density forms the squared-exponential kernel K (sampled length scale ``rho`` and marginal sd
``alpha``) and its Cholesky factor L at every evaluation, f = L z (non-centred), y ~ Poisson(exp(f)):
a linear-algebra-bound posterior unlike the posteriordb ones.  posteriordb has no reference for it
here, so the reference is NumPyro's NUTS on the same data (10 chains x 1000 thinned draws; how they
were made: tests/data/gp_poisson/make_reference.py and reference_info.json).  ``reported`` maps draws
to the reference's quantities: rho, alpha and f[1..N].
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
from torch.distributions import constraints

from arrcoc.bayes.mcmc import Model

from .posteriordb_models import PosteriorCase

__all__ = ["GP_DIR", "JITTER", "gp_poisson", "kernel_cholesky", "load_gp_data", "load_gp_reference", "latent_f"]

GP_DIR: Path = Path(__file__).resolve().parents[1] / "data" / "gp_poisson"
JITTER = 1e-6                                 # on K's diagonal, as in make_reference.py


def load_gp_data() -> tuple[torch.Tensor, torch.Tensor]:
    """x (N,) inputs and y (N,) counts, float64."""
    d = json.loads((GP_DIR / "data.json").read_text())
    return torch.tensor(d["x"], dtype=torch.float64), torch.tensor(d["y"], dtype=torch.float64)


def load_gp_reference() -> dict[str, torch.Tensor]:
    """NumPyro's reference draws: name ('rho', 'alpha', 'f[1]', ...) -> (10 chains, 1000 draws)."""
    with zipfile.ZipFile(GP_DIR / "reference.json.zip") as z:
        chains = json.loads(z.read(z.namelist()[0]))
    return {n: torch.tensor([c[n] for c in chains], dtype=torch.float64) for n in chains[0]}


def kernel_cholesky(x: torch.Tensor, rho: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """L (..., N, N) of alpha^2 exp(-(x_i - x_j)^2 / (2 rho^2)) + JITTER I for rho, alpha (...)."""
    sq = (x.unsqueeze(-1) - x) ** 2                                            # (N, N)
    K = (alpha * alpha)[..., None, None] * torch.exp(-0.5 * sq / (rho * rho)[..., None, None])
    return torch.linalg.cholesky(K + JITTER * torch.eye(x.shape[0], dtype=x.dtype))   # (..., N, N)


def latent_f(x: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
    """f = L z (..., N) for draws of rho (...), alpha (...), z (..., N)."""
    L = kernel_cholesky(x, draws["rho"], draws["alpha"])
    return (L @ draws["z"].unsqueeze(-1)).squeeze(-1)


def gp_poisson() -> PosteriorCase:
    x, y = load_gp_data()
    N = x.shape[0]

    def logp(v):
        rho, alpha, z = v["rho"], v["alpha"], v["z"]                           # (C,), (C,), (C, N)
        f = (kernel_cholesky(x, rho, alpha) @ z.unsqueeze(-1)).squeeze(-1)    # (C, N)
        # InverseGamma(4, 6) on rho, HalfNormal(2) on alpha, Normal(0, 1) on z, Poisson(exp(f)) on y
        return (-5.0 * torch.log(rho) - 6.0 / rho - 0.5 * (alpha / 2) ** 2 - 0.5 * (z * z).sum(-1)
                + (y * f - torch.exp(f)).sum(-1))

    def reported(dr):
        f = latent_f(x, dr)                                                    # (C, S, N)
        out = {"rho": dr["rho"], "alpha": dr["alpha"]}
        out.update({f"f[{i + 1}]": f[..., i] for i in range(N)})
        return out

    spec = {"rho": ((), constraints.positive), "alpha": ((), constraints.positive), "z": (N, None)}
    return PosteriorCase("gp_poisson (NumPyro reference)", Model(logp, spec), reported)
