"""``ARRCOCImageProcessor``: PIL images / arrays -> ``pixel_values`` (B, 3, S, S) and region boxes."""
from __future__ import annotations

import arrcoc.backbones  # noqa: F401  (applies the torchvision fix before transformers loads)

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from arrcoc.bayes._validate import check_int, check_real

from .regions import grid_boxes

__all__ = ["ARRCOCImageProcessor"]


def _per_channel(values, name: str, positive: bool) -> list[float]:
    """Three per-channel (RGB) statistics as floats; std must be positive."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) != 3:
        raise ValueError(f"{name} must be three numbers (one per RGB channel), got {values!r}")
    return [check_real(v, f"{name}[{i}]", low=0.0 if positive else None, low_open=positive) for i, v in enumerate(values)]


class ARRCOCImageProcessor(BaseImageProcessor):
    """Resize to a square ``size`` (bilinear, antialiased), scale to [0, 1], normalise.

    Accepts RGB PIL images, (H, W, 3) uint8/float arrays or tensors, or (3, H, W) tensors. Rejects
    non-RGB images (grayscale, RGBA, CMYK, palettes: convert them with ``image.convert("RGB")``),
    images smaller than ``min_size`` pixels per side and images above ``max_pixels`` pixels.

    Returns a BatchFeature with ``pixel_values`` (B, 3, size, size), ``region_boxes`` (B, R, 4) in
    the pixel_values frame and ``original_sizes`` (B, 2) as (height, width); ``boxes_to_original``
    maps boxes back onto each original image (for overlays).
    """

    model_input_names = ["pixel_values"]

    def __init__(self, size: int = 640, grid: int = 4, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5),
                 min_size: int = 16, max_pixels: int = 64_000_000, **kwargs: Any):
        super().__init__(**kwargs)
        self.size = check_int(size, "size", minimum=1)
        self.grid = check_int(grid, "grid", minimum=1)
        self.image_mean = _per_channel(image_mean, "image_mean", positive=False)
        self.image_std = _per_channel(image_std, "image_std", positive=True)
        self.min_size = check_int(min_size, "min_size", minimum=1)
        self.max_pixels = check_int(max_pixels, "max_pixels", minimum=1)
        if self.size < 4 * self.grid:
            raise ValueError(f"size {self.size} too small for a {self.grid}x{self.grid} grid")

    @classmethod
    def from_model_config(cls, config, **kwargs) -> "ARRCOCImageProcessor":
        """Processor matching an ``ARRCOCVisionConfig`` (size, grid, normalisation)."""
        if config.image_mean is None or config.image_std is None:
            raise ValueError("config has no image_mean/std yet; build the model first (it fills them from the backbone)")
        return cls(size=config.image_size, grid=config.grid, image_mean=config.image_mean,
                   image_std=config.image_std, **kwargs)

    def _to_tensor(self, image, i: int) -> torch.Tensor:
        """One image -> float (3, H, W) in [0, 1]."""
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover
            Image = None
        if Image is not None and isinstance(image, Image.Image):
            if image.mode != "RGB":
                raise ValueError(f"images[{i}] has mode {image.mode!r}; expected an RGB image "
                                 "(convert it with image.convert('RGB'))")
            arr = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
            return arr.float() / 255.0
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(image.copy())
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"images[{i}] must be a PIL image, numpy array or tensor, got {type(image).__name__}")
        t = image
        if t.dim() == 3 and t.shape[-1] in (1, 2, 3, 4) and t.shape[0] not in (1, 2, 3, 4):
            t = t.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"images[{i}] has shape {tuple(image.shape)}; expected an RGB image with 3 channels "
                             "as (H, W, 3) or (3, H, W)")
        if t.dtype == torch.uint8:
            return t.float() / 255.0
        if not t.is_floating_point():
            raise TypeError(f"images[{i}] must be uint8 or float, got {t.dtype}")
        t = t.float()
        if not torch.isfinite(t).all():
            raise ValueError(f"images[{i}] contains NaN or inf")
        if t.min() < 0 or t.max() > 1:
            raise ValueError(f"float images[{i}] must lie in [0, 1], got range [{float(t.min())}, {float(t.max())}]")
        return t

    def _check_size(self, h: int, w: int, i: int):
        if min(h, w) < self.min_size:
            raise ValueError(f"images[{i}] is {w}x{h} pixels; at least {self.min_size} pixels per side are needed")
        if h * w > self.max_pixels:
            raise ValueError(f"images[{i}] is {w}x{h} = {h * w} pixels, above max_pixels={self.max_pixels}; "
                             "downscale it first or raise max_pixels")

    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        """Turn one image or a list of images into a batch."""
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        if not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) == 0:
            raise ValueError("images must not be empty")
        pixel, sizes = [], []
        mean = torch.tensor(self.image_mean).view(3, 1, 1)
        std = torch.tensor(self.image_std).view(3, 1, 1)
        for i, image in enumerate(images):
            if hasattr(image, "size") and not isinstance(image, (np.ndarray, torch.Tensor)):
                self._check_size(image.size[1], image.size[0], i)  # PIL: check before decoding pixels
            t = self._to_tensor(image, i)  # (3, H, W)
            h, w = t.shape[-2:]
            self._check_size(h, w, i)
            t = F.interpolate(t[None], size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=True)[0].clamp(0, 1)
            pixel.append((t - mean) / std)
            sizes.append((h, w))
        pixel_values = torch.stack(pixel)  # (B, 3, S, S)
        boxes = grid_boxes(self.size, self.size, self.grid, len(images))  # (B, R, 4)
        data = {"pixel_values": pixel_values, "region_boxes": boxes,
                "original_sizes": torch.tensor(sizes, dtype=torch.long)}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def boxes_to_original(self, boxes: torch.Tensor, original_sizes: torch.Tensor) -> torch.Tensor:
        """Map boxes (B, R, 4) from the pixel_values frame to each original image's pixels."""
        scale_y = original_sizes[:, 0].float() / self.size  # (B,)
        scale_x = original_sizes[:, 1].float() / self.size  # (B,)
        s = torch.stack([scale_x, scale_y, scale_x, scale_y], -1)[:, None, :]  # (B, 1, 4)
        return boxes * s

    def unnormalize(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values -> RGB in [0, 1]."""
        mean = torch.tensor(self.image_mean, device=pixel_values.device).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std, device=pixel_values.device).view(1, 3, 1, 1)
        return (pixel_values * std + mean).clamp(0, 1)
