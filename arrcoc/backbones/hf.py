"""Any transformers vision model (CLIP, SigLIP, ViT, Dinov2 vision towers, ...) as a VisionBackbone."""
from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor

from .base import VisionBackbone

__all__ = ["HFVisionBackbone", "hf_vision_config", "ALWAYS_INTERPOLATING"]

# Model types whose embeddings always interpolate position embeddings to the input size (no kwarg).
ALWAYS_INTERPOLATING = frozenset({"dinov2", "dinov2_with_registers"})

# Composite configs whose vision tower lives in `vision_config`.
_COMPOSITE = frozenset({"clip", "siglip", "siglip2", "chinese_clip", "blip", "altclip"})


def hf_vision_config(config: Any):
    """A transformers vision config from a PretrainedConfig or a dict with ``model_type``.

    Composite configs (e.g. ``clip``) are reduced to their ``vision_config``.
    """
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(config, dict):
        d = dict(config)
        if "model_type" not in d:
            raise ValueError("an HF backbone config dict needs a 'model_type' key (e.g. 'clip_vision_model')")
        config = AutoConfig.for_model(d.pop("model_type"), **d)
    if not isinstance(config, PretrainedConfig):
        raise TypeError(f"config must be a transformers PretrainedConfig or dict, got {type(config).__name__}")
    if config.model_type in _COMPOSITE and hasattr(config, "vision_config"):
        config = config.vision_config
    return config


class HFVisionBackbone(VisionBackbone):
    """Wraps a transformers vision model; patch tokens (CLS/register tokens dropped) at any grid.

    Models that take ``interpolate_pos_encoding`` (CLIP, SigLIP, ViT) or always interpolate (Dinov2)
    are fed crops of ``grid * patch_size`` pixels, so their own patch grid is the requested grid.
    Others are fed their native size and their patch grid is adaptive-average-pooled.
    """

    def __init__(self, model):
        super().__init__()
        from transformers import PreTrainedModel

        if not isinstance(model, PreTrainedModel):
            raise TypeError(f"model must be a transformers vision model (PreTrainedModel), got {type(model).__name__}; "
                            "build one from a config with HFVisionBackbone.from_config")
        cfg = model.config
        for name in ("patch_size", "image_size", "hidden_size"):
            if not hasattr(cfg, name):
                raise ValueError(f"{type(model).__name__} config lacks {name!r}; not a patch vision model")
        self.model = model
        self.feature_dim = int(cfg.hidden_size)
        ps = cfg.patch_size
        self.patch_size = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
        size = cfg.image_size
        self.native_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        params = inspect.signature(model.forward).parameters
        self._interp_kwarg = "interpolate_pos_encoding" in params
        self.resizable = self._interp_kwarg or cfg.model_type in ALWAYS_INTERPOLATING
        # CLIP-family processors use CLIP's statistics; the rest the ImageNet/0.5 defaults of their family.
        if cfg.model_type.startswith("clip"):
            self.image_mean = (0.48145466, 0.4578275, 0.40821073)
            self.image_std = (0.26862954, 0.26130258, 0.27577711)
        elif cfg.model_type.startswith(("vit", "dinov2")):
            self.image_mean = (0.485, 0.456, 0.406)
            self.image_std = (0.229, 0.224, 0.225)

    @classmethod
    def from_config(cls, config: Any) -> "HFVisionBackbone":
        """Build the vision model class that AutoModel maps the config to (random weights)."""
        from transformers import AutoModel

        return cls(AutoModel.from_config(hf_vision_config(config)))

    def spec(self) -> dict:
        """JSON-safe description from which ``build_backbone`` rebuilds this architecture."""
        return {"type": "hf", "config": self.model.config.to_dict()}

    def _features(self, pixel_values: Tensor):
        kw = {"interpolate_pos_encoding": True} if self._interp_kwarg else {}
        pixel_values = pixel_values.to(self.model.dtype)
        hidden = self.model(pixel_values=pixel_values, return_dict=True, **kw).last_hidden_state  # (N, T, D)
        h = pixel_values.shape[-2] // self.patch_size
        w = pixel_values.shape[-1] // self.patch_size
        if hidden.shape[1] < h * w:
            raise RuntimeError(f"{type(self.model).__name__} returned {hidden.shape[1]} tokens for a {h}x{w} grid")
        return hidden[:, hidden.shape[1] - h * w:], h, w  # patch tokens come last (after CLS/registers)
