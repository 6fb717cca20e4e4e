"""Build this directory's data and NumPyro reference draws (run once, by hand, in a side
interpreter with numpyro + jax; nothing here runs in the tests):

    PY tests/data/gp_poisson/make_reference.py

The data: N = 30 inputs x ~ Uniform(0, 10) (sorted) and counts y ~ Poisson(exp(f(x))) with
f(x) = 1.5 sin(0.8 x) + 0.5, from numpy's default_rng(20261201).  The model (the one the tests and
benchmarks/mcmc.py write out as batched log densities):

    rho ~ InverseGamma(4, 6)                 length scale (prior mean 2: x spans 10)
    alpha ~ HalfNormal(2)                    marginal sd of f
    z ~ Normal(0, 1)^N                       non-centred latent
    K = alpha^2 exp(-(x_i - x_j)^2 / (2 rho^2)) + 1e-6 I,  L = cholesky(K),  f = L z
    y_i ~ Poisson(exp(f_i))

The reference: NumPyro NUTS, 10 chains x 4000 warmup x 4000 draws (target acceptance 0.9, diagonal
metric), thinned by 4 to 10 x 1000 draws of rho, alpha and f[1..N], written like posteriordb's
reference draws (a zip holding one JSON list of 10 chains, each name -> 1000 draws) with its
diagnostics in reference_info.json.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED, N, JITTER = 20261201, 30, 1e-6


def make_data():
    import numpy as np
    rng = np.random.default_rng(SEED)
    x = np.sort(rng.uniform(0.0, 10.0, N))
    y = rng.poisson(np.exp(1.5 * np.sin(0.8 * x) + 0.5))
    return {"N": N, "x": [float(v) for v in x], "y": [int(v) for v in y]}


def model(x, y):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    rho = numpyro.sample("rho", dist.InverseGamma(4.0, 6.0))
    alpha = numpyro.sample("alpha", dist.HalfNormal(2.0))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([x.shape[0]]).to_event(1))
    d = x[:, None] - x[None, :]
    K = alpha ** 2 * jnp.exp(-0.5 * (d / rho) ** 2) + JITTER * jnp.eye(x.shape[0])
    f = numpyro.deterministic("f", jnp.linalg.cholesky(K) @ z)
    numpyro.sample("y", dist.Poisson(jnp.exp(f)), obs=y)


def main():
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import numpyro
    from numpyro.diagnostics import summary
    from numpyro.infer import MCMC, NUTS
    data = make_data()
    (HERE / "data.json").write_text(json.dumps(data) + "\n")
    x, y = np.asarray(data["x"]), np.asarray(data["y"], dtype=np.float64)
    mcmc = MCMC(NUTS(model, target_accept_prob=0.9), num_warmup=4000, num_samples=4000, num_chains=10,
                chain_method="vectorized", thinning=4, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(SEED), x, y, extra_fields=("diverging",))
    s = mcmc.get_samples(group_by_chain=True)
    cols = {"rho": np.asarray(s["rho"]), "alpha": np.asarray(s["alpha"])}
    for i in range(N):
        cols[f"f[{i + 1}]"] = np.asarray(s["f"][..., i])
    chains = [{n: [float(v) for v in c[k]] for n, c in cols.items()} for k in range(10)]
    with zipfile.ZipFile(HERE / "reference.json.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("reference.json", json.dumps(chains))
    stats = summary({n: c for n, c in cols.items()}, group_by_chain=True)
    info = {"sampler": f"numpyro {numpyro.__version__} NUTS (jax {jax.__version__})", "chains": 10,
            "warmup": 4000, "draws": 4000, "thinning": 4, "target_accept_prob": 0.9, "seed": SEED,
            "divergent": int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum()),
            "max_rhat": float(max(v["r_hat"] for v in stats.values())),
            "min_n_eff": float(min(v["n_eff"] for v in stats.values()))}
    (HERE / "reference_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(info)


if __name__ == "__main__":
    main()
