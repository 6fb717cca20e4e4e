"""Pictures of one ARR-COC allocation that a person can read in one glance.

- ``AllocationView``: the numbers of one allocation on one image (boxes in the image's own pixels,
  tokens, relevance mean / total variance / epistemic variance per region, levels, budget); its
  ``__str__`` is the per-region table the CLI prints.
- ``overlay_figure(view)``: the image with every region coloured by its token level (legend) and
  its tokens written on it | the relevance-mean heatmap | the epistemic-sd heatmap (both over the
  region grid, with colour bars); the question is the title, total tokens versus budget and versus
  full detail (every region at the top level + the global view) underneath.
- ``compare_figure(view_a, view_b)``: two questions on the same image side by side, heatmaps on
  shared colour scales so that the two can be compared cell by cell.
- ``panel_images(view)``: the three panels as separate PIL images (the Gradio demo lays them out).

Only matplotlib's object API is used (``Figure`` + the Agg canvas, never ``pyplot``): no global
state, no display needed, safe in the demo's worker threads.
"""
from __future__ import annotations

import io
import math
import os
import numbers
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["AllocationView", "level_colours", "level_handles", "overlay_figure", "compare_figure", "panel_images",
           "figure_to_image", "save_figure", "draw_allocation", "draw_heatmap"]

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), in level order;
# a skipped region (0 tokens) is dimmed dark grey so that the eye goes to the regions that got tokens.
_SKIPPED = "#303030"
_PALETTE = ("#56B4E9", "#009E73", "#E69F00", "#D55E00", "#CC79A7", "#0072B2", "#F0E442")


def _check_levels(levels) -> list[int]:
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
        raise TypeError(f"levels must be a sequence of token levels (ints >= 0), got {type(levels).__name__}")
    vals = list(levels)
    if not vals or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in vals):
        raise ValueError(f"levels must be a non-empty sequence of ints >= 0, got {levels!r}")
    if len(set(vals)) != len(vals):
        raise ValueError(f"levels must be distinct, got {levels!r}")
    return sorted(int(v) for v in vals)


def _check_view(view, name: str = "view") -> "AllocationView":
    if not isinstance(view, AllocationView):
        raise TypeError(f"{name} must be an AllocationView, got {type(view).__name__}")
    return view


def level_colours(levels: Sequence[int]) -> dict[int, str]:
    """Colour of every token level: 0 dark grey, then the palette in increasing level order."""
    levels = _check_levels(levels)
    out, k = {}, 0
    for lv in levels:
        if lv == 0:
            out[lv] = _SKIPPED
        else:
            out[lv] = _PALETTE[k % len(_PALETTE)]
            k += 1
    return out


def _vec(name: str, x, n: int | None = None) -> Tensor:
    try:
        t = torch.as_tensor(x).detach().to("cpu")
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a tensor or sequence of numbers, got {type(x).__name__}") from None
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be real numbers, got dtype {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be one value per region (R,), got shape {tuple(t.shape)}")
    if n is not None and t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} values but there are {n} regions")
    return t


@dataclass
class AllocationView:
    """One allocation on one image, everything the figures and the table show.

    image: the RGB PIL image as given (not resized). boxes (R, 4): (x0, y0, x1, y1) in that image's
    pixels, row-major over the grid x grid regions. allocation (R,): tokens per region, each one of
    ``levels``. mean, var, epistemic_var (R,): posterior relevance mean, total and epistemic variance.
    budget: total tokens allowed (global view included). latency_s: seconds the allocation took.
    """

    image: object
    question: str
    boxes: Tensor
    allocation: Tensor
    mean: Tensor
    var: Tensor
    epistemic_var: Tensor
    grid: int
    levels: tuple
    global_tokens: int
    budget: int
    policy: str = "ARR-COC Thompson"
    seed: int | None = None
    latency_s: float | None = None
    notes: list = field(default_factory=list)

    def __post_init__(self):
        r = self.grid * self.grid
        self.boxes = torch.as_tensor(self.boxes).detach().to("cpu", torch.float32)
        if self.boxes.shape != (r, 4):
            raise ValueError(f"boxes must have shape ({r}, 4) for a {self.grid}x{self.grid} grid, "
                             f"got {tuple(self.boxes.shape)}")
        self.allocation = _vec("allocation", self.allocation, r).long()
        self.mean = _vec("mean", self.mean, r).double()
        self.var = _vec("var", self.var, r).double()
        self.epistemic_var = _vec("epistemic_var", self.epistemic_var, r).double()
        self.levels = tuple(_check_levels(self.levels))
        bad = sorted(set(self.allocation.tolist()) - set(self.levels))
        if bad:
            raise ValueError(f"allocation holds {bad}, which are not token levels {self.levels}")
        for name in ("mean", "var", "epistemic_var"):
            if not torch.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name} contains NaN or inf")
        if not torch.isfinite(self.boxes).all():
            raise ValueError("boxes contain NaN or inf")

    # ------------------------------------------------------------------ numbers
    @property
    def num_regions(self) -> int:
        return self.grid * self.grid

    @property
    def region_tokens(self) -> int:
        return int(self.allocation.sum())

    @property
    def total_tokens(self) -> int:
        """Visual tokens of the image: the global view plus every region's tokens."""
        return self.global_tokens + self.region_tokens

    @property
    def full_detail(self) -> int:
        """Tokens with every region at the top level, plus the global view."""
        return self.global_tokens + self.num_regions * max(self.levels)

    @property
    def sd(self) -> Tensor:
        return self.var.clamp_min(0).sqrt()

    @property
    def epistemic_sd(self) -> Tensor:
        return self.epistemic_var.clamp_min(0).sqrt()

    def rows(self) -> list[dict]:
        """One dict per region: region, row, col, box (ints), tokens, mean, sd, epistemic sd."""
        out = []
        for r in range(self.num_regions):
            out.append({"region": r, "row": r // self.grid, "col": r % self.grid,
                        "box": tuple(int(round(float(v))) for v in self.boxes[r]),
                        "tokens": int(self.allocation[r]), "mean": float(self.mean[r]),
                        "sd": float(self.sd[r]), "epistemic_sd": float(self.epistemic_sd[r])})
        return out

    def summary(self) -> str:
        """'total T visual tokens (G global + X regions) / budget B (p %) / full detail F (q %)'."""
        return (f"total {self.total_tokens} visual tokens ({self.global_tokens} global + {self.region_tokens} "
                f"regions) / budget {self.budget} ({100 * self.total_tokens / self.budget:.0f} %) / "
                f"full detail {self.full_detail} ({100 * self.total_tokens / self.full_detail:.1f} %)")

    def __str__(self) -> str:
        lines = [f"{'region':>6}  {'box (x0,y0,x1,y1)':<24} {'rel.mean':>9} {'rel.sd':>7} {'epi.sd':>7} {'tokens':>6}"]
        for row in self.rows():
            box = "({},{},{},{})".format(*row["box"])
            lines.append(f"{row['region']:>6}  {box:<24} {row['mean']:>9.3f} {row['sd']:>7.3f} "
                         f"{row['epistemic_sd']:>7.3f} {row['tokens']:>6}")
        lines.append(self.summary())
        return "\n".join(lines)


# ---------------------------------------------------------------------- drawing on axes
def _title(question: str, width: int = 70) -> str:
    return "\n".join(textwrap.wrap(f"Q: {question}", width)[:3])


def draw_allocation(ax, view: AllocationView, legend: bool = True, fontsize: float = 11, title: bool = True):
    """The image with each region coloured by its level and its token count written in it."""
    from matplotlib.patches import Rectangle

    _check_view(view)
    colours = level_colours(view.levels)
    ax.imshow(view.image)
    for row in view.rows():
        x0, y0, x1, y1 = row["box"]
        t = row["tokens"]
        c = colours[t]
        if t == 0:  # skipped: dimmed, thin outline
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=c, alpha=0.55, edgecolor="none"))
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="#808080", lw=0.8))
        else:
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=c, alpha=0.22, edgecolor="none"))
            ax.add_patch(Rectangle((x0 + 1.5, y0 + 1.5), x1 - x0 - 3, y1 - y0 - 3, fill=False, edgecolor=c, lw=3))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, str(t), ha="center", va="center", fontsize=fontsize,
                fontweight="bold", color="white",
                bbox=dict(boxstyle="round,pad=0.25", facecolor=c, edgecolor="white", lw=0.8, alpha=0.95))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title("tokens per region", fontsize=fontsize)
    if legend:
        ax.legend(handles=level_handles(view.levels), title="tokens per region", loc="upper center",
                  bbox_to_anchor=(0.5, -0.01), ncol=len(view.levels), fontsize=fontsize - 2,
                  title_fontsize=fontsize - 2, frameon=False, handlelength=1.2, columnspacing=1.0)


def level_handles(levels: Sequence[int]) -> list:
    """Legend patches of the token levels: '0 (skipped)', '64', ..."""
    from matplotlib.patches import Patch

    colours = level_colours(levels)
    return [Patch(facecolor=colours[lv], edgecolor="black", lw=0.5, label=f"{lv} (skipped)" if lv == 0 else str(lv))
            for lv in sorted(int(v) for v in levels)]


def _decimals(values: Tensor) -> int:
    """Decimals that show two significant digits of the largest |value| (at least 2, at most 6)."""
    m = float(values.abs().max())
    if m == 0 or m >= 0.1:
        return 2
    return min(6, 1 - math.floor(math.log10(m)))


def draw_heatmap(ax, view: AllocationView, values: Tensor, title: str | None, cmap: str, vmin: float, vmax: float,
                 label: str, fontsize: float = 11):
    """values (R,) over the region grid, laid over the image's own extent, each cell annotated."""
    _check_view(view)
    values = _vec("values", values, view.num_regions).double()
    if not torch.isfinite(values).all():
        raise ValueError("values contain NaN or inf")
    w, h = view.image.size
    g = view.grid
    grid = values.reshape(g, g).numpy()  # (G, G) row-major like the regions
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    im = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, extent=(0, w, h, 0), interpolation="nearest")
    norm = im.norm
    dec = _decimals(values)
    for row in view.rows():
        x0, y0, x1, y1 = row["box"]
        v = float(values[row["region"]])
        dark = norm(v) < 0.55
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"{v:.{dec}f}", ha="center", va="center", fontsize=fontsize - 1,
                color="white" if dark else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)
    cax = ax.inset_axes([1.03, 0.0, 0.045, 1.0])  # colour bar exactly as tall as the heatmap
    cb = ax.figure.colorbar(im, cax=cax)
    cb.set_label(label, fontsize=fontsize - 2)
    cb.ax.tick_params(labelsize=fontsize - 3)
    return im


def _scales(views: Sequence[AllocationView]) -> tuple[tuple[float, float], float]:
    lo = min(float(v.mean.min()) for v in views)
    hi = max(float(v.mean.max()) for v in views)
    sd_hi = max(float(v.epistemic_sd.max()) for v in views)
    return (lo, hi), max(sd_hi, 1e-6)


_MEAN_TITLE, _MEAN_LABEL = "relevance posterior mean", "mean of the relevance logit"
_SD_TITLE, _SD_LABEL = "epistemic uncertainty", "epistemic sd of the relevance logit"


def _footer(view: AllocationView, latency: bool = True) -> str:
    extra = f", seed {view.seed}" if view.seed is not None and view.policy in ("ARR-COC Thompson", "random") else ""
    lat = f", {view.latency_s * 1000:.0f} ms" if latency and view.latency_s is not None else ""
    return f"{view.summary()}\npolicy: {view.policy}{extra}{lat}"


def _figure(width: float, height: float, dpi: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def overlay_figure(view: AllocationView, dpi: int = 100):
    """Allocation overlay | relevance-mean heatmap | epistemic-sd heatmap, question as title."""
    _check_view(view)
    w, h = view.image.size
    aspect = h / w
    fig = _figure(16.0, 4.2 * aspect / 0.75 + 1.4, dpi)
    gs = fig.add_gridspec(1, 3, width_ratios=[1.25, 1, 1], left=0.01, right=0.935, top=0.88, bottom=0.17, wspace=0.32)
    (lo, hi), sd_hi = _scales([view])
    draw_allocation(fig.add_subplot(gs[0]), view)
    draw_heatmap(fig.add_subplot(gs[1]), view, view.mean, _MEAN_TITLE, "viridis", lo, hi, _MEAN_LABEL)
    draw_heatmap(fig.add_subplot(gs[2]), view, view.epistemic_sd, _SD_TITLE, "magma", 0.0, sd_hi, _SD_LABEL)
    fig.suptitle(_title(view.question, 110), fontsize=15, fontweight="bold")
    fig.text(0.5, 0.015, _footer(view), ha="center", va="bottom", fontsize=11)
    return fig


def compare_figure(view_a: AllocationView, view_b: AllocationView, dpi: int = 80):
    """Two questions on the same image side by side: per question the overlay on top and the two
    heatmaps below it; the heatmaps of both questions share their colour scales, one level legend."""
    _check_view(view_a, "view_a")
    _check_view(view_b, "view_b")
    if view_a.image.size != view_b.image.size or view_a.grid != view_b.grid:
        raise ValueError("compare_figure needs two views of the same image and grid")
    w, h = view_a.image.size
    aspect = h / w
    fig = _figure(16.0, 8.0 * aspect + 4.6, dpi)
    outer = fig.add_gridspec(1, 2, left=0.015, right=0.955, top=0.985, bottom=0.07, wspace=0.12)
    (lo, hi), sd_hi = _scales([view_a, view_b])
    for k, view in enumerate((view_a, view_b)):
        sub = outer[k].subgridspec(4, 2, height_ratios=[0.22, 2.0, 1.1, 0.2], hspace=0.16, wspace=0.42)
        head = fig.add_subplot(sub[0, :])
        head.axis("off")
        head.text(0.5, 0.5, _title(view.question, 60), ha="center", va="center", fontsize=14, fontweight="bold")
        draw_allocation(fig.add_subplot(sub[1, :]), view, legend=False, fontsize=11, title=False)
        draw_heatmap(fig.add_subplot(sub[2, 0]), view, view.mean, _MEAN_TITLE, "viridis", lo, hi, "mean", fontsize=9)
        draw_heatmap(fig.add_subplot(sub[2, 1]), view, view.epistemic_sd, _SD_TITLE, "magma", 0.0, sd_hi,
                     "epistemic sd", fontsize=9)
        foot = fig.add_subplot(sub[3, :])
        foot.axis("off")
        foot.text(0.5, 0.5, "\n".join(textwrap.wrap(_footer(view, latency=False).replace("\n", "; "), 100)),
                  ha="center", va="center", fontsize=10)
    fig.legend(handles=level_handles(view_a.levels), title="tokens per region", loc="lower center",
               bbox_to_anchor=(0.5, 0.0), ncol=len(view_a.levels), fontsize=10, title_fontsize=10, frameon=False)
    return fig


def panel_images(view: AllocationView, dpi: int = 90, scales: dict | None = None) -> dict:
    """The three panels as separate RGB PIL images: {"overlay", "mean", "epistemic_sd"}.

    scales: optional {"mean": (lo, hi), "epistemic_sd": hi} to share colour scales between views.
    """
    _check_view(view)
    w, h = view.image.size
    aspect = h / w
    (lo, hi), sd_hi = _scales([view])
    if scales:
        lo, hi = scales.get("mean", (lo, hi))
        sd_hi = scales.get("epistemic_sd", sd_hi)
    fig = _figure(6.4, 6.4 * aspect + 0.8, dpi)
    ax = fig.add_axes([0.01, 0.12, 0.98, 0.86])
    draw_allocation(ax, view, title=False)
    out = {"overlay": figure_to_image(fig)}
    for key, vals, title, cmap, vmin, vmax, label in (
            ("mean", view.mean, None, "viridis", lo, hi, _MEAN_LABEL),
            ("epistemic_sd", view.epistemic_sd, None, "magma", 0.0, sd_hi, _SD_LABEL)):
        fig = _figure(6.4, 6.4 * aspect * 0.82 + 0.2, dpi)
        ax = fig.add_axes([0.02, 0.03, 0.80, 0.94])
        draw_heatmap(ax, view, vals, title, cmap, vmin, vmax, label)
        out[key] = figure_to_image(fig)
    return out


def figure_to_image(fig):
    """Render a matplotlib Figure to an RGB PIL image."""
    from matplotlib.figure import Figure
    from PIL import Image

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


def save_figure(fig, path: str | Path) -> Path:
    """Save a Figure (format from the suffix; PNG optimised)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    path = Path(path)
    img = figure_to_image(fig)
    img.save(path, optimize=True) if path.suffix.lower() == ".png" else img.save(path)
    return path

