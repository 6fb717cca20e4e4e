"""Time the relevance allocator against one ViT-B/16 forward pass on the same machine, same run.

The allocator's time covers everything it does per batch: the scorers (pixel entropy, feature
entropy, centre-surround, spectral residual, the learned query cross-attention, and the zero-shot
question channels: ConSE over a 1000-class head with 384-dim label embeddings, text strokes, colour,
position, and the OCR channels' text amount and word match), the closed-form posterior, Thompson sampling and the exact DP allocation. The peer is one forward pass of
transformers.ViTModel(ViTConfig()) (ViT-B/16, 224 px, random weights) on the same batch of 8 images.
Medians over repeats, torch.no_grad, CPU unless --device says otherwise. The pretrained default's
own looks before it allocates (the glimpse pass and the ConSE channel's region crops, 192 px at the
default ``concept_side`` 6, both through EfficientNet-Lite0, and the OCR reader's PP-OCRv4 pass) are
looks at the image, not allocator work; they are timed too, against the same ViT-B/16
(``--no-looks`` skips them).

    .venv/bin/python benchmarks/allocator.py [--repeats 10] [--vit-repeats 3] [--device cpu] [--threads 1 2]
                                             [--contention]

--contention [N] runs N competing busy processes (numpy matmuls, one BLAS thread each; default:
one per core the measurement leaves to others, at least one: ``benchmarks/contention.py``) during
the measurements, as on a server host running several instances, and also times the allocator
inside ``arrcoc.serving.limit_threads(1)`` -- the thread setting the serving stages use for it
(``ServingConfig.allocator_threads``) -- next to torch's thread count. The ViT-B/16 peer runs at
torch's thread count under the same load.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import arrcoc.backbones  # noqa: F401  (torchvision fix before transformers loads ViT)

from arrcoc.relevance import RelevanceAllocator, RelevanceConfig
from arrcoc.relevance.concept import ConceptScorer
from arrcoc.relevance.scene_text import SceneText
from arrcoc.relevance.cues import QuestionBatch
from arrcoc.relevance.knapsack import solve, utility_table
from arrcoc.relevance.question import parse_questions
from arrcoc.relevance.thompson import thompson

__all__ = ["main"]


def _median_time(fn, repeats: int, device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--vit-repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--regions", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="torch CPU thread counts to measure, each a separate comparison (default: 1 and torch's default)")
    ap.add_argument("--contention", type=int, nargs="?", const=-1, default=None, metavar="N",
                    help="N competing busy processes during the run (default: one per core left to others); "
                         "also time the allocator at the serving thread setting")
    ap.add_argument("--no-looks", action="store_true",
                    help="skip timing the pretrained default's glimpse and ConSE crops (EfficientNet-Lite0)")
    args = ap.parse_args(argv)
    threads = args.threads or sorted({1, torch.get_num_threads()})
    from benchmarks.contention import competing_load, default_count

    results = {}
    for n in threads:
        torch.set_num_threads(n)
        busy = None if args.contention is None else (default_count(n) if args.contention < 0 else args.contention)
        with (competing_load(busy) if busy else contextlib.nullcontext()) as load:
            if busy:
                print(f"competing load: {busy} busy numpy-matmul process(es) on {os.cpu_count()} CPUs "
                      "(this machine is also shared with other work: see the load average)")
            results[n] = _run(args)
            if busy:
                results[n]["busy_iterations"] = load.iterations()
    return results


def _serving_threads():
    """The allocator's thread setting in arrcoc.serving (one torch thread around it)."""
    from arrcoc.serving import ServingConfig, limit_threads

    return limit_threads(ServingConfig().allocator_threads)


def _run(args) -> dict:
    from transformers import ViTConfig, ViTModel

    device = torch.device(args.device)
    torch.manual_seed(0)
    B, D, T = args.batch, 768, 16
    vit = ViTModel(ViTConfig()).eval().to(device)
    pixels = torch.randn(B, 3, 224, 224, device=device)
    with torch.no_grad():
        t_vit = _median_time(lambda: vit(pixel_values=pixels), args.vit_repeats, device)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {B}, "
          f"{os.cpu_count()} CPUs, load average {load}")
    print(f"ViT-B/16 forward (224 px): {t_vit * 1e3:.1f} ms")
    results = {"vit_s": t_vit}
    for R in args.regions:
        grid = int(round(R ** 0.5))
        side = 224 // grid
        cfg = RelevanceConfig(grid=grid, budget=100 * R)
        gen = torch.Generator().manual_seed(0)
        concept = ConceptScorer(torch.randn(1000, D, generator=gen) / D ** 0.5, torch.zeros(1000),
                                torch.randn(1000, 384, generator=gen), torch.randn(384, generator=gen))
        model = RelevanceAllocator(cfg, feature_dim=D, query_dim=D, concept=concept).eval().to(device)
        g = torch.Generator(device=device).manual_seed(0)
        feats = torch.randn(B, R, D, device=device)
        crops = torch.rand(B, R, 3, side, side, device=device)
        query = torch.randn(B, T, D, device=device)
        # every cue on: reading, a colour, a position and content words, so every channel runs
        questions = ["What does the red sign in the top left corner say?"] * B
        qb = QuestionBatch.from_cues(parse_questions(questions), torch.randn(B, 384, generator=gen), device=device)
        # OCR evidence as the reader's lines give it (the reading itself is a look, timed in _looks)
        st = SceneText(torch.rand(B, R, generator=gen).to(device) * 20, torch.rand(B, R, generator=gen).to(device),
                       torch.ones(B, dtype=torch.bool, device=device))
        kw = dict(region_pixels=crops, query_embeds=query, question=qb, scene_text=st)
        with torch.no_grad():
            t_all = _median_time(lambda: model(feats, generator=g, **kw), args.repeats, device)
            raw, obs, mask, factor, loc, scale = model.score(feats, **kw)
            post = model.posterior_from_scores(obs, mask, factor, loc, scale)
            t_score = _median_time(lambda: model.score(feats, **kw), args.repeats, device)
            t_post = _median_time(lambda: model.posterior_from_scores(obs, mask, factor, loc, scale).var,
                                  args.repeats, device)
            td = thompson(post, cfg.num_thompson, g)
            table = utility_table(td.probability, post.var, cfg.levels, cost=cfg.cost)
            t_dp = _median_time(lambda: solve(table, cfg.levels, cfg.budget, "dp"), args.repeats, device)
            t_greedy = _median_time(lambda: solve(table, cfg.levels, cfg.budget, "greedy"), args.repeats, device)
        pct = 100 * t_all / t_vit
        results[R] = dict(total_s=t_all, percent=pct, score_s=t_score, posterior_s=t_post, dp_s=t_dp,
                          greedy_s=t_greedy)
        if args.contention is not None:
            def served():
                with _serving_threads():
                    return model(feats, generator=g, **kw)
            with torch.no_grad():
                t_srv = _median_time(served, args.repeats, device)
            results[R]["serving_s"], results[R]["serving_percent"] = t_srv, 100 * t_srv / t_vit
            print(f"R={R:3d}: allocator at the serving thread setting (1 thread, ViT at {torch.get_num_threads()}): "
                  f"{t_srv * 1e3:7.2f} ms = {100 * t_srv / t_vit:5.2f} % of ViT-B/16  goal < 3 %: "
                  f"{'met' if 100 * t_srv / t_vit < 3 else 'NOT met'}")
        print(f"R={R:3d} (budget {cfg.budget}): allocator {t_all * 1e3:7.2f} ms = {pct:5.2f} % of ViT-B/16 "
              f"[scorers {t_score * 1e3:.2f} ms, posterior {t_post * 1e3:.2f} ms, DP {t_dp * 1e3:.2f} ms; "
              f"greedy would be {t_greedy * 1e3:.2f} ms]  goal < 3 %: {'met' if pct < 3 else 'NOT met'}")
    if not args.no_looks:
        results["looks"] = _looks(args, device, pixels.shape[0], t_vit)
    return results


def _looks(args, device, B: int, t_vit: float) -> dict:
    """The pretrained default's own looks before allocating, through its packaged EfficientNet-Lite0:
    the glimpse (one 512-px pass per image), the ConSE channel's crops (16 regions x 192 px per
    image, ``concept_side`` 6) and the OCR reader (the bundled scene at 640 px; the reader runs once
    per image). Looks, not the allocator; timed against the same ViT-B/16."""
    from arrcoc.modeling import ARRCOCVisionConfig, ARRCOCVisionModel
    from arrcoc.modeling.regions import grid_boxes

    try:
        model = ARRCOCVisionModel(ARRCOCVisionConfig()).eval().to(device)
    except ImportError as err:  # the weights package is missing: say so, time nothing
        print(f"looks: skipped ({err})")
        return {}
    pixels = torch.randn(B, 3, 640, 640, device=device)
    boxes = grid_boxes(640, 640, model.config.grid, B, device=device)
    with torch.no_grad():
        t_glimpse = _median_time(lambda: model.glimpse(pixels), args.vit_repeats, device)
        t_crops = _median_time(lambda: model.concept_crops(pixels, boxes), args.vit_repeats, device)
    looks = [("glimpse (512-px pass)", t_glimpse),
             (f"ConSE crops ({boxes.shape[1]} x {model.backbone.input_size(model.config.concept_side)} px)", t_crops)]
    out = {"glimpse_s": t_glimpse, "concept_crops_s": t_crops}
    from arrcoc.backbones.scene_text import SceneTextReader, scene_text_available

    if scene_text_available():  # OCR of a real image (random pixels hold no text): per image, times the batch
        from PIL import Image

        from arrcoc.assets import sample_image_path

        sample = Image.open(sample_image_path()).convert("RGB").resize((640, 640))
        reader = SceneTextReader(threads=torch.get_num_threads(), cache_size=0)
        reader.read(sample)  # builds the engine
        t_ocr = _median_time(lambda: reader.read(sample), max(1, args.vit_repeats // 2), device) * B
        looks.append((f"OCR (PP-OCRv4, {B} x 640 px)", t_ocr))
        out["scene_text_s"] = t_ocr
    else:
        print("look: OCR skipped (rapidocr-onnxruntime is not installed)")
    for name, t in looks:
        print(f"look: {name:28s} {t * 1e3:8.1f} ms = {100 * t / t_vit:5.1f} % of ViT-B/16 (backbone passes, "
              "not the allocator)")
    return out


if __name__ == "__main__":
    main()
