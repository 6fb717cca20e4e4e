"""The pretrained default is question-aware and reproducible: ConSE channel, shipped label embeddings,
the same allocation in every fresh process."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def default():
    from arrcoc.modeling import load_default_model

    return load_default_model()


def test_default_builds_the_concept_channel_from_the_shipped_embeddings(default):
    from arrcoc.modeling.zero_shot import ASSET, _key, imagenet_label_texts

    model, _ = default
    cs = model.allocator.concept
    assert cs is not None and cs.label_embeddings.shape == (1000, model.query_encoder.dim)
    assert model.glimpse_side == 16
    blob = torch.load(ASSET, weights_only=True)
    texts = imagenet_label_texts()
    assert blob["key"] == _key(texts, model.query_encoder)  # the asset is for exactly this encoder
    # a fresh computation of a few labels equals the shipped (float16) embeddings
    idx = [0, 207, 281, 919, 999]
    fresh = model.query_encoder.sentence_embedding([texts[i] for i in idx])
    torch.testing.assert_close(fresh, cs.label_embeddings[idx], atol=2e-3, rtol=0)


def test_concept_scores_match_the_class_names(default):
    model, _ = default
    cs = model.allocator.concept
    # a feature whose classifier output is "tabby cat" scores highest for a question about a cat
    W = cs.classifier_weight
    feats = torch.linalg.pinv(W) @ (torch.eye(1000)[[281, 919]] * 30 - 15).T  # (D, 2) features -> those classes
    q = model.query_encoder.sentence_embedding(["cat", "street sign"])
    s = cs(feats.T[None].expand(2, -1, -1), q).score  # (2 questions, 2 regions)
    assert s[0].argmax() == 0 and s[1].argmax() == 1


def test_question_changes_the_allocation_on_the_bundled_scene(default):
    from PIL import Image

    from arrcoc.assets import sample_image_path

    model, proc = default
    batch = proc(Image.open(sample_image_path()).convert("RGB"))
    with torch.no_grad():
        a = model(batch["pixel_values"], queries=["What does the blue sign say?"], budget=1024, deterministic=True)
        b = model(batch["pixel_values"], queries=["What colour is the house?"], budget=1024, deterministic=True)
    assert a.allocation[0, 8] == 400 and a.allocation[0].argmax() == 8  # the blue sign's cell
    assert b.allocation[0, [6, 7]].max() == 400 and b.allocation[0, 8] < 400  # the house's cells
    # the ConSE channel classified each region's own 192-px crop, and says so
    assert a.concept_features is not None and a.concept_features.shape == (1, 16, model.hidden_size)
    assert int(a.tokens_per_image[0]) <= 1024 and int(b.tokens_per_image[0]) <= 1024


_SCRIPT = """
import json, torch
from PIL import Image
from arrcoc.assets import sample_image_path
from arrcoc.modeling import load_default_model
torch.manual_seed({seed})  # a different global RNG state in each process must not matter
m, p = load_default_model()
b = p(Image.open(sample_image_path()).convert("RGB"))
with torch.no_grad():
    o = m(b["pixel_values"], queries=["What colour is the house?"], budget=640, deterministic=True)
    r = m(b["pixel_values"], queries=["What does the stop sign say?"], budget=640, deterministic=True)  # OCR too
print(json.dumps({{"alloc": o.allocation[0].tolist(), "mean": [round(float(x), 5) for x in o.relevance_mean[0]],
                  "read": r.allocation[0].tolist(), "read_mean": [round(float(x), 5) for x in r.relevance_mean[0]],
                  "head": float(m.allocator.query.q_proj.weight.sum())}}))
"""


def test_deterministic_mode_is_the_same_in_every_new_process():
    outs = []
    for seed in (1, 2):
        r = subprocess.run([sys.executable, "-c", _SCRIPT.format(seed=seed)], capture_output=True, text=True,
                           cwd=ROOT, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
                           timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert outs[0] == outs[1]


def test_concept_channel_classifies_each_regions_own_crop(default):
    """forward's second ConSE look is the regions' 192-px crops (concept_crops), the allocator's
    concept score weighs the scorer on them and on the glimpse, and they are skipped when no question needs them
    (no question, or concept_side=0: the glimpse's features, as the allocator alone would use)."""
    from PIL import Image

    from arrcoc.assets import sample_image_path
    from arrcoc.modeling.regions import grid_boxes

    model, proc = default
    px = proc(Image.open(sample_image_path()).convert("RGB"))["pixel_values"]
    q = "What colour is the house?"
    with torch.no_grad():
        out = model(px, queries=[q], budget=1024, deterministic=True)
        crops = model.concept_crops(model._to_backbone(px), grid_boxes(px.shape[2], px.shape[3], 4, 1))
        torch.testing.assert_close(out.concept_features, crops)
        qb = model.question_batch([q], px.device, px.dtype)
        rel = model.allocator(out.region_features, question=qb, deterministic=True, concept_features=crops)
        w = model.allocator.config.concept_crop_weight
        cs = model.allocator.concept
        torch.testing.assert_close(rel.scores["concept"], w * cs(crops, qb.concept_vector).score
                                   + (1 - w) * cs(out.region_features, qb.concept_vector).score)
        assert model(px, budget=1024, deterministic=True).concept_features is None  # no question
        model.config.concept_side = 0
        try:
            glimpse = model(px, queries=[q], budget=1024, deterministic=True)
            with pytest.raises(ValueError, match="concept_side"):
                model.concept_crops(model._to_backbone(px), grid_boxes(px.shape[2], px.shape[3], 4, 1))
        finally:
            model.config.concept_side = 6
    assert glimpse.concept_features is None
    assert not torch.equal(glimpse.relevance_mean, out.relevance_mean)  # a different look, a different posterior


def test_ocr_channels_find_the_sign_by_what_it_says(default):
    """The drawn stop sign is no ImageNet class; the OCR reader finds STOP in region 15 and the
    text_match channel lifts that region to the top level. Without the reader it does not get it."""
    from PIL import Image

    from arrcoc.assets import sample_image_path

    model, proc = default
    if model.scene_text_reader is None:
        pytest.skip("rapidocr-onnxruntime is not installed: the OCR channels are off")
    px = proc(Image.open(sample_image_path()).convert("RGB"))["pixel_values"]
    q = "What does the stop sign say?"
    with torch.no_grad():
        out = model(px, queries=[q], budget=1024, deterministic=True)
        rgb = model._unnormalise(px).clamp(0, 1)
        from arrcoc.modeling.regions import grid_boxes

        st = model.read_scene_text(rgb, grid_boxes(px.shape[2], px.shape[3], 4, 1), model.question_batch([q], px.device, px.dtype), [q])
        assert int(st.match[0].argmax()) == 15 and float(st.match[0, 15]) == pytest.approx(1.0, abs=0.05)
        assert st.chars[0, 15] > 3 and st.chars[0, [0, 1, 4, 5]].sum() == 0  # STOP read there, nothing in the sky
        assert out.allocation[0, 15] == out.allocation[0].max() == 400
        reader, model.scene_text_reader = model.scene_text_reader, None
        try:
            blind = model(px, queries=[q], budget=1024, deterministic=True)
        finally:
            model.scene_text_reader = reader
    assert blind.allocation[0, 15] < 400  # the street sign (region 8) wins without reading
    assert out.relevance_mean[0, 15] - blind.relevance_mean[0, 15] > 0.4
    assert out.relevance_mean[0, 15] > out.relevance_mean[0, 8] and blind.relevance_mean[0, 15] < blind.relevance_mean[0, 8]


def test_scene_text_config():
    from arrcoc.modeling import ARRCOCVisionConfig

    with pytest.raises(ValueError, match="scene_text must be 'auto', True or False"):
        ARRCOCVisionConfig(scene_text="yes")
    assert ARRCOCVisionConfig().scene_text == "auto"
