"""The posteriors of benchmarks/mcmc.py, written once for arrcoc.bayes.mcmc (batched over chains) and
once for Pyro; benchmarks/mcmc_numpyro.py has the NumPyro versions.  Same priors, likelihoods and data
for every library; the parameters each one samples (and whose min bulk ESS is measured) are the same.

  eight_schools  posteriordb eight schools, non-centred (10 parameters; small, funnel-shaped).
  diamonds       posteriordb diamonds: linear regression, 24 correlated coefficients, 5000 rows,
                 full-data likelihood (26 parameters; dense-regression bound).
  arK            posteriordb arK: AR(5) time series, 200 observations (7 parameters).
  gp_poisson     Poisson regression on a latent Gaussian process, squared-exponential kernel with
                 sampled length scale and marginal sd, non-centred (f = L z with L the Cholesky factor
                 of K, formed at every evaluation), 30 points (32 parameters; linear-algebra bound).
                 Data and NumPyro reference draws: tests/data/gp_poisson (its make_reference.py).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
from torch.distributions import constraints

from arrcoc.bayes.mcmc import Model

__all__ = ["GP_JITTER", "METRIC", "MODELS", "load", "load_gp", "ours_models", "pyro_models"]

ROOT = Path(__file__).resolve().parents[1]
DB = ROOT / "tests" / "data" / "posteriordb"  # vendored reference posteriors (BSD-3)
GP_DIR = ROOT / "tests" / "data" / "gp_poisson"
GP_JITTER = 1e-6                                # added to K's diagonal (the same in every library)

# mass matrix per model, the same for every sampler: Stan's default diagonal for eight schools and the
# GP; dense for diamonds, whose 24 correlated coefficients drive a diagonal metric to tree depth 10
# (1023 gradients per draw), and for arK, whose lag coefficients are strongly correlated
METRIC = {"eight_schools": "diag", "diamonds": "dense", "arK": "dense", "gp_poisson": "diag"}


def load(name):
    """posteriordb data set ``name`` (lists as float64 tensors)."""
    with zipfile.ZipFile(DB / "data" / f"{name}.json.zip") as z:
        d = json.loads(z.read(z.namelist()[0]))
    return {k: torch.tensor(v, dtype=torch.float64) if isinstance(v, list) else v for k, v in d.items()}


def load_gp():
    """The GP data: x (N,), y (N,) counts as float64."""
    d = json.loads((GP_DIR / "data.json").read_text())
    return torch.tensor(d["x"], dtype=torch.float64), torch.tensor(d["y"], dtype=torch.float64)


def _ar_design():
    d = load("arK")
    y, K = d["y"], int(d["K"])
    T = y.shape[0]
    return torch.stack([y[K - k:T - k] for k in range(1, K + 1)], -1), y[K:], K   # (T-K, K), (T-K,)


# ---------------------------------------------------------------- ours (batched over chains)
def ours_eight_schools():
    d = load("eight_schools")
    y, sig = d["y"], d["sigma"]

    def logp(v):
        tt, mu, tau = v["theta_trans"], v["mu"], v["tau"]                      # (C, 8), (C,), (C,)
        theta = mu.unsqueeze(-1) + tau.unsqueeze(-1) * tt
        return (-0.5 * (tt * tt).sum(-1) - 0.5 * (mu / 5) ** 2 - torch.log1p((tau / 5) ** 2)
                - 0.5 * (((y - theta) / sig) ** 2).sum(-1))
    return Model(logp, {"theta_trans": (8, None), "mu": ((), None), "tau": ((), constraints.positive)})


def ours_diamonds():
    d = load("diamonds")
    X, Y = d["X"], d["Y"]
    Xc = X[:, 1:] - X[:, 1:].mean(0)                                           # (N, 24)
    N = Y.shape[0]

    def logp(v):
        b, a, s = v["b"], v["Intercept"], v["sigma"]                           # (C, 24), (C,), (C,)
        r = Y - a.unsqueeze(-1) - b @ Xc.T                                     # (C, N) full-data likelihood
        return (-0.5 * (b * b).sum(-1) - 2.0 * torch.log1p(((a - 8) / 10) ** 2 / 3)
                - 2.0 * torch.log1p((s / 10) ** 2 / 3) - N * torch.log(s) - 0.5 * (r * r).sum(-1) / (s * s))
    return Model(logp, {"b": (24, None), "Intercept": ((), None), "sigma": ((), constraints.positive)})


def ours_arK():
    lags, target, K = _ar_design()
    n = target.shape[0]

    def logp(v):
        alpha, beta, sigma = v["alpha"], v["beta"], v["sigma"]                 # (C,), (C, K), (C,)
        r = (target - alpha.unsqueeze(-1) - beta @ lags.T) / sigma.unsqueeze(-1)   # (C, T-K)
        return (-0.5 * (alpha / 10) ** 2 - 0.5 * ((beta / 10) ** 2).sum(-1) - torch.log1p((sigma / 2.5) ** 2)
                - n * torch.log(sigma) - 0.5 * (r * r).sum(-1))
    return Model(logp, {"alpha": ((), None), "beta": (K, None), "sigma": ((), constraints.positive)})


def ours_gp_poisson():
    x, y = load_gp()
    N = x.shape[0]
    sq = (x.unsqueeze(-1) - x) ** 2                                            # (N, N)
    eye = torch.eye(N, dtype=x.dtype)

    def logp(v):
        rho, alpha, z = v["rho"], v["alpha"], v["z"]                           # (C,), (C,), (C, N)
        a2, r2 = (alpha * alpha)[:, None, None], (rho * rho)[:, None, None]
        K = a2 * torch.exp(-0.5 * sq / r2) + GP_JITTER * eye                   # (C, N, N)
        f = (torch.linalg.cholesky(K) @ z.unsqueeze(-1)).squeeze(-1)           # (C, N)
        return (-5.0 * torch.log(rho) - 6.0 / rho - 0.5 * (alpha / 2) ** 2 - 0.5 * (z * z).sum(-1)
                + (y * f - torch.exp(f)).sum(-1))
    return Model(logp, {"rho": ((), constraints.positive), "alpha": ((), constraints.positive), "z": (N, None)})


# ---------------------------------------------------------------- the same models in Pyro
def pyro_eight_schools():
    import pyro
    import pyro.distributions as dist
    d = load("eight_schools")
    y, sig = d["y"], d["sigma"]

    def model():
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(torch.tensor(5.0, dtype=torch.float64)))
        with pyro.plate("J", 8):
            tt = pyro.sample("theta_trans", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
            pyro.sample("y", dist.Normal(mu + tau * tt, sig), obs=y)
    return model


def pyro_diamonds():
    import pyro
    import pyro.distributions as dist
    d = load("diamonds")
    X, Y = d["X"], d["Y"]
    Xc = X[:, 1:] - X[:, 1:].mean(0)
    f64 = dict(dtype=torch.float64)

    def model():
        b = pyro.sample("b", dist.Normal(torch.zeros(24, **f64), 1.0).to_event(1))
        a = pyro.sample("Intercept", dist.StudentT(torch.tensor(3.0, **f64), 8.0, 10.0))
        # HalfStudentT(3, 0, 10) = |StudentT(3, 0, 10)|
        s = pyro.sample("sigma", dist.FoldedDistribution(dist.StudentT(torch.tensor(3.0, **f64), 0.0, 10.0)))
        with pyro.plate("N", Y.shape[0]):
            pyro.sample("Y", dist.Normal(a + Xc @ b, s), obs=Y)
    return model


def pyro_arK():
    import pyro
    import pyro.distributions as dist
    lags, target, K = _ar_design()
    f64 = dict(dtype=torch.float64)

    def model():
        alpha = pyro.sample("alpha", dist.Normal(torch.tensor(0.0, **f64), 10.0))
        beta = pyro.sample("beta", dist.Normal(torch.zeros(K, **f64), 10.0).to_event(1))
        sigma = pyro.sample("sigma", dist.HalfCauchy(torch.tensor(2.5, **f64)))
        with pyro.plate("T", target.shape[0]):
            pyro.sample("y", dist.Normal(alpha + lags @ beta, sigma), obs=target)
    return model


def pyro_gp_poisson():
    import pyro
    import pyro.distributions as dist
    x, y = load_gp()
    N = x.shape[0]
    sq = (x.unsqueeze(-1) - x) ** 2
    f64 = dict(dtype=torch.float64)

    def model():
        rho = pyro.sample("rho", dist.InverseGamma(torch.tensor(4.0, **f64), 6.0))
        alpha = pyro.sample("alpha", dist.HalfNormal(torch.tensor(2.0, **f64)))
        z = pyro.sample("z", dist.Normal(torch.zeros(N, **f64), 1.0).to_event(1))
        K = alpha ** 2 * torch.exp(-0.5 * sq / rho ** 2) + GP_JITTER * torch.eye(N, **f64)
        pyro.sample("y", dist.Poisson(torch.exp(torch.linalg.cholesky(K) @ z)).to_event(1), obs=y)
    return model


MODELS = ("eight_schools", "diamonds", "arK", "gp_poisson")


def ours_models():
    return {"eight_schools": ours_eight_schools, "diamonds": ours_diamonds, "arK": ours_arK,
            "gp_poisson": ours_gp_poisson}


def pyro_models():
    return {"eight_schools": pyro_eight_schools, "diamonds": pyro_diamonds, "arK": pyro_arK,
            "gp_poisson": pyro_gp_poisson}
