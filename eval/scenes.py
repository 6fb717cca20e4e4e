"""Seeded builder of check-set scenes: real photographs laid out so each object sits in known cells.

A scene is a square canvas cut into the model's G x G region grid (``arrcoc.modeling.regions``,
row-major region index r = row * G + col). A few objects (``sources.OBJECTS``) take slots of one
cell, two cells side by side (wide) or two stacked (tall); every other cell holds clutter: random
patches of textures, micrographs, astronomy images and of object photographs the scene asks
nothing about, greyscale ones tinted at random, so that bottom-up salience alone does not point at
the asked-about object. The first object always covers a corner cell, for the spatial subset.

Each object gets one question that names it by what it is ("What colour is the cat?"), never by
where it is; its target regions are the cells the pasted object covers by at least
``min_cell_coverage``. The spatial subset ("What is in the top left corner?") targets the corner
cell and is reported separately. Everything is a function of ``CheckSetConfig.seed``; scene i
depends only on (seed, i), so a smaller ``num_scenes`` gives a prefix of the larger set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import torch

from .sources import (FILLERS, OBJECTS, SIGN_COLOURS, SIGN_WORDS, SKIMAGE_OBJECT_FILES, ObjectSpec,
                      object_crop, skimage_photo)

__all__ = ["CheckSetConfig", "PlacedObject", "Question", "Scene", "build_scene", "build_checkset",
           "region_coverage", "overlap_areas", "CORNERS"]

CORNERS = {"top left": (0, 0), "top right": (0, -1), "bottom left": (-1, 0), "bottom right": (-1, -1)}
_SPATIAL_TEMPLATES = ("What is in the {corner} corner of the picture?", "What can be seen in the {corner} corner?",
                      "What is shown in the {corner} corner of the image?")
_SHAPES = ((1, 1), (1, 2), (2, 1))


@dataclass(frozen=True)
class CheckSetConfig:
    """How the check set is built (each default with its reason).

    num_scenes: 14 scenes give about 50 object questions (3-4 per scene) plus 14 spatial ones: the
        40-60 questions that keep ``python -m eval.checkset`` to a few minutes on 2 CPU cores.
    min_objects, max_objects: 3-4 objects leave 8+ of the 16 cells to clutter, so the target is a
        small part of the image, and give each question 2-3 other questions of the same scene to
        compare against (question sensitivity).
    canvas: 512-px square: the processor resizes to a square, so a square canvas keeps every
        photograph's aspect, and 512 / 4 = 128-px cells map exactly onto the model's 160-px cells.
    grid: the model's default 4 x 4 region grid.
    seed: everything (object choice, layout, questions, clutter) is a function of it.
    scale_range: the object is resized to fit its slot, then shrunk by a factor drawn from this
        range and shifted at random inside the slot (so it is not always edge to edge).
    min_cell_coverage: a cell is a target region when the object covers at least this fraction
        of it; with the scale range above every cell of a slot qualifies (checked by the tests).
    photo_clutter: probability that a clutter cell shows a patch of an object photograph the scene
        asks nothing about (else a texture / micrograph / astronomy patch).
    spatial: add the spatial subset (one corner question per scene).
    """

    num_scenes: int = 14
    min_objects: int = 3
    max_objects: int = 4
    canvas: int = 512
    grid: int = 4
    seed: int = 0
    scale_range: tuple = (0.9, 1.0)
    min_cell_coverage: float = 0.25
    photo_clutter: float = 0.3
    spatial: bool = True

    def __post_init__(self):
        from arrcoc.bayes._validate import check_int, check_real

        check_int(self.num_scenes, "num_scenes", minimum=1)
        check_int(self.grid, "grid", minimum=2)
        lo = check_int(self.min_objects, "min_objects", minimum=2)
        check_int(self.max_objects, "max_objects", minimum=lo, maximum=min(len(OBJECTS), self.grid ** 2 // 2))
        check_int(self.canvas, "canvas", minimum=16 * self.grid)
        if self.canvas % self.grid:
            raise ValueError(f"canvas must be a multiple of grid={self.grid} (equal cells), got {self.canvas}")
        check_int(self.seed, "seed", minimum=0)
        if not (isinstance(self.scale_range, tuple) and len(self.scale_range) == 2):
            raise TypeError(f"scale_range must be a (low, high) tuple, got {self.scale_range!r}")
        a = check_real(self.scale_range[0], "scale_range[0]", low=0.5, high=1.0)
        check_real(self.scale_range[1], "scale_range[1]", low=a, high=1.0)
        check_real(self.min_cell_coverage, "min_cell_coverage", low=0.0, high=1.0, low_open=True)
        check_real(self.photo_clutter, "photo_clutter", low=0.0, high=1.0)
        if not isinstance(self.spatial, bool):
            raise TypeError(f"spatial must be a bool, got {type(self.spatial).__name__}")


class PlacedObject(NamedTuple):
    key: str            # ObjectSpec.key
    name: str           # how questions name it ("cat", "green sign")
    shape: tuple        # slot shape (rows, cols)
    slot_cells: tuple   # region indices of the slot
    box: tuple          # (x0, y0, x1, y1) canvas pixels of the pasted object (exclusive ends)
    regions: tuple      # target regions: cells covered by at least min_cell_coverage
    coverage: tuple     # fraction of each target region the object covers
    words: str | None   # text of a rendered sign, else None


class Question(NamedTuple):
    text: str
    object_key: str
    targets: tuple      # region indices the answer is in
    kind: str           # "object" (names the object) or "spatial" (names a corner)
    reading: bool       # the question asks to read text


@dataclass
class Scene:
    index: int
    image: object                 # RGB PIL image, canvas x canvas
    grid: int
    objects: tuple                # PlacedObject, in placement order
    questions: tuple              # Question: one per object, then the spatial one (if any)
    clutter: tuple = field(default=())  # source of each clutter cell, region order ("" under objects)

    @property
    def num_regions(self) -> int:
        return self.grid * self.grid


def _uniform(g: torch.Generator, a: float, b: float) -> float:
    return a + (b - a) * float(torch.rand((), generator=g, dtype=torch.float64))


def _randint(g: torch.Generator, n: int) -> int:
    return int(torch.randint(n, (), generator=g))


def _edges(size: int, grid: int) -> list[int]:
    # the cell edges of arrcoc.modeling.regions.grid_edges (same formula; a test checks they agree),
    # computed here so that building scenes does not import transformers
    return [round(i * size / grid) for i in range(grid + 1)]


def overlap_areas(box, width: int, height: int, grid: int) -> list[int]:
    """Pixels of the box (x0, y0, x1, y1) (exclusive ends) inside each grid cell, region order."""
    ex, ey = _edges(width, grid), _edges(height, grid)
    x0, y0, x1, y1 = box
    return [max(0, min(x1, ex[c + 1]) - max(x0, ex[c])) * max(0, min(y1, ey[r + 1]) - max(y0, ey[r]))
            for r in range(grid) for c in range(grid)]


def region_coverage(box, size: int, grid: int) -> list[float]:
    """Fraction of each cell of a size x size canvas (region order) that the pixel box covers."""
    e = _edges(size, grid)
    areas = [(e[c + 1] - e[c]) * (e[r + 1] - e[r]) for r in range(grid) for c in range(grid)]
    return [a / cell for a, cell in zip(overlap_areas(box, size, size, grid), areas)]


@lru_cache(maxsize=None)
def _is_grey(name: str) -> bool:
    import numpy as np

    a = np.asarray(skimage_photo(name))  # (H, W, 3)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def _clutter_patch(g: torch.Generator, excluded: set, size: int, photo_prob: float):
    """A random square patch of a clutter source resized to size x size: an object photograph not
    in ``excluded`` with probability photo_prob, else a FILLERS image; greyscale patches are tinted
    half the time. Returns (RGB PIL image, source name)."""
    from PIL import Image

    photos = [f"skimage:{f}" for f in SKIMAGE_OBJECT_FILES if f not in excluded]
    pool = photos if (photos and _uniform(g, 0, 1) < photo_prob) else list(FILLERS)
    src = pool[_randint(g, len(pool))]
    name = src.partition(":")[2]
    img = skimage_photo(name)
    w, h = img.size
    side = max(8, int(_uniform(g, 0.3, 0.8) * min(w, h)))
    x0, y0 = _randint(g, w - side + 1), _randint(g, h - side + 1)
    patch = img.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.Resampling.BICUBIC)
    if _is_grey(name) and _uniform(g, 0, 1) < 0.5:
        tint = tuple(int(_uniform(g, 60, 255)) for _ in range(3))
        grey = patch.convert("L")
        patch = Image.merge("RGB", [grey.point(lambda v, t=t: v * t // 255) for t in tint])
    return patch, src


def _slots(free: list[list[bool]], shape: tuple) -> list[tuple]:
    G = len(free)
    rows, cols = shape
    return [(r, c) for r in range(G - rows + 1) for c in range(G - cols + 1)
            if all(free[r + i][c + j] for i in range(rows) for j in range(cols))]


def _corner_cells(G: int) -> dict:
    return {name: (rc[0] % G) * G + (rc[1] % G) for name, rc in CORNERS.items()}


def build_scene(config: CheckSetConfig, index: int) -> Scene:
    """Scene ``index`` of the check set defined by ``config`` (a function of (seed, index) only)."""
    from PIL import Image

    from arrcoc.bayes._validate import check_int

    check_int(index, "index", minimum=0)
    G, S = config.grid, config.canvas
    e = _edges(S, G)
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + index)
    n_obj = config.min_objects + _randint(g, config.max_objects - config.min_objects + 1)
    order = torch.randperm(len(OBJECTS), generator=g).tolist()
    free = [[True] * G for _ in range(G)]
    corners = _corner_cells(G)
    placed: list[tuple[ObjectSpec, tuple, tuple]] = []
    corner = list(corners.values())[_randint(g, len(corners))]
    for k in order:
        if len(placed) == n_obj:
            break
        spec = OBJECTS[k]
        shapes = [s for s in _SHAPES if s in spec.crops]
        shapes = [shapes[i] for i in torch.randperm(len(shapes), generator=g).tolist()]
        for shape in shapes:
            slots = _slots(free, shape)
            if not placed:  # the first object covers a corner cell drawn at random (spatial subset)
                slots = [(r, c) for r, c in slots if corner in
                         [(r + i) * G + (c + j) for i in range(shape[0]) for j in range(shape[1])]]
            if slots:
                r, c = slots[_randint(g, len(slots))]
                for i in range(shape[0]):
                    for j in range(shape[1]):
                        free[r + i][c + j] = False
                placed.append((spec, shape, (r, c)))
                break

    canvas = Image.new("RGB", (S, S))
    excluded = {spec.source.partition(":")[2] for spec, _, _ in placed}
    clutter = []
    for r in range(G):
        for c in range(G):
            patch, src = _clutter_patch(g, excluded, e[c + 1] - e[c], config.photo_clutter)
            canvas.paste(patch, (e[c], e[r]))
            clutter.append(src if free[r][c] else "")

    objects, questions = [], []
    for spec, shape, (r, c) in placed:
        colour = words = None
        name = spec.key.replace("_", " ")
        if spec.source == "sign":
            colours = sorted(SIGN_COLOURS)
            colour = colours[_randint(g, len(colours))]
            words = SIGN_WORDS[_randint(g, len(SIGN_WORDS))]
            name = f"{colour} sign"
        crop = object_crop(spec, shape, colour, words)
        x0, y0, x1, y1 = e[c], e[r], e[c + shape[1]], e[r + shape[0]]
        fit = min((x1 - x0) / crop.width, (y1 - y0) / crop.height) * _uniform(g, *config.scale_range)
        w, h = max(1, round(crop.width * fit)), max(1, round(crop.height * fit))
        ox = x0 + _randint(g, (x1 - x0) - w + 1)
        oy = y0 + _randint(g, (y1 - y0) - h + 1)
        canvas.paste(crop.resize((w, h), Image.Resampling.BICUBIC), (ox, oy))
        box = (ox, oy, ox + w, oy + h)
        cov = region_coverage(box, S, G)
        regions = tuple(i for i, v in enumerate(cov) if v >= config.min_cell_coverage)
        slot = tuple((r + i) * G + (c + j) for i in range(shape[0]) for j in range(shape[1]))
        objects.append(PlacedObject(spec.key, name, shape, slot, box, regions,
                                    tuple(round(cov[i], 4) for i in regions), words))
        text = spec.questions[_randint(g, len(spec.questions))].format(colour=colour)
        questions.append(Question(text, spec.key, regions, "object", spec.reading))
    if config.spatial:
        first = objects[0]
        corner = next(n for n, cell in corners.items() if cell in first.slot_cells)
        template = _SPATIAL_TEMPLATES[_randint(g, len(_SPATIAL_TEMPLATES))]
        questions.append(Question(template.format(corner=corner), first.key, (corners[corner],), "spatial", False))
    return Scene(index, canvas, G, tuple(objects), tuple(questions), tuple(clutter))


def build_checkset(config: CheckSetConfig | None = None) -> list[Scene]:
    """All ``config.num_scenes`` scenes (default config: see ``CheckSetConfig``)."""
    config = CheckSetConfig() if config is None else config
    if not isinstance(config, CheckSetConfig):
        raise TypeError(f"config must be a CheckSetConfig, got {type(config).__name__}")
    return [build_scene(config, i) for i in range(config.num_scenes)]
