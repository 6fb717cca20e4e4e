"""``arrcoc train``: --help, a tiny run on a parquet file with a saved tiny encoder, one-line errors."""
import contextlib
import io
import json

import pytest

from arrcoc.cli import main

from .conftest import scene_dataset, tiny_model


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def test_help_lists_the_options():
    code, out, _ = _run(["train", "--help"])
    assert code == 0
    for flag in ("--num-steps", "--grad-accum", "--resume-from", "--allocation-mix", "--target-column",
                 "--mixed-precision", "--checkpoint", "accelerate launch"):
        assert flag in out


def test_tiny_run_then_resume(tmp_path):
    pytest.importorskip("datasets")
    enc = tmp_path / "encoder"
    tiny_model().save_pretrained(enc)
    scene_dataset(12).to_parquet(str(tmp_path / "train.parquet"))
    scene_dataset(4, start=100).to_parquet(str(tmp_path / "val.parquet"))
    out_dir = tmp_path / "run"
    argv = ["train", str(tmp_path / "train.parquet"), "--eval-data", str(tmp_path / "val.parquet"),
            "--target-column", "target", "--checkpoint", str(enc), "--output-dir", str(out_dir),
            "--num-steps", "2", "--batch-size", "4", "--no-progress", "--allocation-mix", "arrcoc=1,full=1"]
    code, out, err = _run(argv)
    assert code == 0, err
    assert "training data: 8 rows read, 8 used, 0 skipped" in out  # 2 steps x 4 rows
    assert "evaluation data: 4 rows read, 4 used" in out
    metrics = json.loads(out.split("metrics: ", 1)[1].splitlines()[0])
    assert metrics["used"] == 4 and metrics["accuracy"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert (out_dir / "checkpoints" / "step_00000002" / "encoder" / "config.json").is_file()
    hist = json.loads((out_dir / "history.json").read_text())
    assert [h["step"] for h in hist["history"]] == [1, 2, 2]
    # a longer run resumed from the last checkpoint continues at step 3
    code, out, err = _run([a if a != "2" else "3" for a in argv] + ["--resume-from", "latest"])
    assert code == 0, err
    hist = json.loads((out_dir / "history.json").read_text())
    assert [h["step"] for h in hist["history"] if "eval" not in h] == [1, 2, 3]


@pytest.mark.parametrize("extra, needle", [
    (["--num-steps", "0"], "num_steps"), (["--allocation-mix", "best=1"], "allocation_mix"),
    (["--allocation-mix", "arrcoc=x"], "allocation-mix"), (["--train-parts", "llm"], "train_parts"),
    (["--lr", "-1"], "learning_rate"), (["--scheduler", "linear"], "scheduler"),
])
def test_bad_arguments_give_one_error_line(tmp_path, extra, needle):
    code, _, err = _run(["train", str(tmp_path / "missing.parquet"), "--no-progress"] + extra)
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and needle in lines[0], err


def test_missing_data_file_is_one_error_line(tmp_path):
    code, _, err = _run(["train", str(tmp_path / "missing.parquet"), "--no-progress"])
    assert code == 2 and "name_or_path" in err and len(err.strip().splitlines()) == 1
