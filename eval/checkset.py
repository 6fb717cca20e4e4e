"""Command line of the public check set.

    python -m eval.checkset --budget 640 1024 --out eval/results/checkset.json

Builds the scenes (``scenes.CheckSetConfig``), loads the offline pretrained default
(``arrcoc.modeling.load_default_model``), runs the model in deterministic and Thompson mode plus the
allocator's baselines (``runner``), prints the metrics table (``report``) and the bundled-scene check
(``bundled``), and writes everything -- config, scenes, per-question allocations, metrics -- as JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

__all__ = ["main", "evaluate", "build_parser", "model_fingerprint", "dumps"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.checkset", description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=int, nargs="+", default=[640, 1024],
                   help="total tokens per image (global + regions); several allowed (default 640 1024)")
    p.add_argument("--out", type=Path, default=Path("eval/results/checkset.json"), help="JSON output path")
    p.add_argument("--scenes", type=int, default=None, help="number of scenes (default: CheckSetConfig's 14)")
    p.add_argument("--seed", type=int, default=0, help="check-set seed (scenes, questions, clutter)")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the Thompson draws and random baseline")
    p.add_argument("--modes", nargs="+", default=["deterministic", "thompson"],
                   choices=["deterministic", "thompson"], help="decision modes to evaluate")
    p.add_argument("--no-baselines", action="store_true", help="skip the allocator's baselines")
    p.add_argument("--no-query-rows", action="store_true", help="skip the model runs without a question")
    p.add_argument("--no-spatial", action="store_true", help="skip the spatial subset")
    p.add_argument("--no-bundled", action="store_true", help="skip the bundled sample-scene check")
    p.add_argument("--full-forward", action="store_true",
                   help="run every forward pass to the end (region encoding included; same numbers, ~8x slower)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's own; 1 is fastest on a busy machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def evaluate(model, processor, checkset_config=None, eval_config=None, progress: bool = True):
    """Build the scenes, run every policy, summarise: a ``report.CheckSetResult``."""
    from .report import CheckSetResult, object_chance, one_region_chance, scene_summary, summarise
    from .runner import EvalConfig, policy_names, run_checkset
    from .scenes import CheckSetConfig, build_checkset

    cs = CheckSetConfig(grid=model.config.grid) if checkset_config is None else checkset_config
    ev = EvalConfig() if eval_config is None else eval_config
    t0 = time.perf_counter()
    scenes = build_checkset(cs)
    records = run_checkset(model, processor, scenes, ev, progress=progress)
    metrics = summarise(records, scenes, policy_names(ev), ev.budgets, ev.max_ties)
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "backbone": model.config.backbone.get("name", model.config.backbone.get("type")),
           "query_encoder": model.config.query_encoder.get("pretrained_package", model.config.query_encoder.get("type"))}
    env["model_fingerprint"] = model_fingerprint(model)
    try:
        import skimage

        env["scikit_image"] = skimage.__version__
    except ImportError:  # pragma: no cover - build_checkset already needed it
        pass
    return CheckSetResult(metrics, [scene_summary(s) for s in scenes], [r._asdict() for r in records],
                          {k: list(v) if isinstance(v, tuple) else v for k, v in vars(cs).items()}, ev.to_dict(),
                          {**{sub: one_region_chance(scenes, sub) for sub in ("object", "spatial")},
                           "object_blind": object_chance(scenes)},
                          time.perf_counter() - t0, env)


def model_fingerprint(model) -> str:
    """SHA-256 (first 16 hex digits) over every parameter and buffer: two runs saw the same weights
    exactly when their fingerprints agree (an untrained head initialised from the global RNG differs
    from process to process)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def dumps(payload: dict) -> str:
    """JSON with the small sections indented and the long lists (scenes, records) one item a line."""
    parts = []
    for k, v in payload.items():
        if k in ("scenes", "records") and isinstance(v, list):
            body = "[\n" + ",\n".join("  " + json.dumps(x) for x in v) + "\n ]"
        else:
            body = json.dumps(v, indent=1).replace("\n", "\n ")
        parts.append(f" {json.dumps(k)}: {body}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .runner import EvalConfig
    from .scenes import CheckSetConfig

    try:
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        kw = {} if args.scenes is None else {"num_scenes": args.scenes}
        cs = CheckSetConfig(seed=args.seed, spatial=not args.no_spatial, **kw)
        ev = EvalConfig(budgets=tuple(args.budget), modes=tuple(dict.fromkeys(args.modes)), seed=args.eval_seed,
                        baselines=() if args.no_baselines else EvalConfig().baselines,
                        no_query=not args.no_query_rows, full_forward=args.full_forward)
    except (TypeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from arrcoc.modeling import ARRCOCVisionConfig, load_default_model

    g_tokens = ARRCOCVisionConfig(grid=cs.grid).global_tokens  # checked before the weights load
    if min(ev.budgets) < g_tokens:
        print(f"error: --budget must be at least the global thumbnail's {g_tokens} tokens, "
              f"got {list(ev.budgets)}", file=sys.stderr)
        return 2
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, processor = load_default_model(grid=cs.grid)
    result = evaluate(model, processor, cs, ev, progress=not args.no_progress)
    print(result.table())
    payload = result.to_dict()
    if not args.no_bundled:
        from .bundled import bundled_check

        bundled = bundled_check(model, processor, ev.budgets)
        print()
        print(bundled)
        payload["bundled"] = bundled.to_dict()
    payload["total_runtime_s"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(payload))
    print(f"\nwrote {args.out} · {payload['total_runtime_s']:.0f} s in all (model load included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
