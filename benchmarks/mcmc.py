"""NUTS throughput (min bulk ESS per second) of arrcoc.bayes.mcmc against NumPyro and Pyro on four
posteriors (benchmarks/mcmc_models.py: eight schools, diamonds, arK, a GP Poisson regression), in two
machine configurations and from a cold and a warm compile cache, all in one run with same-run ratios.

Configurations:

  best      what a user would choose to use every core of this machine (``--processes``, default
            ``os.cpu_count()`` and one process per chain, each tried):
              arrcoc   ``sample(NUTS(metric=...), model, compile=CompileConfig(cpp_wrapper=True,
                       package=True))`` (inductor's C++ wrapper and the step kept as an AOTInductor
                       package: the choices for long or repeated runs), each with Stan's warmup start
                       (``AdaptationConfig(init_metric="identity")``, the default, as NumPyro's) and
                       with ``init_metric="hessian"`` (the metric from the curvature at each chain's
                       position, initial_metric.py; ``--init-metrics``), the faster counting as ours
                       (--python-wrapper measures the
                       default ``compile=True``, --no-package the C++ wrapper through
                       inductor's own caches) with the chains split over
                       that many worker processes of one torch thread each (two threads in one
                       process measured 0.85x the wall on diamonds, 1.3x on the GP: a step is tens
                       of microseconds of small kernels), started together; the wall is from the first process's start of ``sample`` to the
                       last one's end.
              numpyro  ``chain_method="parallel"`` over one ``--xla_force_host_platform_device_count``
                       host device per chain (NumPyro's documented setting,
                       ``set_host_device_count(num_chains)``: with fewer devices than chains NumPyro
                       falls back to drawing the chains one after another, which is what the
                       "parallel, 2 devices" rows of earlier runs measured) and ``"vectorized"``
                       (XLA's thread pool); both are run and the better ESS/s counts as NumPyro's best.
              pyro     as it is: ``pyro.infer.NUTS`` (``jit_compile=False``, its default), chains one
                       after another in this process (``--pyro-jit`` adds the JIT variant).
  1 thread  every sampler held to one core: arrcoc one process, 4 chains, 1 torch thread; NumPyro
            ``sequential`` with XLA's thread pool off, pinned to one core; Pyro the run above.

In the "best" table each sampler's number is the fastest of all its runs (a one-process run is also a
configuration a user of this machine can choose; on the small posteriors ours is fastest so).

Cold and warm (arrcoc and NumPyro; Pyro compiles nothing):

  cold      a fresh process with an empty compile cache: TORCHINDUCTOR_CACHE_DIR (inductor's FX graph
            and kernel caches) / jax's persistent compilation cache pointed at a new empty directory.
  warm      a second fresh process reusing the directory the cold run filled: what a second run of
            the same model in a new process costs.  The arrcoc "compile" seconds printed are
            ``res.timings["compile_s"]`` (tracing + inductor, cache hit or not; inside the wall).

Every arrcoc and NumPyro run is its own subprocess; their walls exclude interpreter start-up and the
library imports (torch, torch._inductor / jax, numpyro), and include everything ``sample`` /
``mcmc.run`` does (compilation, warmup, draws).  Settings shared by all: the same model, priors and
data, float64, CPU, target acceptance 0.8, max tree depth 10, windowed mass-matrix adaptation (METRIC:
diagonal or dense per model), 4 chains x W warmup x S draws (Pyro: --pyro-warmup x --pyro-draws).
Seeds: ours ``torch.Generator().manual_seed(seed + 1000 k)`` in worker k, Pyro
``pyro.set_rng_seed(seed + chain)``, NumPyro ``PRNGKey(seed)``.

Measured: wall; min bulk ESS over all sampled parameters (constrained draws), the same function for
every sampler (``arrcoc.bayes.diagnostics.ess``, bulk); ESS/s = min bulk ESS / wall; mean leapfrog
steps per post-warmup draw (ours ``info["num_steps"]``, NumPyro its ``num_steps`` field, Pyro calls
of ``velocity_verlet`` from its tree building); divergences.  The load average is printed at the
start and with every run (the machine may be shared).

    .venv/bin/python benchmarks/mcmc.py --numpyro-python /tmp/numpyro-env/bin/python --json out.json
    .venv/bin/python benchmarks/mcmc.py --quick --models eight_schools --skip-pyro
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from arrcoc.bayes.diagnostics import ess  # noqa: E402

__all__ = ["Run", "main", "min_bulk_ess", "ratios", "run_numpyro", "run_ours", "run_pyro", "worker_main"]

NUMPYRO_SCRIPT = Path(__file__).resolve().with_name("mcmc_numpyro.py")
CONFIGS = ("best", "1 thread")


def min_bulk_ess(draws: dict[str, torch.Tensor]) -> float:
    """Smallest bulk ESS over every scalar of the draws name -> (chain, draw, ...), for every sampler."""
    flat = torch.cat([v.reshape(v.shape[0], v.shape[1], -1) for v in draws.values()], -1)  # (C, S, p)
    return float(ess(flat.double(), method="bulk").min())


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Run:
    """One sampler on one model in one configuration and cache state."""
    model: str
    sampler: str            # arrcoc | numpyro | pyro | pyro jit
    config: str             # best | 1 thread
    cache: str              # cold | warm | none
    setup: str              # e.g. "2 processes x 2 chains", "parallel, 2 devices"
    wall: float
    ess: float
    steps: float
    divergent: int
    warmup: int
    draws: int
    compile_s: float | None = None
    load: str = ""
    note: str = ""

    @property
    def rate(self) -> float:
        return self.ess / self.wall

    def line(self) -> str:
        extra = f"  compile {self.compile_s:.1f}s" if self.compile_s is not None else ""
        return (f"{self.model:13s} {self.sampler:8s} {self.config:8s} {self.cache:5s} {self.setup:26s} "
                f"wall {self.wall:7.1f}s  ESS {self.ess:7.1f}  ESS/s {self.rate:8.2f}  steps/draw {self.steps:5.1f}"
                f"  div {self.divergent}{extra}  load {self.load}{self.note}")


# ---------------------------------------------------------------- arrcoc: worker processes
def worker_main(argv) -> None:
    """One arrcoc worker: import, signal ready, wait for the go file, sample, save draws + timings."""
    ap = argparse.ArgumentParser()
    for name in ("--model", "--out", "--go", "--metric"):
        ap.add_argument(name, required=True)
    ap.add_argument("--init-metric", default="identity")
    for name in ("--chains", "--warmup", "--draws", "--seed"):
        ap.add_argument(name, type=int, required=True)
    ap.add_argument("--python-wrapper", action="store_true")
    ap.add_argument("--no-package", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    t = time.perf_counter()
    importlib.import_module("torch._inductor.compile_fx")     # the compiler's import, excluded like jax's
    from torch._dynamo.utils import counters

    from arrcoc.bayes.mcmc import NUTS, AdaptationConfig, CompileConfig, sample
    from mcmc_models import ours_models
    import_s = time.perf_counter() - t
    model = ours_models()[a.model]()
    Path(a.out + ".ready").touch()
    while not os.path.exists(a.go):
        time.sleep(0.002)
    from arrcoc.bayes.mcmc.graph_cache import graph_cache_dir
    packages = len(list(graph_cache_dir().glob("*.pt2"))) if graph_cache_dir().is_dir() else 0
    start = time.time()
    res = sample(NUTS(metric=a.metric, adaptation=AdaptationConfig(init_metric=a.init_metric)), model, num_chains=a.chains, num_warmup=a.warmup, num_samples=a.draws,
                 generator=torch.Generator().manual_seed(a.seed), progress=False,
                 compile=CompileConfig(cpp_wrapper=not a.python_wrapper,
                                       package=not (a.python_wrapper or a.no_package)), warn=False)
    end = time.time()
    np.savez(a.out, start=start, end=end, import_s=import_s, compile_s=res.timings.get("compile_s", float("nan")),
             steps=res.info["num_steps"].double().numpy(), divergent=res.num_divergent,
             packages_before=packages, cache_hit=counters["inductor"]["fxgraph_cache_hit"], cache_miss=counters["inductor"]["fxgraph_cache_miss"],
             **{f"draw_{k}": v.numpy() for k, v in res.draws.items()})


def run_ours(name, metric, chains, warmup, draws, seed, processes, cache_dir, config, cache,
             cpp_wrapper=True, package=True, init_metric="identity") -> Run | None:
    """arrcoc compiled NUTS in ``processes`` fresh worker processes (chains split), cache in cache_dir."""
    split = [chains // processes + (k < chains % processes) for k in range(processes)]
    split = [c for c in split if c > 0]
    with tempfile.TemporaryDirectory(prefix="arrcoc-bench-ours-") as tmp:
        go = os.path.join(tmp, "go")
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir, OMP_NUM_THREADS="1")
        procs, outs = [], []
        for k, c in enumerate(split):
            out = os.path.join(tmp, f"w{k}.npz")
            cmd = [sys.executable, __file__, "--worker", "--model", name, "--metric", metric, "--chains", str(c),
                   "--warmup", str(warmup), "--draws", str(draws), "--seed", str(seed + 1000 * k),
                   "--out", out, "--go", go, "--init-metric", init_metric] \
                + ([] if cpp_wrapper else ["--python-wrapper"]) \
                + ([] if package else ["--no-package"])
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
            outs.append(out)
        while not all(os.path.exists(o + ".ready") for o in outs):
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.01)
        Path(go).touch()
        failed = []
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                failed.append(err)
        if failed:
            print(f"{name:13s} arrcoc worker failed; stderr tail:\n{_tail(failed[0])}", flush=True)
            return None
        parts = [np.load(o) for o in outs]
        keys = [k for k in parts[0].files if k.startswith("draw_")]
        drawn = {k[5:]: torch.from_numpy(np.concatenate([z[k] for z in parts], 0)) for k in keys}
        wall = max(float(z["end"]) for z in parts) - min(float(z["start"]) for z in parts)
        steps = float(np.concatenate([z["steps"].ravel() for z in parts]).mean())
        setup = f"{len(split)} process(es) x {split[0]} chains" + (", hessian" if init_metric == "hessian" else "")
        run = Run(name, "arrcoc", config, cache, setup, wall,
                  min_bulk_ess(drawn), steps, sum(int(z["divergent"]) for z in parts), warmup, draws,
                  compile_s=max(float(z["compile_s"]) for z in parts), load=_load())
        hits, misses = sum(int(z["cache_hit"]) for z in parts), sum(int(z["cache_miss"]) for z in parts)
        pkg = "" if not package else \
            f"package {'loaded' if min(int(z['packages_before']) for z in parts) else 'built'}; "
        run.note = f"  ({pkg}FX graph cache {hits} hit / {misses} miss; import {float(parts[0]['import_s']):.1f}s excluded)"
        return run


# ---------------------------------------------------------------- numpyro
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
    return "\n".join("    " + s for s in (text or "").strip().splitlines()[-lines:])


def run_numpyro(python, name, chains, warmup, draws, seed, method, devices, threads, cache_dir, config,
                cache) -> Run | None:
    """NumPyro's NUTS via mcmc_numpyro.py in a fresh ``python`` process; None (stderr tail printed) on failure."""
    with tempfile.TemporaryDirectory(prefix="arrcoc-bench-numpyro-") as tmp:
        out = Path(tmp) / f"{name}.npz"
        cmd = [python, str(NUMPYRO_SCRIPT), "--model", name, "--chains", str(chains), "--warmup", str(warmup),
               "--draws", str(draws), "--seed", str(seed), "--chain-method", method, "--devices", str(devices),
               "--cache-dir", cache_dir, "--out", str(out)] + (["--threads", str(threads)] if threads else [])
        env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        except OSError as e:
            print(f"{name:13s} numpyro  failed to start {python}: {e}", flush=True)
            return None
        if proc.returncode != 0 or not out.exists():
            print(f"{name:13s} numpyro  failed (exit {proc.returncode}); stderr tail:\n"
                  f"{_tail(proc.stderr or proc.stdout)}", flush=True)
            return None
        with np.load(out) as z:
            drawn = {k[5:]: torch.from_numpy(z[k]) for k in z.files if k.startswith("draw_")}
            setup = f"{method}, {int(z['devices'])} device(s)" + (", 1 core" if threads == 1 else "")
            run = Run(name, "numpyro", config, cache, setup, float(z["wall"]), min_bulk_ess(drawn),
                      float(z["mean_steps"]), int(z["divergent"]), warmup, draws, load=_load())
            run.note = f"  (numpyro {z['numpyro_version']}, jax {z['jax_version']})"
    return run


# ---------------------------------------------------------------- pyro
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
    return Run(name, "pyro jit" if jit else "pyro", "both", "none", f"1 process, {chains} chains in turn", wall,
               min_bulk_ess(stacked), steps / (chains * draws), divergent, warmup, draws, load=_load())


# ---------------------------------------------------------------- reporting
def _best(runs, model, sampler, config, cache):
    """The sampler's fastest run on ``model`` in ``cache`` state: for "1 thread" among its one-core runs,
    for "best" among all its runs (a one-process run is also a choice a user has on this machine)."""
    pool = [r for r in runs if r.model == model and r.sampler == sampler and r.cache in (cache, "none")
            and (config == "best" or r.config in (config, "both"))]
    return max(pool, key=lambda r: r.rate, default=None)


def ratios(runs: list[Run]) -> list[dict]:
    """Per model, configuration and cache: arrcoc's ESS/s over the best NumPyro / Pyro run's."""
    out = []
    for m in dict.fromkeys(r.model for r in runs):
        for config in CONFIGS:
            for cache in ("cold", "warm"):
                ours = _best(runs, m, "arrcoc", config, cache)
                if ours is None:
                    continue
                for peer in ("numpyro", "pyro", "pyro jit"):
                    other = _best(runs, m, peer, config, cache)
                    if other is not None:
                        out.append(dict(model=m, config=config, cache=cache, peer=peer, peer_setup=other.setup,
                                        ours=ours.rate, theirs=other.rate, ratio=ours.rate / other.rate))
    return out


def report(path: str) -> None:
    """Print the tables of a JSON written by --json, and rewrite its ratios with this file's rules."""
    doc = json.loads(Path(path).read_text())
    runs = [Run(**{k: v for k, v in r.items() if k != "ess_per_s"}) for r in doc["runs"]]
    doc["ratios"] = ratios(runs)
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
    print_tables(runs)


def print_tables(runs: list[Run]) -> None:
    q = {(r["model"], r["config"], r["cache"], r["peer"]): r for r in ratios(runs)}
    for config in CONFIGS:
        print(f"\n# {config}: min bulk ESS/s (cold | warm cache); ratio = arrcoc / peer's best in the same state"
              + (" (best: fastest of all its runs)" if config == "best" else ""))
        print(f"{'model':13s} {'arrcoc':>17s} {'numpyro best':>17s} {'pyro':>8s}   {'/numpyro':>13s} {'/pyro':>13s}")
        for m in dict.fromkeys(r.model for r in runs):
            cells = []
            for sampler in ("arrcoc", "numpyro"):
                c, w = (_best(runs, m, sampler, config, s) for s in ("cold", "warm"))
                cells.append(f"{c.rate if c else float('nan'):8.1f}|{w.rate if w else float('nan'):<8.1f}")
            p = _best(runs, m, "pyro", config, "cold")
            rat = []
            for peer in ("numpyro", "pyro"):
                c, w = (q.get((m, config, s, peer)) for s in ("cold", "warm"))
                rat.append(f"{c['ratio'] if c else float('nan'):5.2f}x|{w['ratio'] if w else float('nan'):5.2f}x")
            print(f"{m:13s} {cells[0]:>17s} {cells[1]:>17s} {p.rate if p else float('nan'):8.1f}   "
                  f"{rat[0]:>13s} {rat[1]:>13s}")


def write_json(path: str, runs: list[Run], a: argparse.Namespace, load_start: str, quiet: bool = False) -> None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        pyro_version = version("pyro-ppl")
    except PackageNotFoundError:
        pyro_version = None
    config = dict(chains=a.chains, warmup=a.warmup, draws=a.draws, pyro_warmup=a.pyro_warmup,
                  pyro_draws=a.pyro_draws, pyro_models=None if a.skip_pyro else a.pyro_models, seed=a.seed, processes=a.processes, cpus=os.cpu_count(),
                  torch=torch.__version__, pyro=pyro_version, load_start=load_start, load_end=_load(),
                  numpyro_methods=a.numpyro_methods, cpp_wrapper=not a.python_wrapper)
    doc = dict(config=config, runs=[dict(asdict(r), ess_per_s=r.rate) for r in runs], ratios=ratios(runs))
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
    if not quiet:
        print(f"# wrote {path}")


# ---------------------------------------------------------------- driver
def parse_args(argv=None) -> argparse.Namespace:
    from mcmc_models import MODELS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="chains x 200 warmup x 200 draws (Pyro 100 x 100)")
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--models", default=",".join(MODELS), help="comma list among " + ",".join(MODELS))
    ap.add_argument("--configs", default="best,1 thread", help="comma list among 'best', '1 thread'")
    ap.add_argument("--processes", default=None,
                    help="comma list of arrcoc worker-process counts tried in 'best' (default: the core count and "
                         "one process per chain, as NumPyro's parallel runs one device per chain)")
    ap.add_argument("--python-wrapper", action="store_true",
                    help="arrcoc with CompileConfig(cpp_wrapper=False): inductor's Python wrapper (the old default)")
    ap.add_argument("--no-package", action="store_true",
                    help="arrcoc without CompileConfig(package=True): warm starts through inductor's caches")
    ap.add_argument("--init-metrics", default="identity,hessian",
                    help="comma list of arrcoc warmup starts tried (AdaptationConfig.init_metric): 'identity' "
                         "(Stan's, as NumPyro) and 'hessian' (the curvature at each chain's position)")
    ap.add_argument("--numpyro-methods", default="parallel,vectorized", help="NumPyro chain methods tried in 'best'")
    ap.add_argument("--pyro-warmup", type=int, default=200, help="Pyro warmup (it is slow: shorter runs)")
    ap.add_argument("--pyro-draws", type=int, default=200, help="Pyro draws")
    ap.add_argument("--skip-pyro", action="store_true")
    ap.add_argument("--pyro-models", default=None, help="comma list: run Pyro only on these (default: every model)")
    ap.add_argument("--pyro-jit", action="store_true", help="also Pyro's NUTS with jit_compile=True")
    ap.add_argument("--skip-numpyro", action="store_true")
    ap.add_argument("--numpyro-python", default=None,
                    help="interpreter with numpyro + jax (default $NUMPYRO_PYTHON, else this one if it has numpyro)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the runs and ratios as JSON")
    ap.add_argument("--report", default=None, metavar="PATH", help="only print the tables of an earlier --json")
    a = ap.parse_args(argv)
    if a.quick:
        a.warmup, a.draws, a.pyro_warmup, a.pyro_draws = 200, 200, 100, 100
    a.models, a.configs = a.models.split(","), a.configs.split(",")
    a.pyro_models = a.models if a.pyro_models is None else a.pyro_models.split(",")
    a.numpyro_methods = a.numpyro_methods.split(",")
    a.init_metrics = a.init_metrics.split(",")
    if bad := [m for m in a.init_metrics if m not in ("identity", "hessian")]:
        ap.error(f"unknown init metric(s) {bad}; choose among identity,hessian")
    if bad := [m for m in a.models if m not in MODELS]:
        ap.error(f"unknown model(s) {bad}; choose among {list(MODELS)}")
    if bad := [c for c in a.configs if c not in CONFIGS]:
        ap.error(f"unknown config(s) {bad}; choose among {list(CONFIGS)}")
    if bad := [m for m in a.numpyro_methods if m not in ("parallel", "vectorized")]:
        ap.error(f"unknown NumPyro method(s) {bad}; choose among parallel,vectorized")
    try:
        a.processes = ([os.cpu_count() or 1, a.chains] if a.processes is None
                       else [int(p) for p in str(a.processes).split(",")])
    except ValueError:
        ap.error(f"--processes must be a comma list of positive integers, got {a.processes!r}")
    a.processes = list(dict.fromkeys(min(p, a.chains) for p in a.processes))
    if any(p < 1 for p in a.processes):
        ap.error("--processes must be >= 1")
    return a


def run_model(name: str, a: argparse.Namespace, python: str | None) -> list[Run]:
    from mcmc_models import METRIC, pyro_models
    metric, runs = METRIC[name], []
    print(f"{name:13s} ({metric} mass matrix for every sampler)", flush=True)

    def record(run):
        if run is not None:
            runs.append(run)
            print(run.line(), flush=True)
    common = (a.chains, a.warmup, a.draws, a.seed)
    for config in a.configs:
        for processes, init_metric in itertools.product(a.processes if config == "best" else [1], a.init_metrics):
            ours_cache = tempfile.mkdtemp(prefix="arrcoc-bench-inductor-")
            try:
                for cache in ("cold", "warm"):
                    record(run_ours(name, metric, *common, processes, ours_cache, config, cache, not a.python_wrapper,
                                    not a.no_package, init_metric))
            finally:
                shutil.rmtree(ours_cache, ignore_errors=True)
        if python is None:
            continue
        # parallel: one host device per chain (fewer devices than chains make NumPyro run them in turn)
        setups = ([(m, a.chains if m == "parallel" else 1, None) for m in a.numpyro_methods] if config == "best"
                  else [("sequential", 1, 1)])
        for method, devices, threads in setups:
            jax_cache = tempfile.mkdtemp(prefix="arrcoc-bench-jax-")
            try:
                for cache in ("cold", "warm"):
                    record(run_numpyro(python, name, *common, method, devices, threads, jax_cache, config, cache))
            finally:
                shutil.rmtree(jax_cache, ignore_errors=True)
    if not a.skip_pyro and name in a.pyro_models:
        torch.set_num_threads(1)
        for jit in (False, True) if a.pyro_jit else (False,):
            record(run_pyro(name, pyro_models()[name](), a.chains, a.pyro_warmup, a.pyro_draws, a.seed, metric, jit))
    return runs


def main(argv=None):
    a = parse_args(argv)
    if a.report:
        report(a.report)
        return []
    torch.set_default_dtype(torch.float64)
    python, source = (None, "--skip-numpyro") if a.skip_numpyro else numpyro_python(a.numpyro_python)
    load_start = _load()
    print(f"# {a.chains} chains x {a.warmup} warmup x {a.draws} draws (Pyro {a.pyro_warmup} x {a.pyro_draws}), "
          f"float64, CPU, {os.cpu_count()} cores; seed {a.seed}; torch {torch.__version__}")
    print(f"# best: arrcoc {'/'.join(map(str, a.processes))} processes, NumPyro {'/'.join(a.numpyro_methods)}; load average at start "
          f"(1/5/15 min) {load_start}")
    print(f"# numpyro: {python} ({source})" if python else f"# numpyro: skipped ({source})", flush=True)
    runs = []
    for name in a.models:
        runs += run_model(name, a, python)
        if a.json:                      # after every model: a run cut short keeps what it measured
            write_json(a.json, runs, a, load_start, quiet=True)
    print_tables(runs)
    print(f"\n# load average at end {_load()}")
    if a.json:
        write_json(a.json, runs, a, load_start)
    return runs


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker_main(sys.argv[2:])
    else:
        main()
