"""Issue 14 findings in arrcoc.modeling's region geometry and image processor: non-integer or negative
grids, sizes, sides and dims are clear errors naming the argument (never torch's own errors or inf)."""
import math

import pytest
import torch

from arrcoc.modeling import ARRCOCImageProcessor, grid_boxes
from arrcoc.modeling.regions import crop_resize, grid_edges, level_side, sincos_2d, token_centres

BAD_COUNT = [2.5, math.inf, math.nan, "2", None, True, -181, 0]


@pytest.mark.parametrize("bad", BAD_COUNT)
def test_grid_of_boxes_and_edges(bad):
    with pytest.raises((TypeError, ValueError), match="grid"):
        grid_boxes(64, 64, bad)
    with pytest.raises((TypeError, ValueError), match="grid"):
        grid_edges(64, bad)


@pytest.mark.parametrize("bad", BAD_COUNT)
def test_crop_size_token_side_and_embedding_dim(bad):
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    boxes = grid_boxes(64, 64, 2)[0]  # (4, 4)
    with pytest.raises((TypeError, ValueError), match="size"):
        crop_resize(images, torch.zeros(4, dtype=torch.long), boxes, bad)
    with pytest.raises((TypeError, ValueError), match="side"):
        token_centres(boxes, bad, 64, 64)
    with pytest.raises((TypeError, ValueError), match="dim"):
        sincos_2d(torch.rand(4, 2), bad)


def test_tiny_positive_side_is_not_an_int():  # 2.2e-313 used to give inf centres
    with pytest.raises(TypeError, match="side"):
        token_centres(grid_boxes(64, 64, 2)[0], 2.2250738585e-313, 64, 64)


@pytest.mark.parametrize("bad", [math.inf, 64.5, "64", None])
def test_level_side(bad):
    with pytest.raises((TypeError, ValueError), match="level"):
        level_side(bad)
    assert level_side(64) == 8 and level_side(64.0) == 8


def test_whole_numbers_are_accepted_and_give_the_int_results():
    assert torch.equal(grid_boxes(64, 64, 2.0), grid_boxes(64, 64, 2))
    assert torch.equal(sincos_2d(torch.rand(3, 2, generator=torch.Generator().manual_seed(1)), 8.0),
                       sincos_2d(torch.rand(3, 2, generator=torch.Generator().manual_seed(1)), 8))


@pytest.mark.parametrize("arg,bad", [("size", math.inf), ("size", 64.5), ("grid", 2.5), ("min_size", -1),
                                     ("max_pixels", "big"), ("image_std", (0.5, 0.0, 0.5)), ("image_mean", (0.5,))])
def test_image_processor_settings(arg, bad):
    with pytest.raises((TypeError, ValueError), match=arg):
        ARRCOCImageProcessor(**{arg: bad})
