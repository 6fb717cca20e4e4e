"""ARRCOCVisionModel.forward casts floating pixel_values to its parameter dtype at the boundary (issue 14):
float64 / float16 / bfloat16 pixels give the float32 allocation (posterior up to the input's rounding)."""
import pytest
import torch

from tests.modeling.conftest import tiny_model

# about 25x the largest posterior-mean change measured (float16 2.1e-4, bfloat16 1.7e-3; float64 exact)
TOL = {torch.float64: 1e-6, torch.float16: 5e-3, torch.bfloat16: 4e-2}


@pytest.fixture(scope="module")
def reference():
    # the information gain spreads the budget, so the allocation compared is not all zeros
    model = tiny_model(relevance={"num_heads": 2, "head_dim": 8, "gain": "information"})
    pixels = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1  # normalised
    with torch.no_grad():
        out = model(pixel_values=pixels, queries=["the red sign", "a dog"], deterministic=True)
    return model, pixels, out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_floating_pixels_are_cast_to_the_model_dtype(reference, dtype):
    model, pixels, ref = reference
    with torch.no_grad():
        out = model(pixel_values=pixels.to(dtype), queries=["the red sign", "a dog"], deterministic=True)
    assert out.last_hidden_state.dtype == ref.last_hidden_state.dtype == torch.float32
    assert (ref.allocation > 0).sum() >= 8
    assert torch.equal(out.allocation, ref.allocation)
    assert torch.equal(out.tokens_per_image, ref.tokens_per_image)
    tol = TOL[dtype]
    scale = ref.relevance_mean.abs().max().clamp_min(1.0)
    assert (out.relevance_mean - ref.relevance_mean).abs().max() <= tol * scale
    assert torch.isfinite(out.last_hidden_state).all()


def test_pixels_that_overflow_the_model_dtype_are_refused(reference):
    model, pixels, _ = reference
    big = pixels.double()
    big[0, 0, 0, 0] = 1e300  # finite in float64, inf in float32
    with pytest.raises(ValueError, match="pixel_values"):
        model(pixel_values=big, queries=["q", "q"], deterministic=True)
