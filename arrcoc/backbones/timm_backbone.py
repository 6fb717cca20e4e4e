"""timm models (ViTs with dynamic image size, CNNs via their final feature map) as a VisionBackbone.

timm imports torchvision; ``arrcoc.backbones`` applies the torchvision compatibility fix first.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from .base import VisionBackbone

__all__ = ["TimmBackbone", "import_timm"]


def import_timm():
    """Import timm, with the torchvision fix applied; clear error naming the extra when missing."""
    from ._torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    try:
        import timm
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("timm backbones need the `timm` package: pip install 'arrcoc[timm]' "
                          f"(or pip install timm); import failed with: {e}") from e
    return timm


class TimmBackbone(VisionBackbone):
    """A timm model. ViT-like models (with ``patch_embed``) are created with ``dynamic_img_size=True``
    and fed ``grid * patch`` pixels; CNNs are fed ``grid * reduction`` pixels so that their final
    feature map is the grid (exactly, with 'same'-style padding; otherwise adaptive-pooled)."""

    def __init__(self, name: str, kwargs: dict[str, Any] | None = None, model=None):
        super().__init__()
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"name must be a non-empty timm model name (str), got {type(name).__name__} {name!r}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be a dict of timm.create_model arguments or None, got {type(kwargs).__name__}")
        timm = import_timm()
        self.name = name
        self.kwargs = dict(kwargs or {})
        if model is None:
            base = {"pretrained": False, "num_classes": 0, **self.kwargs}
            try:
                try:
                    model = timm.create_model(self.name, dynamic_img_size=True, **base)
                except TypeError:  # CNNs do not take dynamic_img_size
                    model = timm.create_model(self.name, **base)
            except RuntimeError as err:  # timm: "Unknown model (...)"
                if "unknown model" not in str(err).lower():
                    raise
                raise ValueError(f"name {self.name!r} is not a timm model (see timm.list_models())") from None
        self.model = model
        self.feature_dim = int(model.num_features)
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        size = cfg.get("input_size", (3, 224, 224))
        self.native_size = int(size[-1])
        self.image_mean = tuple(float(v) for v in cfg.get("mean", (0.5, 0.5, 0.5)))
        self.image_std = tuple(float(v) for v in cfg.get("std", (0.5, 0.5, 0.5)))
        pe = getattr(model, "patch_embed", None)
        if pe is not None:
            ps = pe.patch_size
            self.patch_size = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
            self.resizable = bool(getattr(model, "dynamic_img_size", False))
            self._vit = True
        else:
            self.patch_size = int(model.feature_info[-1]["reduction"])
            self.resizable = True
            self._vit = False

    def spec(self) -> dict:
        """JSON-safe description from which ``build_backbone`` rebuilds this architecture."""
        return {"type": "timm", "name": self.name, "kwargs": dict(self.kwargs)}

    def _features(self, pixel_values: Tensor):
        feats = self.model.forward_features(pixel_values)
        if self._vit:  # (N, prefix + h*w, D)
            h = pixel_values.shape[-2] // self.patch_size
            w = pixel_values.shape[-1] // self.patch_size
            prefix = int(getattr(self.model, "num_prefix_tokens", feats.shape[1] - h * w))
            return feats[:, prefix:], h, w
        n, d, h, w = feats.shape  # CNN feature map
        return feats.flatten(2).transpose(1, 2), h, w  # (N, h*w, D)
