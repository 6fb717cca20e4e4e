"""Load test of the exported ensemble on a real local tritonserver (127.0.0.1 only, bounded).

Exports the model (``--model tiny``: the tiny random-weight model of the tests; ``default``: the
pretrained EfficientNet-Lite0 + MiniLM default), starts tritonserver from the side environment
(``arrcoc.serving.server``), then runs ``--clients`` threads x ``--requests`` valid requests each
(HTTP and gRPC alternating by client; images and questions varied, seeds fixed per request), with
one malformed request of each kind mixed in after every ``--bad-every`` valid ones: wrong shape,
wrong dtype, empty question, corrupt image bytes, a budget below the smallest level. Prints
throughput, p50 / p99 latency of the valid requests, failures (must be 0), and for each malformed
kind whether every one got an error naming the problem, and each stage's share of the server's
compute time (Triton's ``nv_inference_compute_infer_duration_us``). ``--contention [N]`` runs N
busy numpy-matmul processes throughout (default: one per core the server's stages leave free, at
least one; ``benchmarks/contention.py``).

    .venv/bin/python benchmarks/triton_load.py [--model tiny] [--clients 8] [--requests 50] [--contention [N]]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["main"]

BAD_KINDS = {  # kind -> text the error must contain
    "wrong shape": "budget", "wrong dtype": "budget", "empty question": "question is empty",
    "corrupt image": "image", "budget below smallest level": "is below",
}
QUESTIONS = ["what does the sign say?", "where is the red car?", "what colour is the sky?", "who is on the left?"]


def _compute_us(metrics_url: str) -> dict:
    """Cumulative compute time (microseconds) of each model, from the server's metrics."""
    import urllib.request

    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    out = {}
    for m in re.finditer(r'^nv_inference_compute_infer_duration_us\{model="([^"]+)",version="[^"]*"\} (\S+)$', text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def _images(n: int) -> list[bytes]:
    from PIL import Image

    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (180, 240, 3), dtype=np.uint8)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _inputs(mod, image, question, budget, seed, dtype=np.int64, shape=(1, 1)):
    def inp(name, arr, dt):
        i = mod.InferInput(name, list(arr.shape), dt)
        i.set_data_from_numpy(arr)
        return i
    return [inp("image", np.array([[image]], dtype=object), "BYTES"),
            inp("question", np.array([[question.encode()]], dtype=object), "BYTES"),
            inp("budget", np.full(shape, budget, dtype=dtype), "INT64" if dtype == np.int64 else "FP32"),
            inp("seed", np.array([[seed]], dtype=np.int64), "INT64")]


def _bad(mod, kind, image, min_budget):
    q = QUESTIONS[0]
    if kind == "wrong shape":
        return _inputs(mod, image, q, 640, 0, shape=(1, 2))
    if kind == "wrong dtype":
        return _inputs(mod, image, q, 640, 0, dtype=np.float32)
    if kind == "empty question":
        return _inputs(mod, image, "   ", 640, 0)
    if kind == "corrupt image":
        return _inputs(mod, b"\x89PNG\r\n\x1a\n" + bytes(50), q, 640, 0)
    return _inputs(mod, image, q, min_budget - 1, 0)


def _client(k, url_http, url_grpc, n, images, budget, min_budget, bad_every, lat, fails, bad_ok, lock):
    import tritonclient.grpc as grpc
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    mod = http if k % 2 == 0 else grpc
    client = http.InferenceServerClient(url_http, network_timeout=600.0, connection_timeout=60.0) if mod is http \
        else grpc.InferenceServerClient(url_grpc)
    kinds = list(BAD_KINDS)
    for i in range(n):
        ins = _inputs(mod, images[(k * n + i) % len(images)], QUESTIONS[(k + i) % len(QUESTIONS)], budget, k * 1000 + i)
        t = time.perf_counter()
        try:
            r = client.infer("arrcoc", ins)
            ok = int(r.as_numpy("tokens_per_image")[0, 0]) == int(r.as_numpy("attention_mask").sum())
            with lock:
                (lat.append(time.perf_counter() - t) if ok else fails.append(f"client {k}: inconsistent answer"))
        except InferenceServerException as e:
            with lock:
                fails.append(f"client {k} request {i}: {e}")
        if bad_every and (i + 1) % bad_every == 0:
            kind = kinds[(k + i // bad_every) % len(kinds)]
            try:
                client.infer("arrcoc", _bad(mod, kind, images[0], min_budget))
                got = False
            except InferenceServerException as e:
                got = BAD_KINDS[kind] in str(e)
            with lock:
                bad_ok.setdefault(kind, []).append(got)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["tiny", "default"], default="tiny")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=50, help="valid requests per client")
    ap.add_argument("--bad-every", type=int, default=10, help="a malformed request after every N valid ones (0: none)")
    ap.add_argument("--budget", type=int, default=None, help="default: the model's config.budget")
    ap.add_argument("--no-cache", action="store_true", help="export without the relevance cache")
    ap.add_argument("--contention", type=int, nargs="?", const=-1, default=None, metavar="N",
                    help="N busy numpy-matmul processes throughout (default: one per core the stages leave free)")
    args = ap.parse_args(argv)

    from arrcoc.modeling import ARRCOCImageProcessor, load_default_model
    from arrcoc.serving import ExportConfig, TritonServer, ensure_tritonserver, export_triton

    if args.model == "tiny":
        from tests.modeling.conftest import tiny_model
        model = tiny_model()
        processor = ARRCOCImageProcessor.from_model_config(model.config)
    else:
        model, processor = load_default_model()
    budget = args.budget or model.config.budget
    min_budget = model.config.global_tokens + min(v for v in model.config.levels if v > 0)
    repo = export_triton(Path(tempfile.mkdtemp(prefix="arrcoc-load-")) / "repo", model, processor,
                         config=ExportConfig(cache=None) if args.no_cache else None)
    images = _images(16)
    from benchmarks.contention import competing_load, default_count

    # each stage process runs 1 torch thread (ExportConfig.torch_threads); the backbone stages are busy
    busy = None if args.contention is None else (default_count(1) if args.contention < 0 else args.contention)
    t0 = time.perf_counter()
    with TritonServer(repo, ensure_tritonserver()) as server, \
            (competing_load(busy) if busy else contextlib.nullcontext()) as load:
        print(f"tritonserver ready in {time.perf_counter() - t0:.1f} s ({args.model} model, HTTP {server.http_url}, "
              f"gRPC {server.grpc_url})", flush=True)
        if busy:
            print(f"competing load: {busy} busy numpy-matmul process(es) on {os.cpu_count()} CPUs; load average "
                  f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (this machine is shared with other work)", flush=True)
        before = _compute_us(server.metrics_url)
        lat, fails, bad_ok, lock = [], [], {}, threading.Lock()
        threads = [threading.Thread(target=_client, args=(k, server.http_url, server.grpc_url, args.requests, images,
                                                          budget, min_budget, args.bad_every, lat, fails, bad_ok, lock))
                   for k in range(args.clients)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        after = _compute_us(server.metrics_url)
        busy_iterations = load.iterations() if busy else []
    lat.sort()
    stages = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after if k != "arrcoc"}
    total_us = sum(stages.values()) or 1.0
    n = len(lat)
    res = {"valid": args.clients * args.requests, "answered": n, "failed": len(fails), "wall_s": wall,
           "throughput_rps": n / wall if wall else 0.0,
           "p50_s": statistics.median(lat) if lat else float("nan"),
           "p99_s": lat[min(n - 1, int(np.ceil(0.99 * n)) - 1)] if lat else float("nan"),
           "malformed": {k: (sum(v), len(v)) for k, v in bad_ok.items()},
           "stage_share": {k: v / total_us for k, v in stages.items()}, "busy_processes": busy or 0,
           "busy_iterations": busy_iterations}
    print(f"{args.clients} clients x {args.requests} valid requests (budget {budget}"
          f"{f', {busy} competing busy process(es)' if busy else ''}): {n} answered, {len(fails)} failed, "
          f"{res['throughput_rps']:.2f} req/s, p50 {res['p50_s'] * 1e3:.0f} ms, p99 {res['p99_s'] * 1e3:.0f} ms")
    print("  compute time by stage: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in sorted(res["stage_share"].items())))
    for kind, (good, total) in res["malformed"].items():
        print(f"  malformed ({kind}): {good}/{total} got an error naming the problem")
    for f in fails[:5]:
        print("  FAILED:", f)
    return res


if __name__ == "__main__":
    r = main()
    sys.exit(0 if r["failed"] == 0 and all(g == t for g, t in r["malformed"].values()) else 1)
