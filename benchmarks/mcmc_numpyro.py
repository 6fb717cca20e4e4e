"""NumPyro's NUTS on the same two posteriors as benchmarks/mcmc.py, run in its own interpreter.

NumPyro needs jax, which this project does not install; ``benchmarks/mcmc.py --numpyro-python PY``
runs this script with an interpreter that has numpyro + jax and reads back the draws, so that every
sampler's ESS comes from the same function (``arrcoc.bayes.diagnostics.ess``).

    PY benchmarks/mcmc_numpyro.py --model diamonds --chains 4 --warmup 1000 --draws 1000 --out d.npz

Same models, priors and data as mcmc.py, float64 (``jax_enable_x64``), target acceptance 0.8, max
tree depth 10, diagonal mass matrix for eight schools and dense for diamonds, 4 chains run one after
another (NumPyro's default on a single CPU device; ``--chain-method vectorized`` batches them as ours
does).  The wall time includes JIT compilation, as ours includes torch.compile's.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import zipfile
from pathlib import Path

__all__ = ["main"]

DB = Path(__file__).resolve().parents[1] / "tests" / "data" / "posteriordb"  # vendored (BSD-3)


def load(name):
    import numpy as np
    with zipfile.ZipFile(DB / "data" / f"{name}.json.zip") as z:
        d = json.loads(z.read(z.namelist()[0]))
    return {k: np.asarray(v, dtype=np.float64) if isinstance(v, list) else v for k, v in d.items()}


def eight_schools():
    import numpyro
    import numpyro.distributions as dist
    d = load("eight_schools")
    y, sig = d["y"], d["sigma"]

    def model():
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("J", 8):
            tt = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
            numpyro.sample("y", dist.Normal(mu + tau * tt, sig), obs=y)
    return model


def diamonds():
    import numpyro
    import numpyro.distributions as dist
    d = load("diamonds")
    X, Y = d["X"], d["Y"]
    Xc = X[:, 1:] - X[:, 1:].mean(0)                                           # (N, 24)

    def model():
        b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([24]).to_event(1))
        a = numpyro.sample("Intercept", dist.StudentT(3.0, 8.0, 10.0))
        s = numpyro.sample("sigma", dist.FoldedDistribution(dist.StudentT(3.0, 0.0, 10.0)))
        with numpyro.plate("N", Y.shape[0]):
            numpyro.sample("Y", dist.Normal(a + Xc @ b, s), obs=Y)
    return model


MODELS = {"eight_schools": (eight_schools, False), "diamonds": (diamonds, True)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="1: XLA's CPU thread pool off and the process pinned to one core")
    ap.add_argument("--chain-method", default="sequential", choices=["sequential", "vectorized"])
    ap.add_argument("--out", required=True, help=".npz file for the draws (chain, draw, ...) and the timings")
    a = ap.parse_args(argv)
    if a.threads == 1:
        # (a bare "intra_op_parallelism_threads=1" is no XLA flag: XLA skips it silently; the pin does the rest)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import numpyro
    from numpyro.infer import MCMC, NUTS
    build, dense = MODELS[a.model]
    kernel = NUTS(build(), target_accept_prob=0.8, max_tree_depth=10, dense_mass=dense)
    mcmc = MCMC(kernel, num_warmup=a.warmup, num_samples=a.draws, num_chains=a.chains,
                chain_method=a.chain_method, progress_bar=False)
    t = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(a.seed), extra_fields=("diverging", "num_steps"))
    samples = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    wall = time.perf_counter() - t
    extra = mcmc.get_extra_fields(group_by_chain=True)
    steps = float(np.asarray(extra["num_steps"]).mean()) if "num_steps" in extra else float("nan")
    div = int(np.asarray(extra["diverging"]).sum()) if "diverging" in extra else -1
    np.savez(a.out, wall=wall, mean_steps=steps, divergent=div, numpyro_version=numpyro.__version__,
             **{f"draw_{k}": np.asarray(v) for k, v in samples.items()})


if __name__ == "__main__":
    main()
