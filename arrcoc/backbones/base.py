"""The one interface every vision backbone offers to ARR-COC: patch-grid features at a requested grid.

A backbone turns N image crops into exactly ``grid * grid`` feature vectors each. It says which pixel
size it wants the crops at (``input_size(grid)``): for a patch model that resamples its position
embeddings it is ``grid * patch_size`` (its own patch grid is then exactly grid x grid); for a model
with fixed position embeddings it is the native size, and its patch features are adaptive-pooled to
the grid. The caller (``arrcoc.modeling``) resamples crops to that size, one batched call per level.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._validate import check_int

__all__ = ["VisionBackbone", "tokens_to_grid"]


def tokens_to_grid(tokens: Tensor, side_h: int, side_w: int, grid: int) -> Tensor:
    """(N, side_h*side_w, D) patch tokens -> (N, grid*grid, D), adaptive-average-pooled when needed."""
    side_h, side_w = check_int(side_h, "side_h", minimum=1), check_int(side_w, "side_w", minimum=1)
    grid = check_int(grid, "grid", minimum=1)
    if not isinstance(tokens, Tensor) or tokens.dim() != 3 or tokens.shape[1] != side_h * side_w:
        got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must have shape (N, side_h*side_w = {side_h * side_w}, D), got {got}")
    if side_h == grid and side_w == grid:
        return tokens
    n, _, d = tokens.shape
    fmap = tokens.transpose(1, 2).reshape(n, d, side_h, side_w)  # (N, D, h, w)
    return F.adaptive_avg_pool2d(fmap, grid).flatten(2).transpose(1, 2)  # (N, grid*grid, D)


class VisionBackbone(nn.Module):
    """Base class. Subclasses set ``feature_dim``, ``patch_size``, ``image_mean``/``image_std`` and
    implement ``_features(pixel_values) -> (N, D, h, w)`` feature map or ``(N, h*w, D)`` tokens."""

    feature_dim: int
    patch_size: int            # pixels per output cell when the model can resample its grid
    native_size: int           # the resolution the model was built for
    resizable: bool            # True: input_size(grid) = grid * patch_size; False: native + pooling
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def input_size(self, grid: int) -> int:
        """Side in pixels at which crops must be passed to get a ``grid x grid`` feature map."""
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
            raise ValueError(f"grid must be a positive int, got {grid!r}")
        return grid * self.patch_size if self.resizable else self.native_size

    def _features(self, pixel_values: Tensor) -> tuple[Tensor, int, int]:
        """Return (tokens (N, h*w, D), h, w)."""
        raise NotImplementedError

    def forward(self, pixel_values: Tensor, grid: int) -> Tensor:
        """pixel_values (N, 3, S, S) normalised with this backbone's mean/std, S = input_size(grid).

        Returns (N, grid*grid, D) features in row-major grid order.
        """
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must have shape (N, 3, H, W), got {tuple(pixel_values.shape)}")
        expected = self.input_size(grid)
        if pixel_values.shape[-2:] != (expected, expected):
            raise ValueError(
                f"pixel_values must be {expected}x{expected} for a {grid}x{grid} grid on this backbone, "
                f"got {tuple(pixel_values.shape[-2:])}")
        tokens, h, w = self._features(pixel_values)  # (N, h*w, D)
        out = tokens_to_grid(tokens, h, w, grid)  # (N, grid*grid, D)
        return out

    def extra_repr(self) -> str:
        return (f"feature_dim={self.feature_dim}, patch_size={self.patch_size}, "
                f"native_size={self.native_size}, resizable={self.resizable}")
