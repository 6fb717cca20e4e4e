"""Issue 14 findings in arrcoc.backbones: bad names, models, configs and sizes are clear errors naming
the argument (not timm's RuntimeError, an AttributeError, or an OverflowError)."""
import math

import pytest
import torch

from arrcoc.backbones import ByteQueryEncoder, HFTextQueryEncoder, HFVisionBackbone, build_query_encoder, tokens_to_grid
from arrcoc.backbones.pretrained import load_efficientnet_lite0_weights
from arrcoc.backbones.text import sincos_1d


@pytest.mark.parametrize("name", ["", "no-such-model", None, 3])
def test_timm_backbone_name(name):
    pytest.importorskip("timm")
    from arrcoc.backbones import TimmBackbone
    with pytest.raises((TypeError, ValueError), match="name"):
        TimmBackbone(name)


@pytest.mark.parametrize("bad", [torch.zeros(3), "clip", None, {"model_type": "clip"}])
def test_wrong_model_objects(bad):
    with pytest.raises(TypeError, match="model"):
        HFVisionBackbone(bad)
    with pytest.raises(TypeError, match="model"):
        load_efficientnet_lite0_weights(bad)


@pytest.mark.parametrize("bad", [torch.zeros(3), "bert", None, [("model_type", "bert")]])
def test_text_encoder_config(bad):
    with pytest.raises(TypeError, match="config"):
        HFTextQueryEncoder(bad)


@pytest.mark.parametrize("bad", [math.inf, 2.5, "64", None, 1])
def test_byte_encoder_dim(bad):
    with pytest.raises((TypeError, ValueError), match="dim"):
        ByteQueryEncoder(bad)
    with pytest.raises((TypeError, ValueError), match="dim"):
        build_query_encoder({"type": "bytes", "dim": bad})  # no silent truncation of 2.5 to 2


@pytest.mark.parametrize("bad", [2.5, -4, math.nan])
def test_sizes_of_token_grids(bad):
    with pytest.raises((TypeError, ValueError), match="length"):
        sincos_1d(bad, 8)
    with pytest.raises((TypeError, ValueError), match="grid"):
        tokens_to_grid(torch.zeros(1, 16, 8), 4, 4, bad)
    assert tokens_to_grid(torch.arange(16.0).view(1, 16, 1), 4, 4, 2).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
