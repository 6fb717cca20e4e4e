"""Seeded scene builder from easy-vqa's images: small shapes in a large cluttered canvas.

easy-vqa (PyPI ``easy-vqa``) ships 5,000 real 64 x 64 images, each one solid shape (circle,
rectangle, triangle) of one of 8 colours on a pale background; its questions give each image's shape
and colour. A scene pastes 3-5 of these shapes, cut out of their background and shrunk to
``item_px``, each inside its own cell of the model's G x G region grid (row-major region index
r = row * G + col, the cell its target region), on a canvas cluttered with thin strokes in the same
8 colours. The strokes make colour alone a poor guide at low resolution (a stroke and a shape blur
into the same blob), and the shapes are a few pixels across in the global thumbnail, so the answer
needs the high-resolution tokens of the right region (``thumbnail_px`` says how small; the
benchmark measures the gap between full detail and the thumbnail alone).

Questions name one item by a property, never by position: "What shape is the blue item?" (the
scene's colours are distinct) and "What colour is the circle?" (only when that shape is unique in
the scene). Answers: 3 shapes + 8 colours (``ANSWERS``).

Splits by source image: easy-vqa's 1,000 test images feed only our test split; its 4,000 train
images are divided, by a seeded permutation, into our train and validation pools. Scene i of a split
depends only on (seed, split, i), so fewer scenes give a prefix of the larger set.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

__all__ = ["EasyVQAScenesConfig", "SourceItem", "SceneItem", "EasyVQAScene", "SHAPES", "COLOURS", "ANSWERS",
           "load_sources", "build_scene", "build_scenes", "to_dataset", "thumbnail_px"]

SHAPES = ("circle", "rectangle", "triangle")
COLOURS = ("red", "green", "blue", "black", "gray", "yellow", "teal", "brown")
ANSWERS = SHAPES + COLOURS
# easy-vqa draws its shapes in these RGB values (read off its images); the strokes use the same ones
_RGB = {"red": (255, 0, 0), "green": (0, 128, 0), "blue": (0, 0, 255), "black": (0, 0, 0),
        "gray": (128, 128, 128), "yellow": (255, 255, 0), "teal": (0, 128, 128), "brown": (165, 42, 42)}
_SHAPE_Q = ("What shape is the {c} item?", "Which shape is {c}?", "What is the {c} shape?")
_COLOUR_Q = ("What colour is the {s}?", "What is the colour of the {s}?", "Which colour does the {s} have?")
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class EasyVQAScenesConfig:
    """How the scenes are built (each default with its reason).

    num_train, num_validation, num_test: scenes per split; 400 / 80 / 120 scenes give ~2,300 / 460 /
        700 questions, what the accuracy-per-token run can encode and train on in its CPU budget.
    canvas: 640-px square: the model's image size, so each of the 4 x 4 cells is 160 px.
    grid: the model's region grid G.
    min_items, max_items: 3-5 shapes leave 11+ of 16 cells to clutter alone.
    item_px: a shape's longest side in canvas pixels (drawn per item from this range): 36-48 px is a
        quarter of a cell, fully visible in a 5 x 5-token (160 px) region encoding, and 4-5 px in a
        64-px global thumbnail (``thumbnail_px``).
    strokes: clutter strokes per scene (thin lines in the shapes' colours, 2-3 px wide): at low
        resolution they look like the shapes' colour blobs, at high resolution they are plainly lines.
    validation_fraction: share of easy-vqa's train images kept for our validation split.
    seed: everything is a function of it.
    """

    num_train: int = 400
    num_validation: int = 80
    num_test: int = 120
    canvas: int = 640
    grid: int = 4
    min_items: int = 3
    max_items: int = 5
    item_px: tuple = (36, 48)
    strokes: int = 40
    validation_fraction: float = 0.15
    seed: int = 0

    def __post_init__(self):
        from arrcoc._checks import check_int
        from arrcoc.bayes._validate import check_real

        for name in ("num_train", "num_validation", "num_test"):
            check_int(getattr(self, name), name, minimum=0)
        g = check_int(self.grid, "grid", minimum=2)
        check_int(self.canvas, "canvas", minimum=32 * g)
        if self.canvas % g:
            raise ValueError(f"canvas must be a multiple of grid={g} (equal cells), got {self.canvas}")
        lo = check_int(self.min_items, "min_items", minimum=1)
        check_int(self.max_items, "max_items", minimum=lo, maximum=min(len(COLOURS), g * g))
        if not (isinstance(self.item_px, tuple) and len(self.item_px) == 2):
            raise TypeError(f"item_px must be a (low, high) tuple of ints, got {self.item_px!r}")
        a = check_int(self.item_px[0], "item_px[0]", minimum=8)
        check_int(self.item_px[1], "item_px[1]", minimum=a, maximum=self.canvas // g - 4)
        check_int(self.strokes, "strokes", minimum=0)
        check_real(self.validation_fraction, "validation_fraction", low=0.0, high=1.0)
        check_int(self.seed, "seed", minimum=0)

    def count(self, split: str) -> int:
        return {"train": self.num_train, "validation": self.num_validation, "test": self.num_test}[_split(split)]


class SourceItem(NamedTuple):
    """One easy-vqa image: its id in easy-vqa's own split, shape, colour and the cut-out shape."""
    source: str          # "train" or "test" (easy-vqa's split)
    image_id: int
    shape: str
    colour: str
    rgba: np.ndarray     # (h, w, 4) uint8: the shape's bounding box, alpha 255 on the shape


class SceneItem(NamedTuple):
    shape: str
    colour: str
    cell: int            # region index r = row * G + col
    box: tuple           # (x0, y0, x1, y1) in canvas pixels
    source_id: int


class EasyVQAScene(NamedTuple):
    image: np.ndarray    # (canvas, canvas, 3) uint8
    items: tuple         # SceneItem per shape
    questions: tuple     # (question, answer, target_regions, kind) with kind "shape" / "colour"
    split: str
    index: int


def _split(split) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def _labels(questions_file: str) -> dict[int, str]:
    """image id -> shape from easy-vqa's questions: a shape answer, a colour question naming the
    shape ("what color is the circle?"), or a "yes" to a plain presence question ("is there a circle?")."""
    with open(questions_file) as f:
        rows = json.load(f)
    shape = {}
    for text, answer, image_id in rows:
        named = [s for s in SHAPES if s in text]
        if answer in SHAPES:
            shape[image_id] = answer
        elif named and (answer in COLOURS or (answer == "yes" and " not " not in text and " no " not in text)):
            shape[image_id] = named[0]
    return shape


def _colour(rgba: np.ndarray) -> str:
    """The palette colour nearest to the shape's median pixel (easy-vqa draws each shape in one colour)."""
    px = np.median(rgba[..., :3][rgba[..., 3] > 0].astype(np.float32), axis=0)  # (3,)
    return min(COLOURS, key=lambda c: float(((px - np.array(_RGB[c])) ** 2).sum()))


def _cut_out(path: str) -> np.ndarray | None:
    """The shape's bounding box as RGBA: pixels far from the background (the corner colour) are the shape."""
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)  # (64, 64, 3)
    bg = np.median(np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]), axis=0)
    mask = np.abs(rgb - bg).sum(-1) > 60  # (64, 64)
    if mask.sum() < 4:
        return None
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    out = np.zeros((y1 - y0, x1 - x0, 4), dtype=np.uint8)
    out[..., :3] = rgb[y0:y1, x0:x1].clip(0, 255)
    out[..., 3] = mask[y0:y1, x0:x1] * 255
    return out


@lru_cache(maxsize=2)
def load_sources(source: str) -> tuple[SourceItem, ...]:
    """Every labelled image of easy-vqa's ``source`` split ("train" or "test"), in id order."""
    if source not in ("train", "test"):
        raise ValueError(f"source must be 'train' or 'test' (easy-vqa's splits), got {source!r}")
    try:
        import easy_vqa
    except ImportError as e:  # pragma: no cover - the eval extra installs it
        raise ImportError("the easy-vqa scenes need the `easy-vqa` package: pip install 'arrcoc[eval]'") from e
    base = os.path.join(os.path.dirname(easy_vqa.__file__), "data", source)
    labels = _labels(os.path.join(base, "questions.json"))
    items = []
    for i in sorted(labels):
        cut = _cut_out(os.path.join(base, "images", f"{i}.png"))
        if cut is not None:
            items.append(SourceItem(source, i, labels[i], _colour(cut), cut))
    return tuple(items)


def _pool(config: EasyVQAScenesConfig, split: str) -> list[SourceItem]:
    """The source images a split may use: easy-vqa test -> test; easy-vqa train -> train / validation."""
    if split == "test":
        return list(load_sources("test"))
    items = load_sources("train")
    perm = np.random.default_rng([config.seed, 7919]).permutation(len(items))
    n_val = int(round(config.validation_fraction * len(items)))
    keep = perm[:n_val] if split == "validation" else perm[n_val:]
    return [items[j] for j in sorted(keep)]


def _paste(canvas: np.ndarray, rgba: np.ndarray, x0: int, y0: int, side: int) -> tuple:
    from PIL import Image

    h, w = rgba.shape[:2]
    scale = side / max(h, w)
    nw, nh = max(2, round(w * scale)), max(2, round(h * scale))
    im = np.asarray(Image.fromarray(rgba, "RGBA").resize((nw, nh), Image.LANCZOS)).astype(np.float32)
    a = im[..., 3:] / 255.0
    region = canvas[y0:y0 + nh, x0:x0 + nw].astype(np.float32)
    canvas[y0:y0 + nh, x0:x0 + nw] = (a * im[..., :3] + (1 - a) * region).round().astype(np.uint8)
    return (x0, y0, x0 + nw, y0 + nh)


def _clutter(rng: np.random.Generator, config: EasyVQAScenesConfig) -> np.ndarray:
    """Pale background with low-contrast noise, then thin strokes in the shapes' colours."""
    from PIL import Image, ImageDraw

    c = config.canvas
    base = rng.integers(225, 256, size=3)
    noise = rng.normal(0.0, 6.0, size=(c // 8, c // 8, 1))
    noise = np.kron(noise, np.ones((8, 8, 1)))
    img = Image.fromarray((base[None, None, :] + noise).clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(config.strokes):
        colour = _RGB[COLOURS[rng.integers(len(COLOURS))]]
        x, y = rng.uniform(0, c, size=2)
        ang, length = rng.uniform(0, math.pi), rng.uniform(20, 70)
        pts = [(x, y)]
        for _ in range(2):  # a bent polyline: never a closed filled shape
            ang += rng.uniform(-1.0, 1.0)
            x, y = x + length / 2 * math.cos(ang), y + length / 2 * math.sin(ang)
            pts.append((x, y))
        draw.line(pts, fill=colour, width=int(rng.integers(2, 4)))
    return np.array(img)


def build_scene(config: EasyVQAScenesConfig, split: str, index: int) -> EasyVQAScene:
    """Scene ``index`` of ``split``; a function of (config.seed, split, index) and the config only."""
    from arrcoc._checks import check_int

    split = _split(split)
    check_int(index, "index", minimum=0)
    pool = _pool(config, split)
    rng = np.random.default_rng([config.seed, SPLITS.index(split), index])
    g, cell = config.grid, config.canvas // config.grid
    n = int(rng.integers(config.min_items, config.max_items + 1))
    colours = [COLOURS[j] for j in rng.permutation(len(COLOURS))[:n]]
    by_colour = {c: [s for s in pool if s.colour == c] for c in colours}
    picks = [by_colour[c][rng.integers(len(by_colour[c]))] for c in colours]
    cells = rng.permutation(g * g)[:n]
    image = _clutter(rng, config)
    items = []
    for src, r in zip(picks, cells.tolist()):
        side = int(rng.integers(config.item_px[0], config.item_px[1] + 1))
        row, col = divmod(r, g)
        x0 = col * cell + int(rng.integers(2, cell - side - 1))
        y0 = row * cell + int(rng.integers(2, cell - side - 1))
        box = _paste(image, src.rgba, x0, y0, side)
        items.append(SceneItem(src.shape, src.colour, r, box, src.image_id))
    shapes = [it.shape for it in items]
    questions = []
    for it in items:
        questions.append((_SHAPE_Q[rng.integers(len(_SHAPE_Q))].format(c=it.colour), it.shape, [it.cell], "shape"))
        if shapes.count(it.shape) == 1:
            questions.append((_COLOUR_Q[rng.integers(len(_COLOUR_Q))].format(s=it.shape), it.colour, [it.cell], "colour"))
    return EasyVQAScene(image, tuple(items), tuple(questions), split, index)


def build_scenes(config: EasyVQAScenesConfig | None = None, splits=SPLITS) -> list[EasyVQAScene]:
    """Every scene of the given splits (``config.count(split)`` each)."""
    config = EasyVQAScenesConfig() if config is None else config
    if not isinstance(config, EasyVQAScenesConfig):
        raise TypeError(f"config must be an EasyVQAScenesConfig, got {type(config).__name__}")
    return [build_scene(config, s, i) for s in splits for i in range(config.count(_split(s)))]


def to_dataset(scenes):
    """Scenes -> ``datasets.Dataset`` with one row per question: image (PIL), question, answer,
    target_regions (region indices on the G x G grid), split, plus scene_id ("split/index") and kind."""
    import datasets
    from PIL import Image

    rows = {k: [] for k in ("image", "question", "answer", "target_regions", "split", "scene_id", "kind")}
    for sc in scenes:
        pil = Image.fromarray(sc.image, "RGB")
        for q, a, t, kind in sc.questions:
            for k, v in zip(rows, (pil, q, a, list(t), sc.split, f"{sc.split}/{sc.index}", kind)):
                rows[k].append(v)
    features = datasets.Features({
        "image": datasets.Image(), "question": datasets.Value("string"), "answer": datasets.Value("string"),
        "target_regions": datasets.Sequence(datasets.Value("int64")), "split": datasets.Value("string"),
        "scene_id": datasets.Value("string"), "kind": datasets.Value("string")})
    return datasets.Dataset.from_dict(rows, features=features)


def thumbnail_px(config: EasyVQAScenesConfig, thumbnail_side: int) -> tuple[float, float]:
    """A shape's longest side (min, max over ``item_px``) in pixels of a ``thumbnail_side``-px view
    of the whole canvas (64 for the benchmark's 2 x 2-token global view)."""
    s = thumbnail_side / config.canvas
    return config.item_px[0] * s, config.item_px[1] * s
