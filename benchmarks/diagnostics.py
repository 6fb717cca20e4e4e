"""Throughput of R-hat (rank) + bulk ESS + tail ESS: arrcoc.bayes.diagnostics vs ArviZ (arviz-stats).

Both libraries get the same draws (4 chains x 1000 draws x 10,000 parameters by default; AR(1)
chains with a spread of autocorrelations), ours as a torch tensor, ArviZ's ``array_stats`` as the
same numpy array, in the same run; best of ``--repeats`` wall times, then the ratio. The results are
also checked to agree (max relative difference) so the timing compares equal work.

    .venv/bin/python benchmarks/diagnostics.py            # full size
    .venv/bin/python benchmarks/diagnostics.py --quick    # 4 x 1000 x 1000
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from arrcoc.bayes.diagnostics import ess, rhat  # noqa: E402


def make_draws(chains: int, draws: int, params: int, seed: int) -> np.ndarray:
    """AR(1) chains, coefficient spread over [0, 0.95) across parameters, float64 (C, N, P)."""
    rng = np.random.default_rng(seed)
    phi = np.linspace(0.0, 0.95, params, endpoint=False)
    x = np.empty((chains, draws, params))
    x[:, 0] = rng.standard_normal((chains, params)) / np.sqrt(1 - phi ** 2)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + rng.standard_normal((chains, params))
    return x


def ours(t: torch.Tensor):
    return rhat(t, method="rank"), ess(t, method="bulk"), ess(t, method="tail")


def run_arviz(x: np.ndarray):
    from arviz_stats.base import array_stats
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return (array_stats.rhat(x, chain_axis=0, draw_axis=1, method="rank"),
                array_stats.ess(x, chain_axis=0, draw_axis=1, method="bulk"),
                array_stats.ess(x, chain_axis=0, draw_axis=1, method="tail", prob=0.05))


def best_time(fn, arg, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(arg)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 x 1000 x 1000 instead of 10,000 params")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--params", type=int, default=None, help="default 10000 (1000 with --quick)")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs, each library")
    ap.add_argument("--threads", type=str, default=None,
                    help="comma-separated torch thread counts to time ours with (default: 1 and "
                    "torch's default); ArviZ's numpy loop is single threaded either way")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    params = args.params or (1000 if args.quick else 10_000)
    default_threads = torch.get_num_threads()
    if args.threads:
        threads = [int(v) for v in args.threads.split(",")]
    else:
        threads = sorted({1, default_threads})
    try:
        import arviz_stats  # noqa: F401
    except ImportError:
        print("arviz-stats is not installed: pip install arrcoc[arviz]", file=sys.stderr)
        return 2

    x = make_draws(args.chains, args.draws, params, args.seed)
    t = torch.from_numpy(x)
    print(f"draws: {args.chains} chains x {args.draws} draws x {params} parameters (float64), "
          f"best of {args.repeats}")
    ours(t[:, :, :8])  # warm-up (lazy imports, FFT plans)
    times = {}
    for n in threads:
        torch.set_num_threads(n)
        times[n], r_ours = best_time(ours, t, args.repeats)
        print(f"arrcoc ({n} torch thread{'s' if n > 1 else ''}) rhat(rank) + ess(bulk) + ess(tail): "
              f"{times[n]:8.3f} s")
    torch.set_num_threads(default_threads)
    t_az, r_az = best_time(run_arviz, x, args.repeats)
    print(f"arviz-stats array_stats (same three, numpy):          {t_az:8.3f} s")
    worst = 0.0
    for a, b in zip(r_ours, r_az):
        rel = np.abs(a.numpy() - b) / np.abs(b)
        worst = max(worst, float(np.nanmax(rel)))
    print(f"agreement: max relative difference {worst:.2e}")
    for n, t_ours in times.items():
        print(f"ratio arviz-stats / arrcoc ({n} thread{'s' if n > 1 else ''}) = {t_az / t_ours:.2f}x "
              f"({'arrcoc faster' if t_ours < t_az else 'arrcoc SLOWER'})")
    return 0 if worst < 1e-6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
