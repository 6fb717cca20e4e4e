"""The offline OCR reader (PP-OCRv4 weights shipped in rapidocr-onnxruntime) on real rendered text."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from arrcoc.backbones.scene_text import SceneTextReader, TextLine, scene_text_available

needs_ocr = pytest.mark.skipif(not scene_text_available(), reason="rapidocr-onnxruntime is not installed")


@pytest.fixture(scope="module")
def reader():
    return SceneTextReader()


def _sample():
    from arrcoc.assets import sample_image_path

    return Image.open(sample_image_path()).convert("RGB")


@needs_ocr
def test_reads_the_bundled_scene_signs_where_they_are(reader):
    lines = reader.read(_sample())  # 640 x 480
    texts = {ln.text.replace(" ", "").upper(): ln for ln in lines}
    assert "STOP" in texts and "EXIT42" in texts, [ln.text for ln in lines]
    x0, y0, x1, y1 = texts["STOP"].box  # the octagon's word, drawn at about (530-590, 372-393)
    assert 515 <= x0 < x1 <= 605 and 360 <= y0 < y1 <= 405
    assert all(isinstance(ln, TextLine) and 0.5 <= ln.confidence <= 1.0 for ln in lines)
    assert any("speed" in ln.text.lower() for ln in lines)  # the line of small print at the bottom


@needs_ocr
def test_reads_text_it_was_not_shown_before_and_caches_by_pixels(reader):
    img = Image.new("RGB", (360, 120), (250, 250, 240))
    draw = ImageDraw.Draw(img)
    draw.text((20, 30), "BAKERY 1987", fill=(20, 20, 120), font=ImageFont.load_default(size=44))
    arr = np.asarray(img)
    lines = reader.read(arr)
    assert [ln.text.replace(" ", "") for ln in lines] == ["BAKERY1987"]
    assert lines[0].box[0] < 40 and lines[0].box[2] > 250
    # the same pixels as a (3, H, W) tensor in [0, 1]: the cached answer, no second engine run
    before = len(reader._cache)
    again = reader.read(torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255)
    assert again == lines and len(reader._cache) == before
    assert reader.read_batch(torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255) == [lines]
    blank = reader.read(np.full((64, 64, 3), 255, np.uint8))
    assert blank == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(threads=0), "threads must be a positive int"),
    (dict(min_confidence=1.5), r"min_confidence must be a number in \[0, 1\]"),
    (dict(cache_size=-1), "cache_size must be a non-negative int"),
])
def test_reader_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SceneTextReader(**kwargs)


@pytest.mark.parametrize("image, match", [
    (np.zeros((8, 8), np.uint8), r"\(H, W, 3\) uint8"),
    (np.zeros((8, 8, 3), np.float32), r"\(H, W, 3\) uint8"),
    (torch.zeros(1, 8, 8), r"\(3, H, W\) float"),
    (np.zeros((1, 8, 3), np.uint8), "at least 2 x 2"),
    ("picture.png", r"\(H, W, 3\) uint8"),
])
def test_reader_image_checks(image, match):
    with pytest.raises(ValueError, match=match):
        SceneTextReader().read(image)  # checked before the engine is built
    with pytest.raises(ValueError, match="images must have shape"):
        SceneTextReader().read_batch(torch.zeros(3, 8, 8))
