"""ARRCOCImageProcessor: exact normalisation, accepted formats, clear errors on bad images."""
import numpy as np
import pytest
import torch
from PIL import Image

from arrcoc.modeling import ARRCOCImageProcessor


@pytest.fixture
def proc():
    return ARRCOCImageProcessor(size=64, grid=4, image_mean=(0.5, 0.25, 0.0), image_std=(0.5, 0.25, 1.0))


def test_constant_image_normalises_exactly(proc):
    img = Image.new("RGB", (100, 80), (255, 51, 0))
    out = proc(img)
    pv = out["pixel_values"]
    assert pv.shape == (1, 3, 64, 64)
    want = torch.tensor([(1.0 - 0.5) / 0.5, (0.2 - 0.25) / 0.25, 0.0])
    torch.testing.assert_close(pv[0].mean((-1, -2)), want, atol=1e-6, rtol=0)
    assert out["original_sizes"].tolist() == [[80, 100]]
    assert out["region_boxes"].shape == (1, 16, 4)
    assert out["region_boxes"][0, 5].tolist() == [16, 16, 32, 32]
    orig = proc.boxes_to_original(out["region_boxes"], out["original_sizes"])
    assert orig[0, 15].tolist() == [75.0, 60.0, 100.0, 80.0]
    torch.testing.assert_close(proc.unnormalize(pv)[0, :, 0, 0], torch.tensor([1.0, 0.2, 0.0]), atol=1e-6, rtol=0)


def test_arrays_and_tensors_agree(proc, gen):
    arr = (torch.rand(40, 50, 3, generator=gen) * 255).to(torch.uint8).numpy()
    a = proc(Image.fromarray(arr))["pixel_values"]
    b = proc(arr)["pixel_values"]
    c = proc(torch.from_numpy(arr).permute(2, 0, 1).float() / 255)["pixel_values"]
    d = proc([arr, arr])["pixel_values"]
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=0)
    assert d.shape == (2, 3, 64, 64)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA"])
def test_non_rgb_pil_rejected(proc, mode):
    with pytest.raises(ValueError, match=rf"mode '{mode}'.*convert\('RGB'\)"):
        proc(Image.new(mode, (32, 32)))


def test_bad_images_rejected(proc):
    with pytest.raises(ValueError, match="3 channels"):
        proc(np.zeros((32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="3 channels"):
        proc(np.zeros((32, 32, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="at least 16 pixels"):
        proc(Image.new("RGB", (8, 100)))
    with pytest.raises(ValueError, match="max_pixels"):
        ARRCOCImageProcessor(size=64, max_pixels=10_000)(Image.new("RGB", (200, 100)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        proc(torch.full((3, 32, 32), 2.0))
    with pytest.raises(ValueError, match="NaN"):
        proc(torch.full((3, 32, 32), float("nan")))
    with pytest.raises(TypeError, match="PIL image"):
        proc("picture.png")
    with pytest.raises(ValueError, match="empty"):
        proc([])


def test_huge_image_rejected_before_decoding():
    """A 30000 x 30000 PIL image (lazy, 'huge') is refused from its header size."""
    proc = ARRCOCImageProcessor(size=64)
    class Huge:  # PIL-like object exposing only .size, as Image.open does before load()
        size = (30000, 30000)
        mode = "RGB"
    with pytest.raises(ValueError, match="above max_pixels"):
        proc(Huge())


def test_from_model_config_matches_model():
    from tests.modeling.conftest import tiny_model
    m = tiny_model()
    p = ARRCOCImageProcessor.from_model_config(m.config)
    assert p.size == 128 and p.grid == 4 and p.image_mean == m.config.image_mean


def test_processor_save_load(proc, tmp_path):
    proc.save_pretrained(tmp_path)
    again = ARRCOCImageProcessor.from_pretrained(tmp_path)
    assert (again.size, again.grid, again.image_mean, again.image_std, again.max_pixels) == \
        (proc.size, proc.grid, proc.image_mean, proc.image_std, proc.max_pixels)
    img = Image.new("RGB", (40, 40), (10, 200, 30))
    torch.testing.assert_close(again(img)["pixel_values"], proc(img)["pixel_values"])
