"""NumPyro's NUTS on the posteriors of benchmarks/mcmc.py, run in its own interpreter.

NumPyro needs jax, which this project does not install; ``benchmarks/mcmc.py --numpyro-python PY``
runs this script, one fresh process per measured run, with an interpreter that has numpyro + jax and
reads back the draws, so that every sampler's ESS comes from the same function
(``arrcoc.bayes.diagnostics.ess``).

    PY benchmarks/mcmc_numpyro.py --model diamonds --chains 4 --warmup 1000 --draws 1000 --out d.npz \
        --chain-method parallel --devices 2 --cache-dir /tmp/jax-cache

Same models, priors and data as benchmarks/mcmc_models.py, float64 (``jax_enable_x64``), target
acceptance 0.8, max tree depth 10, the mass matrix of ``METRIC`` there.  Configurations:

  --threads 1        XLA's CPU thread pool off (``--xla_cpu_multi_thread_eigen=false``) and the process
                     pinned to one core; chains ``sequential`` (NumPyro's default on one device).
  --chain-method parallel --devices N
                     ``--xla_force_host_platform_device_count=N`` host devices, one chain per device
                     at a time (``pmap``): NumPyro's documented way to use several CPU cores.
  --chain-method vectorized
                     the chains as one batch (``vmap``), XLA's own thread pool.
  --cache-dir DIR    jax's persistent compilation cache in DIR (every compiled program is kept,
                     whatever its compile time): an empty DIR is a cold start, a DIR filled by an
                     earlier process a warm one.

The wall time is measured around ``mcmc.run`` (JIT compilation included; interpreter start-up and the
jax / numpyro imports excluded, as benchmarks/mcmc.py excludes ours).
"""
from __future__ import annotations

import argparse
import json
import os
import time
import zipfile
from pathlib import Path

__all__ = ["MODELS", "main"]

ROOT = Path(__file__).resolve().parents[1]
DB = ROOT / "tests" / "data" / "posteriordb"  # vendored (BSD-3)
GP_DIR = ROOT / "tests" / "data" / "gp_poisson"
GP_JITTER = 1e-6


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


def arK():
    import numpy as np
    import numpyro
    import numpyro.distributions as dist
    d = load("arK")
    y, K = d["y"], int(d["K"])
    T = y.shape[0]
    lags = np.stack([y[K - k:T - k] for k in range(1, K + 1)], -1)            # (T-K, K)
    target = y[K:]

    def model():
        alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
        beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
        with numpyro.plate("T", target.shape[0]):
            numpyro.sample("y", dist.Normal(alpha + lags @ beta, sigma), obs=target)
    return model


def gp_poisson():
    import jax.numpy as jnp
    import numpy as np
    import numpyro
    import numpyro.distributions as dist
    d = json.loads((GP_DIR / "data.json").read_text())
    x, y = np.asarray(d["x"]), np.asarray(d["y"], dtype=np.float64)
    N = x.shape[0]
    sq = (x[:, None] - x[None, :]) ** 2

    def model():
        rho = numpyro.sample("rho", dist.InverseGamma(4.0, 6.0))
        alpha = numpyro.sample("alpha", dist.HalfNormal(2.0))
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([N]).to_event(1))
        K = alpha ** 2 * jnp.exp(-0.5 * sq / rho ** 2) + GP_JITTER * jnp.eye(N)
        numpyro.sample("y", dist.Poisson(jnp.exp(jnp.linalg.cholesky(K) @ z)).to_event(1), obs=y)
    return model


# name: (model builder, dense mass matrix) -- benchmarks/mcmc_models.py's METRIC
MODELS = {"eight_schools": (eight_schools, False), "diamonds": (diamonds, True), "arK": (arK, True),
          "gp_poisson": (gp_poisson, False)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="1: XLA's CPU thread pool off and the process pinned to one core (default: XLA's own)")
    ap.add_argument("--chain-method", default="sequential", choices=["sequential", "vectorized", "parallel"])
    ap.add_argument("--devices", type=int, default=1, help="host devices for --chain-method parallel")
    ap.add_argument("--cache-dir", default=None, help="jax persistent compilation cache directory")
    ap.add_argument("--out", required=True, help=".npz file for the draws (chain, draw, ...) and the timings")
    a = ap.parse_args(argv)
    flags = os.environ.get("XLA_FLAGS", "")
    if a.threads == 1:
        # (a bare "intra_op_parallelism_threads=1" is no XLA flag: XLA skips it silently; the pin does the rest)
        flags += " --xla_cpu_multi_thread_eigen=false"
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    if a.devices > 1:
        flags += f" --xla_force_host_platform_device_count={a.devices}"
    os.environ["XLA_FLAGS"] = flags.strip()
    import jax
    jax.config.update("jax_enable_x64", True)
    if a.cache_dir:
        jax.config.update("jax_compilation_cache_dir", a.cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
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
             jax_version=jax.__version__, devices=len(jax.devices()),
             **{f"draw_{k}": np.asarray(v) for k, v in samples.items()})


if __name__ == "__main__":
    main()
