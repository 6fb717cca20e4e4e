"""Tiny random-weight ARR-COC configs built from real transformers classes (nothing downloaded)."""
import pytest
import torch

from arrcoc.modeling import ARRCOCVisionConfig, ARRCOCVisionModel

TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   image_size=32, patch_size=4)


def tiny_config(kind: str = "clip", **overrides) -> ARRCOCVisionConfig:
    from transformers import CLIPVisionConfig, SiglipVisionConfig, ViTConfig
    cls = {"clip": CLIPVisionConfig, "siglip": SiglipVisionConfig, "vit": ViTConfig}[kind]
    kw = dict(backbone={"type": "hf", "config": cls(**TINY_VISION).to_dict()},
              query_encoder={"type": "bytes", "dim": 32}, image_size=128, levels=[0, 4, 16, 36],
              global_tokens=16, budget=120, relevance={"num_heads": 2, "head_dim": 8})
    kw.update(overrides)
    return ARRCOCVisionConfig(**kw)


def tiny_model(kind: str = "clip", **overrides) -> ARRCOCVisionModel:
    torch.manual_seed(1234)
    return ARRCOCVisionModel(tiny_config(kind, **overrides)).eval()


@pytest.fixture
def model():
    return tiny_model()


@pytest.fixture
def pixels(gen):
    return torch.randn(2, 3, 128, 128, generator=gen)
