"""NUTS throughput on posteriordb eight schools (non-centred) and diamonds: arrcoc.bayes.mcmc, eager
and torch.compiled, against Pyro's NUTS (eager and JIT) and NumPyro's NUTS.

Per model, in this order, one line each:

  arrcoc eager     ``sample(NUTS(metric=...), model, compile=False)``: the chains advance as one batch.
  arrcoc compiled  the same with ``compile=True``: NUTS then batches asynchronously and its whole
                   leapfrog step (tree bookkeeping + log density + gradient) is one compiled graph.
                   The wall time includes the compile, done here in this process; unless --warm-cache,
                   TORCHINDUCTOR_CACHE_DIR points at a new empty directory (made before torch is
                   imported, removed at exit), so no kernel cached by an earlier run is reused.  The
                   first compiled model of a run also pays inductor's one-off start-up (imports, compile
                   workers).  The "compile" seconds printed beside are ``res.timings["compile_s"]``.
  pyro             ``pyro.infer.NUTS`` with its default ``jit_compile=False``.
  pyro jit         ``NUTS(..., jit_compile=True, ignore_jit_warnings=True)``, Pyro's fastest documented
                   configuration (skip with --skip-pyro-jit); the JIT trace of each chain is in the wall.
  numpyro          benchmarks/mcmc_numpyro.py run through subprocess by the interpreter given with
                   --numpyro-python (default: $NUMPYRO_PYTHON, else this interpreter if it can import
                   numpyro, else skipped); the draws come back in an .npz.  Its wall time is measured in
                   that process around ``mcmc.run`` (JIT compilation included; interpreter start-up and
                   the jax import excluded, the whole subprocess's time is printed beside).

Settings shared by all: the same model, priors and data, float64, CPU, target acceptance 0.8, max tree
depth 10, windowed mass-matrix adaptation (diagonal for eight schools, dense for diamonds: METRIC),
C chains x W warmup x S draws (--pyro-warmup/--pyro-draws may shorten both Pyro variants).  Seeds:
ours ``torch.Generator().manual_seed(seed)``, Pyro ``pyro.set_rng_seed(seed + chain)``, NumPyro
``PRNGKey(seed)``.  Threads (--threads, default 1): torch intra-op threads for ours and Pyro, in this
process; Pyro's chains run one after another in this process (``MCMC(num_chains=1)`` per chain: its
multi-chain mode spawns one process per chain, which a 2-core machine cannot run in parallel).  For
NumPyro the script, with 1 thread, turns XLA's CPU thread pool off and pins its process to one core;
its chains run ``chain_method="sequential"`` (NumPyro's default on one CPU device).

Measured: wall time of warmup + draws of all chains; min bulk ESS over all parameters (constrained
draws), the same function for every sampler (``min_bulk_ess``: arrcoc.bayes.diagnostics.ess, bulk);
ESS/s = min bulk ESS / wall; mean leapfrog steps per post-warmup draw (ours: ``info["num_steps"]``;
Pyro: calls of ``velocity_verlet`` from its NUTS tree building, counted through a wrapper; NumPyro:
its ``num_steps`` extra field); divergent post-warmup transitions.  Then per model the ESS/s ratio of
each arrcoc variant to each peer, and at the end one summary table (--json PATH also writes it).

    .venv/bin/python benchmarks/mcmc.py            # 4 x 1000 x 1000
    .venv/bin/python benchmarks/mcmc.py --quick    # 4 x 200 x 200
    .venv/bin/python benchmarks/mcmc.py --numpyro-python /path/to/venv-with-numpyro/bin/python --json out.json
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

_INDUCTOR_CACHE: str | None = None


def use_fresh_inductor_cache() -> str:
    """Point TorchInductor at a new empty cache directory, removed at exit (once per process)."""
    global _INDUCTOR_CACHE
    if _INDUCTOR_CACHE is None:
        _INDUCTOR_CACHE = tempfile.mkdtemp(prefix="arrcoc-bench-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = _INDUCTOR_CACHE
        atexit.register(shutil.rmtree, _INDUCTOR_CACHE, ignore_errors=True)
    return _INDUCTOR_CACHE


if __name__ == "__main__" and "--warm-cache" not in sys.argv[1:]:
    use_fresh_inductor_cache()          # before torch is imported

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arrcoc.bayes.diagnostics import ess  # noqa: E402
from arrcoc.bayes.mcmc import NUTS, Model, sample  # noqa: E402

__all__ = ["METRIC", "Run", "main", "min_bulk_ess", "ratios", "run_numpyro", "run_ours", "run_pyro",
           "use_fresh_inductor_cache"]

DB = ROOT / "tests" / "data" / "posteriordb"  # vendored reference posteriors (BSD-3)
NUMPYRO_SCRIPT = Path(__file__).resolve().with_name("mcmc_numpyro.py")
OURS = ("arrcoc eager", "arrcoc compiled")
PEERS = ("pyro", "pyro jit", "numpyro")


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
    """Smallest bulk ESS over every scalar of the draws name -> (chain, draw, ...), for every sampler."""
    flat = torch.cat([v.reshape(v.shape[0], v.shape[1], -1) for v in draws.values()], -1)  # (C, S, p)
    return float(ess(flat.double(), method="bulk").min())


# mass matrix per model, the same for every sampler: Stan's default diagonal for eight schools; dense
# for diamonds, whose 24 correlated coefficients drive a diagonal metric to tree depth 10 (1023
# gradients per draw: hours for 4 x 2000 iterations here, for any sampler)
METRIC = {"eight_schools": "diag", "diamonds": "dense"}


# ---------------------------------------------------------------- one measured run
@dataclass
class Run:
    """One sampler on one model: wall (s), min bulk ESS, mean leapfrog steps per draw, divergences."""
    model: str
    sampler: str
    wall: float
    ess: float
    steps: float
    divergent: int
    warmup: int
    draws: int
    compile_s: float | None = None      # arrcoc compiled: res.timings['compile_s'] (inside wall)
    note: str = ""

    @property
    def rate(self) -> float:
        return self.ess / self.wall

    def line(self) -> str:
        return (f"{self.model:14s} {self.sampler:16s} wall {self.wall:8.1f}s  min bulk ESS {self.ess:8.1f}  "
                f"ESS/s {self.rate:8.2f}  steps/draw {self.steps:6.1f}  divergent {self.divergent}{self.note}")


def _dynamo_compile_seconds() -> float:
    """Seconds dynamo has spent compiling in this process so far (its private metrics; nan if gone)."""
    if "torch._dynamo" not in sys.modules:
        return 0.0
    try:
        from torch._dynamo.utils import compilation_time_metrics
        return float(sum(compilation_time_metrics.get("_compile.compile_inner", [])))
    except (ImportError, AttributeError):
        return float("nan")


def run_ours(name, model, chains, warmup, draws, seed, metric="diag", compile=False) -> Run:
    before = _dynamo_compile_seconds() if compile else 0.0
    t = time.perf_counter()
    res = sample(NUTS(metric=metric), model, num_chains=chains, num_warmup=warmup, num_samples=draws,
                 generator=torch.Generator().manual_seed(seed), progress=False, compile=compile)
    wall = time.perf_counter() - t
    run = Run(name, OURS[compile], wall, min_bulk_ess(res.draws), float(res.info["num_steps"].double().mean()),
              res.num_divergent, warmup, draws)
    if compile:
        run.compile_s = res.timings.get("compile_s", _dynamo_compile_seconds() - before)
        cache = "fresh" if _INDUCTOR_CACHE is not None else "warm"
        run.note = f"  (wall includes torch.compile: {run.compile_s:.1f}s, {cache} inductor cache)"
    return run


@contextlib.contextmanager
def _count_pyro_leapfrogs():
    """Count the leapfrog steps of Pyro's NUTS: calls of velocity_verlet from its tree building."""
    import pyro.infer.mcmc.nuts as pnuts
    original, count = pnuts.velocity_verlet, [0]

    def counted(*args, **kwargs):
        count[0] += 1                   # NUTS integrates one step per call (num_steps=1)
        return original(*args, **kwargs)
    pnuts.velocity_verlet = counted
    try:
        yield count
    finally:
        pnuts.velocity_verlet = original


def run_pyro(name, model, chains, warmup, draws, seed, metric="diag", jit=False) -> Run:
    import pyro
    from pyro.infer import MCMC
    from pyro.infer import NUTS as PNUTS
    out, wall, steps, divergent = [], 0.0, 0, 0
    jit_kw = dict(jit_compile=True, ignore_jit_warnings=True) if jit else {}
    with _count_pyro_leapfrogs() as count:
        for c in range(chains):
            pyro.set_rng_seed(seed + c)
            pyro.clear_param_store()
            start = [count[0]]          # moved to the end of warmup by the hook

            def hook(kernel, params, stage, i, start=start):
                if stage.startswith("Warmup") and i == warmup - 1:
                    start[0] = count[0]
            kernel = PNUTS(model, target_accept_prob=0.8, max_tree_depth=10, full_mass=metric == "dense", **jit_kw)
            mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=1, hook_fn=hook,
                        disable_progbar=True)
            t = time.perf_counter()
            mcmc.run()
            out.append(mcmc.get_samples())
            wall += time.perf_counter() - t
            steps += count[0] - start[0]
            divergent += len(mcmc.diagnostics()["divergences"]["chain 0"])
    stacked = {n: torch.stack([o[n] for o in out], 0) for n in out[0]}      # (C, S, ...)
    return Run(name, "pyro jit" if jit else "pyro", wall, min_bulk_ess(stacked), steps / (chains * draws),
               divergent, warmup, draws)


def numpyro_python(arg: str | None) -> tuple[str | None, str]:
    """The interpreter that runs mcmc_numpyro.py, and where it came from (or why there is none)."""
    if arg:
        return arg, "--numpyro-python"
    if os.environ.get("NUMPYRO_PYTHON"):
        return os.environ["NUMPYRO_PYTHON"], "$NUMPYRO_PYTHON"
    probe = subprocess.run([sys.executable, "-c", "import numpyro"], capture_output=True)
    if probe.returncode == 0:
        return sys.executable, "this interpreter"
    return None, "numpyro cannot be imported here; pass --numpyro-python PATH or set NUMPYRO_PYTHON"


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + s for s in text.strip().splitlines()[-lines:])


def run_numpyro(python, name, chains, warmup, draws, seed, threads=1) -> Run | None:
    """NumPyro's NUTS via benchmarks/mcmc_numpyro.py in ``python``; None (stderr tail printed) on failure."""
    with tempfile.TemporaryDirectory(prefix="arrcoc-bench-numpyro-") as tmp:
        out = Path(tmp) / f"{name}.npz"
        cmd = [python, str(NUMPYRO_SCRIPT), "--model", name, "--chains", str(chains), "--warmup", str(warmup),
               "--draws", str(draws), "--seed", str(seed), "--threads", str(threads), "--out", str(out)]
        env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        except OSError as e:
            print(f"{name:14s} numpyro          failed to start {python}: {e}", flush=True)
            return None
        total = time.perf_counter() - t
        if proc.returncode != 0 or not out.exists():
            print(f"{name:14s} numpyro          failed (exit {proc.returncode}); stderr tail:\n"
                  f"{_tail(proc.stderr or proc.stdout)}", flush=True)
            return None
        with np.load(out) as z:
            draws_np = {k[len("draw_"):]: torch.from_numpy(z[k]) for k in z.files if k.startswith("draw_")}
            run = Run(name, "numpyro", float(z["wall"]), min_bulk_ess(draws_np), float(z["mean_steps"]),
                      int(z["divergent"]), warmup, draws)
            version = str(z["numpyro_version"])
    run.note = f"  (numpyro {version}; whole subprocess {total:.1f}s)"
    return run


# ---------------------------------------------------------------- reporting
def ratios(runs: list[Run]) -> list[dict]:
    """ESS/s of each arrcoc variant over each peer, per model."""
    out = []
    for m in dict.fromkeys(r.model for r in runs):
        here = {r.sampler: r for r in runs if r.model == m}
        for ours in (s for s in OURS if s in here):
            for peer in (s for s in PEERS if s in here):
                out.append(dict(model=m, ours=ours, peer=peer, ratio=here[ours].rate / here[peer].rate))
    return out


def print_ratios(runs: list[Run]) -> None:
    for q in ratios(runs):
        print(f"{q['model']:14s} ratio  {q['ours']} / {q['peer']} = {q['ratio']:.2f}x")


def print_summary(runs: list[Run]) -> None:
    print("\n# summary: wall (s), min bulk ESS, ESS/s, mean leapfrog steps per draw, divergences, warmup x draws")
    print(f"{'model':14s} {'sampler':16s} {'wall':>9s} {'ESS':>9s} {'ESS/s':>9s} {'steps':>7s} {'div':>5s}  iters")
    for r in runs:
        print(f"{r.model:14s} {r.sampler:16s} {r.wall:9.1f} {r.ess:9.1f} {r.rate:9.2f} {r.steps:7.1f} "
              f"{r.divergent:5d}  {r.warmup}x{r.draws}")


def write_json(path: str, runs: list[Run], a: argparse.Namespace) -> None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        pyro_version = version("pyro-ppl")
    except PackageNotFoundError:
        pyro_version = None
    config = dict(chains=a.chains, warmup=a.warmup, draws=a.draws, seed=a.seed, threads=a.threads,
                  torch=torch.__version__, pyro=pyro_version,
                  inductor_cache="warm (default)" if a.warm_cache else "fresh, empty")
    doc = dict(config=config, runs=[dict(asdict(r), ess_per_s=r.rate) for r in runs], ratios=ratios(runs))
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"# wrote {path}")


# ---------------------------------------------------------------- driver
MODELS = {"eight_schools": (ours_eight_schools, pyro_eight_schools), "diamonds": (ours_diamonds, pyro_diamonds)}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="chains x 200 warmup x 200 draws")
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--models", default="eight_schools,diamonds", help="comma list among " + ",".join(MODELS))
    ap.add_argument("--variants", default="eager,compiled", help="arrcoc variants: comma list among eager,compiled")
    ap.add_argument("--pyro-warmup", type=int, default=None, help="Pyro warmup if different (diamonds is slow in Pyro)")
    ap.add_argument("--pyro-draws", type=int, default=None, help="Pyro draws if different")
    ap.add_argument("--skip-pyro", action="store_true", help="skip Pyro's default (non-JIT) NUTS")
    ap.add_argument("--skip-pyro-jit", action="store_true", help="skip Pyro's NUTS with jit_compile=True")
    ap.add_argument("--skip-numpyro", action="store_true")
    ap.add_argument("--numpyro-python", default=None,
                    help="interpreter with numpyro + jax (default $NUMPYRO_PYTHON, else this one if it has numpyro)")
    ap.add_argument("--warm-cache", action="store_true",
                    help="keep TorchInductor's usual cache directory (default: a fresh empty one)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (ours, Pyro); NumPyro's script gets the same")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the summary as JSON")
    a = ap.parse_args(argv)
    if a.quick:
        a.warmup, a.draws = 200, 200
    a.models = a.models.split(",")
    a.variants = a.variants.split(",")
    if bad := [m for m in a.models if m not in MODELS]:
        ap.error(f"unknown model(s) {bad}; choose among {list(MODELS)}")
    if bad := [v for v in a.variants if v not in ("eager", "compiled")]:
        ap.error(f"unknown variant(s) {bad}; choose among eager,compiled")
    return a


def run_model(name: str, a: argparse.Namespace, python: str | None) -> list[Run]:
    ours_fn, pyro_fn = MODELS[name]
    metric, runs = METRIC[name], []
    print(f"{name:14s} ({metric} mass matrix for every sampler)", flush=True)

    def record(run):
        if run is not None:
            runs.append(run)
            print(run.line(), flush=True)
    for variant in ("eager", "compiled"):
        if variant in a.variants:
            record(run_ours(name, ours_fn(), a.chains, a.warmup, a.draws, a.seed, metric, variant == "compiled"))
    pw, pd = a.pyro_warmup or a.warmup, a.pyro_draws or a.draws
    for jit, skip in ((False, a.skip_pyro), (True, a.skip_pyro_jit)):
        if not skip:
            record(run_pyro(name, pyro_fn(), a.chains, pw, pd, a.seed, metric, jit))
    if python is not None:
        record(run_numpyro(python, name, a.chains, a.warmup, a.draws, a.seed, a.threads))
    print_ratios(runs)
    return runs


def main(argv=None):
    a = parse_args(argv)
    if not a.warm_cache:
        use_fresh_inductor_cache()      # a no-op when run as a script (done before importing torch)
    torch.set_num_threads(a.threads)
    torch.set_default_dtype(torch.float64)
    python, source = (None, "--skip-numpyro") if a.skip_numpyro else numpyro_python(a.numpyro_python)
    cache = "warm (--warm-cache)" if a.warm_cache else f"fresh, empty: {_INDUCTOR_CACHE}"
    print(f"# {a.chains} chains x {a.warmup} warmup x {a.draws} draws, float64, CPU, {a.threads} thread(s), "
          f"seed {a.seed}; torch {torch.__version__}; Pyro chains run sequentially in this process")
    print(f"# inductor cache: {cache}")
    print(f"# numpyro: {python} ({source})" if python else f"# numpyro: skipped ({source})", flush=True)
    runs = []
    for name in a.models:
        runs += run_model(name, a, python)
    print_summary(runs)
    if a.json:
        write_json(a.json, runs, a)
    return runs


if __name__ == "__main__":
    main()
