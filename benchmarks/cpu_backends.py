"""Encoder latency on CPU: eager vs ``optimize_for_cpu`` in one run, as a ratio, outputs compared.

Runs the pretrained default (or ``--model tiny``) on the bundled scene in deterministic mode: the
eager forward, then ``arrcoc.serving.optimize_for_cpu(model, backend)`` (compile warm-up timed
separately), medians over ``--repeats``. The optimised path must give the same allocation and a
``last_hidden_state`` within the stated tolerance: 1e-4 relative (fp32 kernels reorder sums) or,
with bf16 autocast, 5e-2 relative (bf16 keeps 8 bits of mantissa: ~4e-3 per op, accumulated over
the backbone's ~50 layers).

    .venv/bin/python benchmarks/cpu_backends.py [--backend auto] [--repeats 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["main"]


def _time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="auto", choices=["auto", "ipex", "inductor", "eager"])
    ap.add_argument("--model", choices=["default", "tiny"], default="default")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from PIL import Image

    from arrcoc.assets import sample_image_path
    from arrcoc.modeling import ARRCOCImageProcessor, load_default_model
    from arrcoc.serving import optimize_for_cpu

    if args.model == "tiny":
        from tests.modeling.conftest import tiny_model
        model = tiny_model()
        processor = ARRCOCImageProcessor.from_model_config(model.config)
    else:
        model, processor = load_default_model()
    pv = processor(Image.open(sample_image_path()).convert("RGB"))["pixel_values"]
    q = ["What does the blue sign say?"]

    def run():
        with torch.no_grad(), plan_ctx():
            return model(pv, queries=q, deterministic=True)

    plan_ctx = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    run()  # warm-up
    t_eager, ref = _time(run, args.repeats)
    print(f"eager: {t_eager * 1e3:.0f} ms (median of {args.repeats})", flush=True)
    plan = optimize_for_cpu(model, args.backend)
    plan_ctx = plan.autocast
    t = time.perf_counter()
    run()  # compile / first call
    warm = time.perf_counter() - t
    t_opt, out = _time(run, args.repeats)
    tol = 5e-2 if plan.bf16 else 1e-4
    a, b = ref.last_hidden_state.float(), out.last_hidden_state.float()
    same_alloc = torch.equal(ref.allocation, out.allocation)
    rel = float((a - b).norm() / a.norm().clamp_min(1e-12)) if a.shape == b.shape else float("inf")
    ok = same_alloc and rel <= tol
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {plan}")
    print(f"eager {t_eager * 1e3:.0f} ms, {plan.backend} {t_opt * 1e3:.0f} ms (first call {warm:.1f} s): "
          f"speed-up {t_eager / t_opt:.2f}x; allocation {'equal' if same_alloc else 'DIFFERENT'}, "
          f"last_hidden_state relative error {rel:.1e} (tolerance {tol:g}): {'ok' if ok else 'NOT ok'}")
    plan.restore()
    return {"eager_s": t_eager, "optimized_s": t_opt, "ratio": t_eager / t_opt, "first_call_s": warm,
            "rel_err": rel, "ok": ok, "backend": plan.backend}


if __name__ == "__main__":
    main()
