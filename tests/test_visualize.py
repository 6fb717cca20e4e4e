"""arrcoc.visualize: AllocationView numbers and table, and what the figures actually draw."""
import numpy as np
import pytest
import torch
from PIL import Image

from arrcoc.modeling.regions import grid_boxes
from arrcoc.visualize import (AllocationView, compare_figure, figure_to_image, level_colours, overlay_figure,
                              panel_images, save_figure)

LEVELS = (0, 64, 100, 256, 400)


def _view(gen, question="What does the blue sign say?", alloc=None, size=(320, 240)):
    w, h = size
    img = Image.fromarray((torch.rand(h, w, 3, generator=gen) * 255).to(torch.uint8).numpy())
    if alloc is None:
        alloc = torch.tensor([0, 64, 100, 256, 400, 0, 0, 64, 0, 0, 0, 0, 100, 0, 0, 0])
    mean = torch.randn(16, generator=gen, dtype=torch.float64)
    epi = torch.rand(16, generator=gen, dtype=torch.float64) * 0.3
    return AllocationView(image=img, question=question, boxes=grid_boxes(h, w, 4)[0], allocation=alloc,
                          mean=mean, var=epi + 0.2, epistemic_var=epi, grid=4, levels=LEVELS, global_tokens=64,
                          budget=1100, policy="ARR-COC mean", seed=0, latency_s=0.25)


def test_numbers_and_table(gen):
    v = _view(gen)
    assert v.region_tokens == 984 and v.total_tokens == 1048
    assert v.full_detail == 64 + 16 * 400
    assert v.summary() == ("total 1048 visual tokens (64 global + 984 regions) / budget 1100 (95 %) / "
                           "full detail 6464 (16.2 %)")
    lines = str(v).splitlines()
    assert len(lines) == 18 and lines[-1] == v.summary()
    rows = [ln.split() for ln in lines[1:17]]
    assert [int(r[-1]) for r in rows] == v.allocation.tolist()
    np.testing.assert_allclose([float(r[2]) for r in rows], v.mean.numpy(), atol=5e-4)
    np.testing.assert_allclose([float(r[3]) for r in rows], (v.epistemic_var + 0.2).sqrt().numpy(), atol=5e-4)
    np.testing.assert_allclose([float(r[4]) for r in rows], v.epistemic_var.sqrt().numpy(), atol=5e-4)
    assert rows[5][1] == "(80,60,160,120)"  # region 5 = row 1, col 1 of a 320x240 image
    assert v.rows()[5]["row"] == 1 and v.rows()[5]["col"] == 1


def test_view_rejects_inconsistent_input(gen):
    v = _view(gen)
    kw = dict(image=v.image, question="q", boxes=v.boxes, allocation=v.allocation, mean=v.mean, var=v.var,
              epistemic_var=v.epistemic_var, grid=4, levels=LEVELS, global_tokens=64, budget=640)
    with pytest.raises(ValueError, match="boxes must have shape"):
        AllocationView(**{**kw, "boxes": v.boxes[:3]})
    with pytest.raises(ValueError, match=r"allocation holds \[7\]"):
        AllocationView(**{**kw, "allocation": torch.full((16,), 7)})
    with pytest.raises(ValueError, match="mean has 15 values"):
        AllocationView(**{**kw, "mean": v.mean[:15]})
    with pytest.raises(ValueError, match="var contains NaN"):
        AllocationView(**{**kw, "var": torch.full((16,), float("nan"))})


def test_level_colours_distinct():
    c = level_colours(LEVELS)
    assert list(c) == list(LEVELS) and len(set(c.values())) == 5
    assert c[0] == "#303030"


def _hex_rgb(h):
    return np.array([int(h[i:i + 2], 16) for i in (1, 3, 5)])


def test_overlay_figure_draws_levels_heatmaps_and_text(gen):
    v = _view(gen)
    fig = overlay_figure(v)
    overlay_ax, mean_ax, sd_ax = fig.axes[:3]
    # heatmaps hold exactly the region values on the grid, row-major, with the right colour limits
    np.testing.assert_allclose(mean_ax.images[0].get_array(), v.mean.reshape(4, 4).numpy())
    np.testing.assert_allclose(sd_ax.images[0].get_array(), v.epistemic_var.sqrt().reshape(4, 4).numpy())
    assert mean_ax.images[0].get_clim() == pytest.approx((float(v.mean.min()), float(v.mean.max())))
    assert sd_ax.images[0].get_clim()[0] == 0.0
    # tokens written on each region, the question as the title, totals underneath, a legend of levels
    written = sorted(t.get_text() for t in overlay_ax.texts)
    assert written == sorted(str(t) for t in v.allocation.tolist())
    assert fig._suptitle.get_text() == "Q: What does the blue sign say?"
    assert any(v.summary() in t.get_text() for t in fig.texts)
    legend = [t.get_text() for t in overlay_ax.get_legend().get_texts()]
    assert legend == ["0 (skipped)", "64", "100", "256", "400"]
    # every level's colour is really on the rendered picture (the region outlines)
    px = np.asarray(figure_to_image(fig)).reshape(-1, 3).astype(int)
    for lv, colour in level_colours(LEVELS).items():
        if lv:
            assert (np.abs(px - _hex_rgb(colour)).sum(1) < 6).sum() > 200, lv


def test_compare_figure_shares_colour_scales(gen):
    a = _view(gen, "What does the blue sign say?")
    b = _view(gen, "What does the stop sign say?", alloc=torch.tensor([400] + [0] * 15))
    fig = compare_figure(a, b)
    heat = [ax for ax in fig.axes if ax.images and ax.images[0].get_array().shape == (4, 4)]
    assert len(heat) == 4  # mean + sd for each question
    lo = min(float(a.mean.min()), float(b.mean.min()))
    hi = max(float(a.mean.max()), float(b.mean.max()))
    assert heat[0].images[0].get_clim() == pytest.approx((lo, hi)) == heat[2].images[0].get_clim()
    assert heat[1].images[0].get_clim() == heat[3].images[0].get_clim()
    titles = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "Q: What does the blue sign say?" in titles and "Q: What does the stop sign say?" in titles
    with pytest.raises(ValueError, match="same image"):
        compare_figure(a, _view(gen, size=(160, 160)))


def test_panel_images_and_save(gen, tmp_path):
    v = _view(gen)
    panels = panel_images(v)
    assert set(panels) == {"overlay", "mean", "epistemic_sd"}
    for im in panels.values():
        assert im.mode == "RGB" and im.size[0] > 400
    p = save_figure(overlay_figure(v), tmp_path / "o.png")
    with Image.open(p) as im:
        assert im.format == "PNG" and im.size == (1600, 560)


def test_small_values_keep_two_significant_digits(gen):
    v = _view(gen)
    v.epistemic_var = torch.full((16,), 4.9e-7, dtype=torch.float64)  # sd 7.0e-4: an untrained head's size
    sd_ax = overlay_figure(v).axes[2]
    assert {t.get_text() for t in sd_ax.texts} == {"0.00070"}
