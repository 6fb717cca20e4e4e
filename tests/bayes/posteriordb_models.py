"""The six posteriordb reference posteriors as batched log densities, plus their reference draws.

Data, model info and reference draws are the copies vendored in ``tests/data/posteriordb`` (see its
README and LICENCE.md), found relative to this file: the tests need nothing outside the repository.
Each model is an ``arrcoc.bayes.mcmc.Model`` (named parameters with Stan's constraints: positive ->
log scale, (0, 1) -> logit, ordered -> (x1, x1 + exp(z))) over a batch of chains, written from the
posteriordb model descriptions; ``reported(draws)`` maps the model's draws to the quantities the
reference draws report (e.g. eight schools non-centred reports theta = mu + tau * theta_trans).
"""
from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.distributions import constraints

from arrcoc.bayes.mcmc import Model

__all__ = ["POSTERIORDB", "PosteriorCase", "load_data", "load_reference", "load_posterior_info", "CASES", "case",
           "eight_schools_centered"]

POSTERIORDB: Path = Path(__file__).resolve().parents[1] / "data" / "posteriordb"


def _read_zip_json(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"vendored posteriordb file {path} is missing (tests/data/posteriordb, see its README)")
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read(z.namelist()[0]))


def load_data(name: str) -> dict:
    """The model's data dict (lists as float64 tensors)."""
    d = _read_zip_json(POSTERIORDB / "data" / f"{name}.json.zip")
    return {k: torch.tensor(v, dtype=torch.float64) if isinstance(v, list) else v for k, v in d.items()}


def load_reference(posterior: str) -> dict[str, torch.Tensor]:
    """Reference draws: name (e.g. 'theta[1]') -> (10 chains, 1000 draws) float64."""
    chains = _read_zip_json(POSTERIORDB / "draws" / f"{posterior}.json.zip")
    names = list(chains[0])
    return {n: torch.tensor([c[n] for c in chains], dtype=torch.float64) for n in names}


def load_posterior_info(posterior: str) -> tuple[dict, dict]:
    """The posterior's description (model / data names, parameter dimensions) and the reference
    draws' info (how they were made, their diagnostics)."""
    with open(POSTERIORDB / "posteriors" / f"{posterior}.json") as f:
        description = json.load(f)
    with open(POSTERIORDB / "info" / f"{posterior}.info.json") as f:
        info = json.load(f)
    return description, info


def _normal(x, loc, scale):
    """Normal log density up to the constant -log(sqrt(2 pi))."""
    z = (x - loc) / scale
    log_scale = math.log(scale) if isinstance(scale, (int, float)) else torch.log(scale)
    return -0.5 * z * z - log_scale


def _half_cauchy(x, scale):
    return -torch.log1p((x / scale) ** 2)


def _student_t(x, df, loc, scale):
    z = (x - loc) / scale
    return -0.5 * (df + 1) * torch.log1p(z * z / df)


def _expand_names(draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dict name -> (C, S, k) into Stan-style scalar names 'name[i]' (1-based); scalars kept."""
    out = {}
    for n, v in draws.items():
        if v.dim() == 2:
            out[n] = v
        else:
            for i in range(v.shape[-1]):
                out[f"{n}[{i + 1}]"] = v[..., i]
    return out


@dataclass
class PosteriorCase:
    posterior: str                      # posteriordb name, e.g. 'sblrc-blr'
    model: Model
    reported: Callable                  # draws dict -> dict of Stan-named scalars (C, S)


def eight_schools_noncentered() -> PosteriorCase:
    d = load_data("eight_schools")
    y, sigma = d["y"], d["sigma"]                                              # (8,)

    def logp(v):
        tt, mu, tau = v["theta_trans"], v["mu"], v["tau"]                      # (C, 8), (C,), (C,)
        theta = mu.unsqueeze(-1) + tau.unsqueeze(-1) * tt                      # (C, 8)
        return (_normal(tt, 0.0, 1.0).sum(-1) + _normal(mu, 0.0, 5.0) + _half_cauchy(tau, 5.0)
                + _normal(y, theta, sigma).sum(-1))

    spec = {"theta_trans": (8, None), "mu": ((), None), "tau": ((), constraints.positive)}

    def reported(dr):
        theta = dr["mu"].unsqueeze(-1) + dr["tau"].unsqueeze(-1) * dr["theta_trans"]
        return _expand_names({"theta": theta, "mu": dr["mu"], "tau": dr["tau"]})
    return PosteriorCase("eight_schools-eight_schools_noncentered", Model(logp, spec), reported)


def eight_schools_centered() -> PosteriorCase:
    """Same posterior, centred parameterisation (the funnel): theta ~ Normal(mu, tau) directly."""
    d = load_data("eight_schools")
    y, sigma = d["y"], d["sigma"]

    def logp(v):
        theta, mu, tau = v["theta"], v["mu"], v["tau"]
        return (_normal(theta, mu.unsqueeze(-1), tau.unsqueeze(-1)).sum(-1) + _normal(mu, 0.0, 5.0)
                + _half_cauchy(tau, 5.0) + _normal(y, theta, sigma).sum(-1))

    spec = {"theta": (8, None), "mu": ((), None), "tau": ((), constraints.positive)}
    return PosteriorCase("eight_schools-eight_schools_noncentered", Model(logp, spec), _expand_names)


def diamonds(suffstats: bool = True) -> PosteriorCase:
    """Diamonds regression; ``suffstats`` evaluates the Gaussian likelihood through X'X, X'Y, Y'Y
    (identical up to rounding, O(K^2) instead of O(NK) per evaluation)."""
    d = load_data("diamonds")
    X, Y = d["X"], d["Y"]                                                      # (N, K), (N,)
    Xc = X[:, 1:] - X[:, 1:].mean(0)                                           # (N, K-1)
    N = Y.shape[0]
    Ybar = Y.mean()
    Yc = Y - Ybar
    XtX, XtY, YtY = Xc.T @ Xc, Xc.T @ Yc, Yc @ Yc

    def logp(v):
        b, a, s = v["b"], v["Intercept"], v["sigma"]                           # (C, 24), (C,), (C,)
        if suffstats:
            ss = YtY - 2 * b @ XtY + ((b @ XtX) * b).sum(-1) + N * (Ybar - a) ** 2   # (C,)
        else:
            r = Y - a.unsqueeze(-1) - b @ Xc.T                                 # (C, N)
            ss = (r * r).sum(-1)
        lik = -N * torch.log(s) - 0.5 * ss / (s * s)
        return (_normal(b, 0.0, 1.0).sum(-1) + _student_t(a, 3.0, 8.0, 10.0) + _student_t(s, 3.0, 0.0, 10.0) + lik)

    spec = {"b": (24, None), "Intercept": ((), None), "sigma": ((), constraints.positive)}
    return PosteriorCase("diamonds-diamonds", Model(logp, spec), _expand_names)


def arK() -> PosteriorCase:
    d = load_data("arK")
    y, K = d["y"], int(d["K"])
    T = y.shape[0]
    lags = torch.stack([y[K - k:T - k] for k in range(1, K + 1)], -1)         # (T-K, K): y[t-k]
    target = y[K:]                                                             # (T-K,)

    def logp(v):
        alpha, beta, sigma = v["alpha"], v["beta"], v["sigma"]                 # (C,), (C, K), (C,)
        mu = alpha.unsqueeze(-1) + beta @ lags.T                               # (C, T-K)
        return (_normal(alpha, 0.0, 10.0) + _normal(beta, 0.0, 10.0).sum(-1) + _half_cauchy(sigma, 2.5)
                + _normal(target, mu, sigma.unsqueeze(-1)).sum(-1))

    spec = {"alpha": ((), None), "beta": (K, None), "sigma": ((), constraints.positive)}
    return PosteriorCase("arK-arK", Model(logp, spec), _expand_names)


def kidiq() -> PosteriorCase:
    d = load_data("kidiq")
    ks, iq = d["kid_score"], d["mom_iq"]

    def logp(v):
        beta, sigma = v["beta"], v["sigma"]                                    # (C, 2), (C,)
        mu = beta[:, :1] + beta[:, 1:] * iq                                    # (C, N)
        return _half_cauchy(sigma, 2.5) + _normal(ks, mu, sigma.unsqueeze(-1)).sum(-1)

    spec = {"beta": (2, None), "sigma": ((), constraints.positive)}
    return PosteriorCase("kidiq-kidscore_momiq", Model(logp, spec), _expand_names)


def low_dim_gauss_mix() -> PosteriorCase:
    from pyro.distributions.transforms import OrderedTransform
    d = load_data("low_dim_gauss_mix")
    y = d["y"]                                                                 # (N,)

    def logp(v):
        mu, sigma, theta = v["mu"], v["sigma"], v["theta"]                     # (C, 2), (C, 2), (C,)
        l1 = torch.log(theta).unsqueeze(-1) + _normal(y, mu[:, :1], sigma[:, :1])
        l2 = torch.log1p(-theta).unsqueeze(-1) + _normal(y, mu[:, 1:], sigma[:, 1:])
        return (_normal(mu, 0.0, 2.0).sum(-1) + _normal(sigma, 0.0, 2.0).sum(-1)
                + 4.0 * torch.log(theta) + 4.0 * torch.log1p(-theta) + torch.logaddexp(l1, l2).sum(-1))

    spec = {"mu": (2, OrderedTransform()), "sigma": (2, constraints.positive), "theta": ((), constraints.unit_interval)}
    return PosteriorCase("low_dim_gauss_mix-low_dim_gauss_mix", Model(logp, spec), _expand_names)


def sblrc() -> PosteriorCase:
    d = load_data("sblrc")
    X, y = d["X"], d["y"]                                                      # (N, 5), (N,)

    def logp(v):
        beta, sigma = v["beta"], v["sigma"]                                    # (C, 5), (C,)
        mu = beta @ X.T                                                        # (C, N)
        return (_normal(beta, 0.0, 10.0).sum(-1) + _normal(sigma, 0.0, 10.0)
                + _normal(y, mu, sigma.unsqueeze(-1)).sum(-1))

    spec = {"beta": (5, None), "sigma": ((), constraints.positive)}
    return PosteriorCase("sblrc-blr", Model(logp, spec), _expand_names)


CASES = {
    "eight_schools_noncentered": eight_schools_noncentered,
    "diamonds": diamonds,
    "arK": arK,
    "kidiq": kidiq,
    "low_dim_gauss_mix": low_dim_gauss_mix,
    "sblrc": sblrc,
}


def case(name: str) -> PosteriorCase:
    """Build one case by short name (see CASES)."""
    return CASES[name]()
