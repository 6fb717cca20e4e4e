"""NUTS throughput: arrcoc.bayes.mcmc vs Pyro's NUTS on posteriordb eight-schools (non-centred) and diamonds.

Both samplers run the same model and data in float64 on CPU with Stan-like settings (target
acceptance 0.8, max tree depth 10, windowed mass-matrix adaptation: diagonal for eight schools, dense
for diamonds, see METRIC), 4 chains x W warmup x S draws, 1 torch thread for both by default.  Ours advances the
4 chains as one batch in one process; Pyro runs its 4 chains one after another in this process
(``MCMC(num_chains=1)`` four times: Pyro's multi-chain mode spawns one process per chain, which on
this 2-core machine cannot run 4 chains in parallel and competes with the other workloads).
Printed per model and sampler: wall time, minimum bulk ESS over all parameters, ESS/s, and our
ESS/s ratio to Pyro.  NumPyro is measured when ``import numpyro`` works (not installed by default).

    .venv/bin/python benchmarks/mcmc.py            # 4 x 1000 x 1000
    .venv/bin/python benchmarks/mcmc.py --quick    # 4 x 200 x 200
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zipfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arrcoc.bayes.diagnostics import ess  # noqa: E402
from arrcoc.bayes.mcmc import NUTS, Model, sample  # noqa: E402

DB = ROOT / ".." / "shared" / "posteriordb"


def load(name):
    with zipfile.ZipFile(DB / "data" / f"{name}.json.zip") as z:
        d = json.loads(z.read(z.namelist()[0]))
    return {k: torch.tensor(v, dtype=torch.float64) if isinstance(v, list) else v for k, v in d.items()}


# ---------------------------------------------------------------- our models (batched over chains)
def ours_eight_schools():
    d = load("eight_schools")
    y, sig = d["y"], d["sigma"]

    def logp(v):
        tt, mu, tau = v["theta_trans"], v["mu"], v["tau"]                      # (C, 8), (C,), (C,)
        theta = mu.unsqueeze(-1) + tau.unsqueeze(-1) * tt
        return (-0.5 * (tt * tt).sum(-1) - 0.5 * (mu / 5) ** 2 - torch.log1p((tau / 5) ** 2)
                - 0.5 * (((y - theta) / sig) ** 2).sum(-1))
    from torch.distributions import constraints
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
    from torch.distributions import constraints
    return Model(logp, {"b": (24, None), "Intercept": ((), None), "sigma": ((), constraints.positive)})


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


def min_bulk_ess(draws: dict[str, torch.Tensor]) -> float:
    flat = torch.cat([v.reshape(v.shape[0], v.shape[1], -1) for v in draws.values()], -1)  # (C, S, p)
    return float(ess(flat.double(), method="bulk").min())


# mass matrix per model, the same for both samplers: Stan's default diagonal for eight schools; dense
# for diamonds, whose 24 correlated coefficients drive a diagonal metric to tree depth 10 (1023
# gradients per draw: hours for 4 x 2000 iterations here, for either sampler)
METRIC = {"eight_schools": "diag", "diamonds": "dense"}


def run_ours(model, chains, warmup, draws, seed, metric="diag"):
    t = time.perf_counter()
    res = sample(NUTS(metric=metric), model, num_chains=chains, num_warmup=warmup, num_samples=draws,
                 generator=torch.Generator().manual_seed(seed), progress=False)
    wall = time.perf_counter() - t
    return wall, min_bulk_ess(res.draws), res


def run_pyro(model, chains, warmup, draws, seed, metric="diag"):
    import pyro
    from pyro.infer import MCMC
    from pyro.infer import NUTS as PNUTS
    out = []
    t = time.perf_counter()
    for c in range(chains):
        pyro.set_rng_seed(seed + c)
        pyro.clear_param_store()
        kernel = PNUTS(model, target_accept_prob=0.8, max_tree_depth=10, full_mass=metric == "dense")
        mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=1, disable_progbar=True)
        mcmc.run()
        out.append(mcmc.get_samples())
    wall = time.perf_counter() - t
    names = list(out[0])
    stacked = {n: torch.stack([o[n] for o in out], 0) for n in names}       # (C, S, ...)
    return wall, min_bulk_ess(stacked)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 chains x 200 warmup x 200 draws")
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--models", default="eight_schools,diamonds")
    ap.add_argument("--pyro-warmup", type=int, default=None, help="Pyro warmup if different (diamonds is slow in Pyro)")
    ap.add_argument("--pyro-draws", type=int, default=None, help="Pyro draws if different")
    ap.add_argument("--skip-pyro", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both samplers")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.quick:
        a.warmup, a.draws = 200, 200
    torch.set_num_threads(a.threads)
    torch.set_default_dtype(torch.float64)
    print(f"# {a.chains} chains x {a.warmup} warmup x {a.draws} draws, float64, CPU, {a.threads} thread(s); "
          f"Pyro chains run sequentially in this process")
    models = {"eight_schools": (ours_eight_schools, pyro_eight_schools), "diamonds": (ours_diamonds, pyro_diamonds)}
    try:
        import numpyro  # noqa: F401
        have_numpyro = True
    except ImportError:
        have_numpyro = False
    for name in a.models.split(","):
        ours_fn, pyro_fn = models[name]
        metric = METRIC[name]
        wall, e, res = run_ours(ours_fn(), a.chains, a.warmup, a.draws, a.seed, metric)
        rate = e / wall
        print(f"{name:14s} ({metric} mass matrix for both samplers)")
        print(f"{name:14s} arrcoc  wall {wall:8.1f}s  min bulk ESS {e:8.1f}  ESS/s {rate:8.2f}  "
              f"divergent {res.num_divergent}  mean steps {float(res.info['num_steps'].mean()):.1f}", flush=True)
        if not a.skip_pyro:
            pw, pd = a.pyro_warmup or a.warmup, a.pyro_draws or a.draws
            wall_p, e_p = run_pyro(pyro_fn(), a.chains, pw, pd, a.seed, metric)
            rate_p = e_p / wall_p
            note = "" if (pw, pd) == (a.warmup, a.draws) else f"  ({pw} warmup x {pd} draws)"
            print(f"{name:14s} pyro    wall {wall_p:8.1f}s  min bulk ESS {e_p:8.1f}  ESS/s {rate_p:8.2f}{note}")
            print(f"{name:14s} ratio   arrcoc / pyro ESS/s = {rate / rate_p:.1f}x", flush=True)
        if not have_numpyro:
            print(f"{name:14s} numpyro skipped (numpyro/jax not installed in this environment)")


if __name__ == "__main__":
    main()
