"""The encoder's constructor seams (a given backbone / query encoder / region scorer), no global view,
and a forced allocation: what the VLM adapters and the evaluation build on."""
import pytest
import torch
import torch.nn.functional as F

from arrcoc.backbones import build_backbone
from arrcoc.modeling import ARRCOCVisionModel
from arrcoc.modeling.regions import crop_resize, grid_boxes

from .conftest import tiny_config

QUERIES = ["the red sign", "where is the house"]


def _backbone(kind="clip"):
    torch.manual_seed(7)
    return build_backbone(tiny_config(kind).backbone).eval()


def test_given_backbone_is_shared_not_copied():
    bb = _backbone()
    m = ARRCOCVisionModel(tiny_config(), backbone=bb).eval()
    assert m.backbone is bb
    p = next(bb.parameters())
    assert any(q is p for q in m.parameters())


def test_vlm_backbone_config_needs_the_instance():
    cfg = tiny_config(backbone={"type": "vlm", "vlm_class": "Qwen2VLForConditionalGeneration"})
    with pytest.raises(ValueError, match="from_vlm"):
        ARRCOCVisionModel(cfg)
    with pytest.raises(TypeError, match="backbone must be"):
        ARRCOCVisionModel(tiny_config(), backbone=torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="region_scorer must be callable"):
        ARRCOCVisionModel(tiny_config(), region_scorer=3)


def test_one_region_without_global_view_is_the_backbones_own_encoding(gen):
    """grid=1, no thumbnail, budget = the one level: the output is the backbone's own forward of the
    whole image at that level's input size (the VLM-equivalence configuration)."""
    bb = _backbone()
    cfg = tiny_config(grid=1, global_tokens=0, levels=[0, 36], budget=36, region_embeddings=False,
                      image_size=24)
    m = ARRCOCVisionModel(cfg, backbone=bb).eval()
    side = bb.input_size(6)
    x = torch.randn(2, 3, side, side, generator=gen)
    with torch.no_grad():
        out = m(x, deterministic=True)
        ref = bb(x, 6)  # (2, 36, D)
    assert out.allocation.tolist() == [[36], [36]]
    assert out.tokens_per_image.tolist() == [36, 36]
    assert (out.token_region[:, :36] == 0).all()
    torch.testing.assert_close(out.last_hidden_state, ref, atol=1e-6, rtol=1e-6)


def test_forced_allocation_is_encoded_exactly(gen):
    m = ARRCOCVisionModel(tiny_config()).eval()
    x = torch.randn(2, 3, 128, 128, generator=gen)
    alloc = torch.zeros(2, 16, dtype=torch.long)
    alloc[0, 3], alloc[0, 9], alloc[1, 0] = 36, 4, 16
    with torch.no_grad():
        out = m(x, queries=QUERIES, allocation=alloc)
        free = m(x, queries=QUERIES, deterministic=True)
    assert torch.equal(out.allocation, alloc)
    assert out.tokens_per_image.tolist() == [16 + 40, 16 + 16]
    torch.testing.assert_close(out.relevance_mean, free.relevance_mean)  # the posterior is still reported
    boxes = grid_boxes(128, 128, 4, 2)
    crop = crop_resize(m._to_backbone(x), torch.tensor([0]), boxes[0, 3][None], m.backbone.input_size(6))
    with torch.no_grad():
        ref = m.backbone(crop, 6)[0]  # (36, D)
        pos = m.region_embed.weight[4]
    got = out.last_hidden_state[0, 16:52]
    # region 3's tokens are its crop's backbone tokens plus the (fixed + learned) position terms
    assert F.cosine_similarity((got - pos).flatten(), ref.flatten(), dim=0) > 0.5
    assert (out.token_region[0, 16:52] == 3).all() and (out.token_region[0, 52:56] == 9).all()


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 15, dtype=torch.long), "shape"),
    (torch.zeros(2, 16), "integer"),
    (torch.full((2, 16), 5, dtype=torch.long), "token levels"),
    ([[0] * 16] * 2, "integer tensor"),
])
def test_forced_allocation_bad_input(bad, match, gen):
    m = ARRCOCVisionModel(tiny_config()).eval()
    x = torch.randn(2, 3, 128, 128, generator=gen)
    with pytest.raises(ValueError, match=match):
        m(x, allocation=bad)
    with pytest.raises(ValueError, match="num_rounds"):
        m(x, allocation=torch.zeros(2, 16, dtype=torch.long), num_rounds=2)


def test_region_scorer_moves_the_allocation(gen):
    """A strong external vlm_query score on one region gives it the top level; its inputs are the
    glimpse tokens, the region features and the query strings."""
    seen = {}

    def scorer(glimpse_tokens, region_features, queries):
        seen.update(tokens=glimpse_tokens.shape, regions=region_features.shape, queries=queries)
        s = torch.zeros(region_features.shape[:2])
        s[:, 13] = 1.0
        return {"vlm_query": s}

    cfg = tiny_config(relevance={"num_heads": 2, "head_dim": 8, "init_precision": {"vlm_query": 50.0}})
    m = ARRCOCVisionModel(cfg, region_scorer=scorer).eval()
    x = torch.randn(2, 3, 128, 128, generator=gen)
    with torch.no_grad():
        out = m(x, queries=QUERIES, deterministic=True)
        plain = ARRCOCVisionModel(tiny_config()).eval()(x, queries=QUERIES, deterministic=True)
    assert seen["queries"] == QUERIES and seen["regions"] == (2, 16, 32) and seen["tokens"][0] == 2
    assert (out.relevance_mean.argmax(-1) == 13).all()
    assert (out.allocation[:, 13] == 36).all()
    assert not torch.equal(out.relevance_mean, plain.relevance_mean)
    assert "region_scorer" not in dict(m.named_modules())  # unregistered: the VLM owns its modules


def test_channel_scores_bad_input(gen):
    def bad_scorer(kind):
        def f(tokens, regions, queries):
            if kind == "name":
                return {"colourful": torch.zeros(regions.shape[:2])}
            if kind == "shape":
                return {"vlm_query": torch.zeros(2, 3)}
            return {"vlm_query": torch.full(regions.shape[:2], float("nan"))}
        return f

    x = torch.randn(2, 3, 128, 128, generator=gen)
    for kind, match in [("name", "unknown channel"), ("shape", r"\(B, R\)"), ("nan", "NaN")]:
        m = ARRCOCVisionModel(tiny_config(), region_scorer=bad_scorer(kind)).eval()
        with pytest.raises(ValueError, match=match):
            m(x, queries=QUERIES)
