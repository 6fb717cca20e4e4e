"""Region geometry (DESIGN step 1) and batched crop resampling (step 7).

Regions are the cells of a G x G grid over the image (row-major, region index r = row * G + col);
the global thumbnail is the whole image. Boxes are (x0, y0, x1, y1) in pixels, integer cell edges.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from arrcoc.bayes._validate import check_int, check_real

__all__ = ["grid_edges", "grid_boxes", "crop_resize", "token_centres", "sincos_2d", "level_side"]


def level_side(level: int) -> int:
    """Grid side of a token level: level must be a perfect square (64 -> 8)."""
    level = check_int(level, "level")
    side = math.isqrt(max(level, 0))
    if side * side != level or level <= 0:
        raise ValueError(f"every nonzero level must be a positive perfect square (grid side^2), got {level}")
    return side


def grid_edges(size: int, grid: int) -> list[int]:
    """grid + 1 integer cell edges over [0, size]; cells differ in size by at most one pixel."""
    size, grid = check_int(size, "size", minimum=1), check_int(grid, "grid", minimum=1)
    if grid < 1 or size < grid:
        raise ValueError(f"cannot split {size} pixels into {grid} cells")
    return [round(i * size / grid) for i in range(grid + 1)]


def grid_boxes(height: int, width: int, grid: int, batch: int = 1, device=None) -> Tensor:
    """Boxes (batch, grid*grid, 4) as (x0, y0, x1, y1) float pixels, row-major."""
    height, width = check_int(height, "height", minimum=1), check_int(width, "width", minimum=1)
    grid, batch = check_int(grid, "grid", minimum=1), check_int(batch, "batch", minimum=1)
    ys, xs = grid_edges(height, grid), grid_edges(width, grid)
    boxes = [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(grid) for c in range(grid)]
    out = torch.tensor(boxes, dtype=torch.float32, device=device)  # (R, 4)
    return out.unsqueeze(0).expand(batch, -1, -1).clone()


def resize(images: Tensor, size: int) -> Tensor:
    """(N, C, h, w) -> (N, C, size, size), bilinear and antialiased. Half-precision inputs are
    resampled in float32 and cast back (the antialiased kernels have no bf16 / fp16 CPU version, and
    a VLM loaded in bf16 shares its dtype with the encoder)."""
    low = images.dtype in (torch.bfloat16, torch.float16)
    x = images.float() if low else images
    out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.to(images.dtype) if low else out


def crop_resize(images: Tensor, batch_index: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Crop boxes out of images and resample each crop to size x size (bilinear, antialiased).

    images (B, C, H, W); batch_index (N,) long; boxes (N, 4) integer-valued pixel boxes.
    Returns (N, C, size, size). One interpolate per crop: crops differ in shape only by a pixel.
    """
    size = check_int(size, "size", minimum=1)
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor of shape (B, C, H, W), got {_describe(images)}")
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be a tensor of shape (N, 4), got {_describe(boxes)}")
    if not isinstance(batch_index, Tensor) or batch_index.dtype not in (torch.long, torch.int32) \
            or batch_index.shape != boxes.shape[:1]:
        raise ValueError(f"batch_index must be an integer tensor of shape ({boxes.shape[0]},), got {_describe(batch_index)}")
    if boxes.shape[0] == 0:
        return images.new_zeros((0, images.shape[1], size, size))
    out = []
    for b, (x0, y0, x1, y1) in zip(batch_index.tolist(), boxes.round().long().tolist()):
        crop = images[b: b + 1, :, y0:y1, x0:x1]  # (1, C, h, w)
        out.append(resize(crop, size))
    return torch.cat(out, 0)  # (N, C, size, size)


def token_centres(boxes: Tensor, side: int, height: int, width: int) -> Tensor:
    """Centres (N, side*side, 2) in [0, 1] image coordinates (x, y) of a side x side token grid
    laid over each box (N, 4)."""
    side = check_int(side, "side", minimum=1)
    height, width = check_int(height, "height", minimum=1), check_int(width, "width", minimum=1)
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be a tensor of shape (N, 4), got {_describe(boxes)}")
    t = (torch.arange(side, device=boxes.device, dtype=torch.float32) + 0.5) / side  # (s,)
    gy, gx = torch.meshgrid(t, t, indexing="ij")  # (s, s)
    x0, y0, x1, y1 = boxes.float().unbind(-1)  # (N,)
    cx = (x0[:, None] + gx.flatten()[None] * (x1 - x0)[:, None]) / width  # (N, s*s)
    cy = (y0[:, None] + gy.flatten()[None] * (y1 - y0)[:, None]) / height  # (N, s*s)
    return torch.stack([cx, cy], -1)  # (N, s*s, 2)


def sincos_2d(xy: Tensor, dim: int, max_period: float = 1000.0) -> Tensor:
    """Fixed 2-D sinusoidal embedding of coordinates in [0, 1]: (..., 2) -> (..., dim).

    Half the channels encode x, half y; frequencies geometric up to ``max_period``. Deterministic,
    no parameters, so a region's tokens are told apart by where they sit in the full image.
    """
    dim = check_int(dim, "dim", minimum=1)
    max_period = check_real(max_period, "max_period", low=1.0, low_open=True)
    if not isinstance(xy, Tensor) or xy.dim() < 1 or xy.shape[-1] != 2:
        raise ValueError(f"xy must be a tensor of shape (..., 2), got {_describe(xy)}")
    quarter = max(dim // 4, 1)
    freqs = max_period ** (-torch.arange(quarter, device=xy.device, dtype=torch.float32) / quarter)  # (q,)
    ang = xy.float()[..., None] * freqs * (2 * math.pi * 64)  # (..., 2, q): 64 periods across the image at most
    emb = torch.cat([ang.sin(), ang.cos()], -1).flatten(-2)  # (..., 4q)
    if emb.shape[-1] < dim:
        emb = F.pad(emb, (0, dim - emb.shape[-1]))
    return emb[..., :dim]


def _describe(x) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
