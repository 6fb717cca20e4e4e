"""The serving stages equal the model's own forward pass; bad inputs name themselves."""
import io

import numpy as np
import pytest
import torch

from arrcoc.serving import ServingConfig, decode_image, relevance_quantiles

from .conftest import QUESTION, png_bytes

FIELDS = ("allocation", "relevance_mean", "relevance_var", "last_hidden_state", "attention_mask", "token_region",
          "tokens_per_image", "region_boxes")


def reference(tiny, data, question, budget, seed, deterministic):
    from PIL import Image

    model, processor = tiny
    pv = processor(Image.open(io.BytesIO(data)).convert("RGB"))["pixel_values"]
    with torch.no_grad():
        return model(pv, queries=[question], budget=budget, generator=torch.Generator().manual_seed(seed),
                     deterministic=deterministic)


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("seed,budget", [(0, 120), (7, 60)])
def test_stages_equal_model_forward(tiny, pipeline, one_thread, deterministic, seed, budget):
    data = png_bytes(seed)
    out = pipeline.run(data, QUESTION, budget, seed=seed, deterministic=deterministic)
    ref = reference(tiny, data, QUESTION, budget, seed, deterministic)
    for k in FIELDS:
        assert torch.equal(out[k], getattr(ref, k)[0]), k
    assert torch.equal(out["epistemic_var"], ref.relevance_epistemic_var[0])
    assert torch.equal(out["aleatoric_var"] + out["epistemic_var"], ref.relevance_var[0])
    assert out["draws"] == (0 if deterministic else 1) and out["seed"] == seed


def test_more_draws_average_the_thompson_probability(pipeline, one_thread):
    pv = pipeline.preprocess(png_bytes(1), QUESTION)["pixel_values"]
    a = pipeline.relevance(pv, QUESTION, 120, seed=3, draws=4000)
    b = pipeline.relevance(pv, QUESTION, 120, seed=4, draws=16000)
    assert torch.equal(a["relevance_mean"], b["relevance_mean"]) and (a["draws"], b["draws"]) == (4000, 16000)
    # both estimate E[softmax(r)_i]; a [0, 1] variable of mean p has variance <= p (1 - p), so the
    # difference of the two independent averages has sd <= sqrt(p (1 - p) (1/4000 + 1/16000))
    p = b["probability"].double()
    sd = (p * (1 - p) * (1 / 4000 + 1 / 16000)).sqrt()
    assert bool(((a["probability"].double() - p).abs() <= 5 * sd).all())
    assert torch.allclose(a["probability"].sum(), torch.tensor(1.0), atol=1e-5)


def test_quantiles_match_normal_quantiles():
    from scipy.stats import norm

    mean, var = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 0.25, 4.0])
    q = relevance_quantiles(mean, var, (0.05, 0.5, 0.95))
    exp = norm.ppf([0.05, 0.5, 0.95])[None] * np.sqrt(var.numpy())[:, None] + mean.numpy()[:, None]
    np.testing.assert_allclose(q.numpy(), exp, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad,match", [(b"", "image is empty"), (b"\x89PNG\r\n\x1a\nnot really", "image"),
                                       (png_bytes(0)[:200], "image is truncated or corrupt"), ("text", "image")])
def test_corrupt_image_bytes_name_the_image(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        decode_image(bad)


@pytest.mark.parametrize("question", ["", "   ", None])
def test_empty_question(pipeline, question):
    with pytest.raises((ValueError, TypeError), match="question"):
        pipeline.preprocess(png_bytes(0), question)


@pytest.mark.parametrize("budget", [19, 16, 0, -5, 2.5, "100"])
def test_budget_below_smallest_level_or_not_an_int(pipeline, budget):
    # tiny model: 16-token global view + smallest level 4 -> 20 is the least budget that encodes a region
    with pytest.raises((ValueError, TypeError), match="budget"):
        pipeline.check_budget(budget)
    assert pipeline.check_budget(20) == 20


def test_seed_and_draws_checked(pipeline):
    pv = pipeline.preprocess(png_bytes(0), QUESTION)["pixel_values"]
    for kw, name in ((dict(seed=-1), "seed"), (dict(seed=1.5), "seed"), (dict(draws=0), "draws")):
        with pytest.raises((ValueError, TypeError), match=name):
            pipeline.relevance(pv, QUESTION, 120, **kw)


def test_serving_config_checks():
    with pytest.raises(ValueError, match="quantiles"):
        ServingConfig(quantiles=(0.5, 1.0))
    with pytest.raises((TypeError, ValueError), match="allocator_threads"):
        ServingConfig(allocator_threads=0)
