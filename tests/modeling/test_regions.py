"""Region geometry and crop resampling."""
import pytest
import torch
import torch.nn.functional as F

from arrcoc.modeling.regions import crop_resize, grid_boxes, grid_edges, level_side, sincos_2d, token_centres


def test_grid_tiles_image_exactly():
    assert grid_edges(10, 4) == [0, 2, 5, 8, 10]
    boxes = grid_boxes(10, 13, 4, batch=2)
    assert boxes.shape == (2, 16, 4)
    area = ((boxes[0, :, 2] - boxes[0, :, 0]) * (boxes[0, :, 3] - boxes[0, :, 1])).sum()
    assert area == 130  # cells tile the image with no gap or overlap
    assert boxes[0, 0].tolist() == [0, 0, 3, 2] and boxes[0, -1].tolist() == [10, 8, 13, 10]
    with pytest.raises(ValueError):
        grid_edges(3, 4)


def test_level_side():
    assert [level_side(v) for v in (64, 100, 256, 400)] == [8, 10, 16, 20]
    for bad in (0, 10, -4):
        with pytest.raises(ValueError, match="perfect square"):
            level_side(bad)


def test_crop_resize_matches_manual(gen):
    img = torch.randn(2, 3, 20, 24, generator=gen)
    boxes = torch.tensor([[0.0, 0, 12, 10], [12, 10, 24, 20]])
    out = crop_resize(img, torch.tensor([1, 0]), boxes, 8)
    torch.testing.assert_close(out[0], F.interpolate(img[1:2, :, 0:10, 0:12], size=(8, 8), mode="bilinear",
                                                     antialias=True)[0])
    torch.testing.assert_close(out[1], F.interpolate(img[0:1, :, 10:20, 12:24], size=(8, 8), mode="bilinear",
                                                     antialias=True)[0])
    assert crop_resize(img, torch.tensor([], dtype=torch.long), boxes[:0], 8).shape == (0, 3, 8, 8)


def test_token_centres_and_sincos():
    c = token_centres(torch.tensor([[0.0, 0, 100, 50]]), 2, 50, 100)
    torch.testing.assert_close(c[0], torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]))
    e = sincos_2d(c, 16)
    assert e.shape == (1, 4, 16) and torch.isfinite(e).all()
    assert torch.cdist(e[0], e[0]).add(torch.eye(4) * 10).min() > 0.1  # distinct positions, distinct codes
