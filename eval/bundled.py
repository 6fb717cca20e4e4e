"""Scripted check of the bundled sample scene (``arrcoc/assets/sample_scene.png``).

For a question about each of five objects -- the blue sign, the stop sign, the house, the bar chart
and the line of small print at the bottom -- does the model, in deterministic mode, give the
region(s) holding that object the highest level (at most ``max_ties`` regions sharing it)?

An object's regions are the cells of the model's G x G grid over the 640 x 480 image that hold at
least ``min_fraction`` of its box (``sources.SAMPLE_BOXES``). On the 4 x 4 grid each of the five
objects then has exactly two regions (blue sign 8, 9; stop sign 11, 15; house 6, 7; chart 2, 3;
text line 12, 13; the tests check this).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .metrics import hit_at_top, target_mask, top_level_mask
from .scenes import overlap_areas
from .sources import SAMPLE_BOXES, sample_scene

__all__ = ["BUNDLED_QUESTIONS", "sample_regions", "BundledRow", "BundledResult", "bundled_check"]

BUNDLED_QUESTIONS = (
    ("blue_sign", "What does the blue sign say?"),
    ("stop_sign", "What does the stop sign say?"),
    ("house", "What colour is the house?"),
    ("bar_chart", "What does the bar chart show?"),
    ("text_line", "What does the text line at the bottom say?"),
)


def sample_regions(key: str, grid: int = 4, min_fraction: float = 0.2) -> tuple:
    """Regions (row-major) of the sample scene holding at least min_fraction of the object's box
    (always at least the cell holding most of it)."""
    if key not in SAMPLE_BOXES:
        raise ValueError(f"key must be one of {sorted(SAMPLE_BOXES)}, got {key!r}")
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction!r}")
    x0, y0, x1, y1 = box = SAMPLE_BOXES[key]
    width, height = sample_scene().size
    areas = overlap_areas(box, width, height, grid)
    total = (x1 - x0) * (y1 - y0)
    best = max(range(len(areas)), key=areas.__getitem__)
    return tuple(r for r, a in enumerate(areas) if a >= min_fraction * total or r == best)


@dataclass
class BundledRow:
    object: str
    question: str
    budget: int
    regions: list            # the object's regions
    allocation: list         # (R,) tokens per region
    top_regions: list        # regions at the highest level
    top_level: int
    target_tokens: int
    hit: bool


@dataclass
class BundledResult:
    rows: list               # BundledRow

    def __str__(self) -> str:
        lines = ["bundled sample scene, deterministic mode: do the object's regions get the top level?",
                 f"  {'object':<11}{'budget':>7}  {'regions':<9}{'top level: regions':<26}{'tokens there':>13}  hit"]
        for r in self.rows:
            top = (f"{r.top_level}: {r.top_regions}" if len(r.top_regions) <= 4 else
                   f"{r.top_level}: {len(r.top_regions)} regions") if r.top_level else "nothing allocated"
            lines.append(f"  {r.object:<11}{r.budget:>7}  {str(r.regions):<9}{top:<26}{r.target_tokens:>13}  "
                         f"{'yes' if r.hit else 'no'}")
        n = sum(r.hit for r in self.rows)
        lines.append(f"  {n} of {len(self.rows)} hit")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows], "hits": sum(r.hit for r in self.rows)}

    def hits(self, budget: int | None = None) -> dict:
        """object -> hit, for one budget (or every row when budget is None)."""
        return {r.object: r.hit for r in self.rows if budget is None or r.budget == budget}


def bundled_check(model, processor, budgets=(640, 1024), max_ties: int = 2, full_forward: bool = True) -> BundledResult:
    """Run the five bundled-scene questions at each budget in deterministic mode (the whole forward
    pass unless ``full_forward=False``: then it stops once the allocation is known, same numbers)."""
    from .runner import AllocationProbe

    grid = model.config.grid
    pixels = processor(sample_scene())["pixel_values"]  # (1, 3, S, S)
    rows = []
    with AllocationProbe(model, full_forward) as probe:
        for budget in budgets:
            for key, question in BUNDLED_QUESTIONS:
                regions = sample_regions(key, grid)
                alloc_t, _, _ = probe(pixels, [question], int(budget), 0, True)
                alloc = torch.tensor([alloc_t], dtype=torch.long)  # (1, R)
                tg = target_mask([regions], alloc.shape[1])  # (1, R)
                top = top_level_mask(alloc)[0]
                rows.append(BundledRow(key, question, int(budget), list(regions), alloc[0].tolist(),
                                       top.nonzero().flatten().tolist(), int(alloc.max()),
                                       int((alloc * tg).sum()), bool(hit_at_top(alloc, tg, max_ties)[0])))
    return BundledResult(rows)
