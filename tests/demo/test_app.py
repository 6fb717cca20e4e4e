"""demo.app.DemoEngine: the request path of the Gradio demo (checks, policies, panels, comparison)
on a tiny model; bad input raises InputError and the next good request still works."""
import io
import re

import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the demo needs gradio (pip install -e '.[demo]')")

from arrcoc.assets import sample_image_path  # noqa: E402
from arrcoc.cli import InputError, load_image, run_allocation  # noqa: E402
from demo.app import POLICY_LABELS, DemoEngine, build_app  # noqa: E402
from tests.test_cli import _png_header  # noqa: E402


@pytest.fixture(scope="module")
def engine():
    from arrcoc.modeling import ARRCOCImageProcessor
    from tests.modeling.conftest import tiny_model
    m = tiny_model()
    return DemoEngine(m, ARRCOCImageProcessor.from_model_config(m.config))


def _tokens(md):
    m = re.search(r"\*\*(\d+) visual tokens\*\* \((\d+) global \+ (\d+) in regions\) · budget (\d+) · "
                  r"full detail (\d+)", md)
    return tuple(int(g) for g in m.groups())


def test_defaults_and_numbers(engine):
    assert engine.full_detail == 16 + 16 * 36 and engine.default_budget == 120
    res = engine.run(None, "What does the blue sign say?")
    view = res["views"][0]
    total, glob, regions, budget, full = _tokens(res["tokens"])
    assert (total, glob, regions, budget, full) == (view.total_tokens, 16, view.region_tokens, 120, 592)
    assert total <= budget
    assert [row[4] for row in res["table"]] == view.allocation.tolist() and len(res["table"]) == 16
    assert res["status"].startswith("Done: bundled sample scene, 640x480 px")
    for k in ("overlay", "mean", "epistemic_sd"):
        assert isinstance(res[k], Image.Image) and res[k].size[0] > 300
    assert res["comparison"] is None


def test_upload_policies_and_comparison(engine, tmp_path):
    p = tmp_path / "scene.jpg"
    Image.open(sample_image_path()).convert("RGB").resize((320, 240)).save(p)
    for label in ("uniform", "query-only"):  # every policy's numbers: tests/test_cli.py::test_policies
        res = engine.run(str(p), "Where is the stop sign?", "", 300, label, 5)
        v = res["views"][0]
        assert v.policy == label and v.total_tokens <= 300 and v.image.size == (320, 240)
        assert res["status"].startswith("Done: scene.jpg, 320x240 px")
    assert res["views"][0].allocation.tolist() == run_allocation(engine.model, engine.processor, v.image, v.question,
                                                                  300, "query", 5).allocation.tolist()
    assert set(POLICY_LABELS) == {"ARR-COC Thompson", "ARR-COC mean", "uniform", "random", "salience-only",
                                  "query-only"}
    res = engine.run(str(p), "Where is the stop sign?", "What does the chart show?", 300, "ARR-COC mean", 0)
    a, b = res["views"]
    assert a.question == "Where is the stop sign?" and b.question == "What does the chart show?"
    assert isinstance(res["comparison"], Image.Image)
    assert f"**Q1** {a.total_tokens} tokens, **Q2** {b.total_tokens} tokens" in res["comparison_text"]
    # Thompson draws (what the resample button shows) differ between seeds and repeat for the same seed
    img = load_image("sample")
    draw = lambda s: tuple(run_allocation(engine.model, engine.processor, img, "Where is the stop sign?", 300,  # noqa
                                          "thompson", s).allocation.tolist())
    assert len({draw(s) for s in range(5)}) > 1 and draw(2) == draw(2)


def test_bad_inputs_then_a_good_request(engine, tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("not an image")
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(_png_header(9000, 9000))
    buf = io.BytesIO()
    Image.open(sample_image_path()).save(buf, format="PNG")
    trunc = tmp_path / "cut.png"
    trunc.write_bytes(buf.getvalue()[:5000])
    cases = [
        ((str(txt), "q?"), "uploaded file: " + str(txt) + " is not an image file PIL can read"),
        ((str(bomb), "q?"), "is 9000x9000 = 81.0 megapixels, above the limit of 40 megapixels"),
        ((str(trunc), "q?"), "is truncated or corrupt"),
        ((None, "  "), "question is empty"),
        ((None, "q?", "", 19), "budget 19 is below 20 = the 16-token global view + the smallest region level of "
                               "4 tokens, so no region can be encoded"),
        ((None, "q?", "", 10), "budget 10 is below the global view's cost of 16 tokens"),
        ((None, "q?", "", 100, "oracle"), "policy must be one of"),
        ((None, "q?", "", 100, "ARR-COC mean", "abc"), "seed must be a whole number"),
    ]
    for args, expected in cases:
        with pytest.raises(InputError) as e:
            engine.run(*args)
        assert expected in str(e.value), (args, str(e.value))
    res = engine.run(None, "What does the blue sign say?", "", 120, "ARR-COC mean", 0)  # still works
    assert res["views"][0].total_tokens <= 120 and res["status"].startswith("Done:")


def test_truncation_note(engine):
    res = engine.run(None, "What does the blue sign say? " + "y" * 200)
    assert "**Note:** question is 229 bytes long but the query encoder reads at most 128" in res["status"]


def test_build_app(engine):
    import gradio as gr
    app = build_app(engine)
    assert isinstance(app, gr.Blocks)
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert {"upload", "question", "question2", "budget", "policy", "seed", "run-btn", "resample-btn", "status",
            "tokens", "overlay", "heatmap-mean", "heatmap-sd", "regions", "comparison"} <= ids


def test_cli_finds_the_demo():
    import demo.app
    from arrcoc.cli import _demo_module
    assert _demo_module() is demo.app
