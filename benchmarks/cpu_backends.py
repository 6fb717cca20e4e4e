"""Encoder latency on CPU: eager vs ``optimize_for_cpu`` in one run, as a ratio, outputs compared.

Loads the pretrained default (or ``--model tiny``) twice, leaves one copy eager and gives the other
to ``arrcoc.serving.optimize_for_cpu(model, backend)`` (its preparation -- tracing, compiling --
timed separately), then times the two forward passes on the bundled scene in deterministic mode
*interleaved* (eager, optimised, eager, ...), so that a load change on a shared machine hits both
alike; the speed-up is the median of the per-pair ratios. The optimised path must give the same
allocation and a ``last_hidden_state`` within the stated tolerance of the eager one: max |diff| /
max |eager| <= 1e-4 in fp32 (the frozen graphs fold BatchNorm into the convolutions and oneDNN
reorders sums: ~1e-5) or 5e-2 with bf16 autocast (bf16 keeps 8 bits of mantissa: ~4e-3 per op,
accumulated over the backbone's ~50 layers).

    .venv/bin/python benchmarks/cpu_backends.py [--backend auto] [--repeats 7] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["main"]


def _load(kind: str):
    from arrcoc.modeling import ARRCOCImageProcessor, load_default_model

    if kind == "tiny":
        from tests.modeling.conftest import tiny_model
        model = tiny_model()
        return model, ARRCOCImageProcessor.from_model_config(model.config)
    return load_default_model()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="auto", choices=["auto", "ipex", "torchscript", "inductor", "eager"])
    ap.add_argument("--model", choices=["default", "tiny"], default="default")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from PIL import Image

    from arrcoc.assets import sample_image_path
    from arrcoc.serving import optimize_for_cpu

    eager, processor = _load(args.model)
    fast, _ = _load(args.model)
    pv = processor(Image.open(sample_image_path()).convert("RGB"))["pixel_values"]  # (1, 3, H, W)
    q = ["What does the blue sign say?"]
    t = time.perf_counter()
    plan = optimize_for_cpu(fast, args.backend)
    prep = time.perf_counter() - t

    def run(model, ctx):
        with torch.no_grad(), ctx():
            return model(pv, queries=q, deterministic=True)

    no_autocast = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    ref = run(eager, no_autocast)  # warm-up
    t = time.perf_counter()
    out = run(fast, plan.autocast)  # first call (a lazy compile lands here)
    first = time.perf_counter() - t
    t_e, t_o = [], []
    for _ in range(args.repeats):
        for model, ctx, acc in ((eager, no_autocast, t_e), (fast, plan.autocast, t_o)):
            t = time.perf_counter()
            run(model, ctx)
            acc.append(time.perf_counter() - t)
    ratio = statistics.median(a / b for a, b in zip(t_e, t_o))
    tol = 5e-2 if plan.bf16 else 1e-4
    a, b = ref.last_hidden_state.float(), out.last_hidden_state.float()
    same_alloc = torch.equal(ref.allocation, out.allocation)
    if a.shape == b.shape:
        max_abs = float((a - b).abs().max())
        rel = max_abs / float(a.abs().max().clamp_min(1e-12))
        norm_rel = float((a - b).norm() / a.norm().clamp_min(1e-12))
    else:
        max_abs = rel = norm_rel = float("inf")
    ok = same_alloc and rel <= tol
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
          f"({torch.backends.cpu.get_cpu_capability()}), load average {load} (a shared machine)")
    print(plan)
    print(f"preparation {prep:.1f} s, first call {first:.2f} s")
    print(f"eager {statistics.median(t_e) * 1e3:.0f} ms, {plan.backend} {statistics.median(t_o) * 1e3:.0f} ms "
          f"(medians of {args.repeats}, interleaved): speed-up {ratio:.2f}x (median of per-pair ratios) -> "
          f"{'not slower' if ratio >= 1 else 'SLOWER'}")
    print(f"allocation {'equal' if same_alloc else 'DIFFERENT'}; last_hidden_state max |diff| {max_abs:.1e}, "
          f"max |diff| / max |eager| {rel:.1e} (tolerance {tol:g}), ||diff|| / ||eager|| {norm_rel:.1e}: "
          f"{'ok' if ok else 'NOT ok'}")
    plan.restore()
    return {"eager_s": statistics.median(t_e), "optimized_s": statistics.median(t_o), "ratio": ratio,
            "prepare_s": prep, "first_call_s": first, "max_abs": max_abs, "rel_err": rel, "norm_rel_err": norm_rel,
            "ok": ok, "backend": plan.backend}


if __name__ == "__main__":
    main()
