"""The lmms-eval model plugin, run through lmms-eval's own command line (``lmms_eval.cli.dispatch.main``,
entered through ``python -m arrcoc.adapters.lmms_eval_plugin`` for the torchvision fix) on a tiny local task with a
tiny random Qwen2-VL saved to disk (its own processor built offline): the results file is written,
and the LLM received the budgeted number of visual tokens."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from arrcoc.adapters.lmms_eval_plugin import parse_budget

ROOT = Path(__file__).resolve().parents[2]


def test_parse_budget():
    assert parse_budget("0.25", 1088) == 272
    assert parse_budget(1, 1088) == 1  # one token, not 100 %
    assert parse_budget("1.0", 1088) == 1088
    assert parse_budget("300", 1088) == 300 and parse_budget(None, 1088) is None
    for bad in ("-3", "abc", 0, "12.5", float("nan"), True):
        with pytest.raises(ValueError, match="budget"):
            parse_budget(bad, 1088)


def test_manifest_is_registered_as_an_entry_point():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points().select(group="lmms_eval.models") if ep.name == "arrcoc"]
    assert eps and eps[0].value == "arrcoc.adapters.lmms_eval_plugin:manifest"


TASK = """\
task: arrcoc_tiny
dataset_path: parquet
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 4
  until: ["\\n"]
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 0.0
"""

UTILS = """\
def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]
"""


def test_lmms_eval_cli_runs_a_local_task(tmp_path):
    pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install -e '.[lmms]'); "
                                            "`make test` installs it where PyPI is reachable")
    import numpy as np
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    import arrcoc.backbones  # noqa: F401  (torchvision fix before transformers)
    from tests.adapters.tiny_qwen import tiny_processor, tiny_vlm

    model_dir = tmp_path / "model"
    tiny_vlm("qwen2_vl").save_pretrained(model_dir)
    tiny_processor("qwen2_vl").save_pretrained(model_dir)
    rng = np.random.default_rng(0)
    images = [PILImage.fromarray((rng.random((120, 160, 3)) * 255).astype("uint8")) for _ in range(3)]
    ds = Dataset.from_dict({"image": images, "question": ["What colour is the cat?", "What does the sign say?",
                                                          "Is there a house?"], "answer": ["red", "stop", "yes"]},
                           features=Features({"image": Image(), "question": Value("string"), "answer": Value("string")}))
    data = tmp_path / "test.parquet"
    ds.to_parquet(str(data))
    task_dir = tmp_path / "tasks" / "arrcoc_tiny"
    task_dir.mkdir(parents=True)
    (task_dir / "arrcoc_tiny.yaml").write_text(TASK.format(data=data))
    (task_dir / "utils.py").write_text(UTILS)
    out_dir = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "arrcoc.adapters.lmms_eval_plugin", "--model", "arrcoc",
           "--model_args", f"pretrained={model_dir},policy=mean,budget=0.25",
           "--tasks", "arrcoc_tiny", "--include_path", str(tmp_path / "tasks"),
           "--batch_size", "1", "--output_path", str(out_dir), "--log_samples"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [p for p in out_dir.rglob("*results*.json")]
    assert results, f"no results file under {out_dir}: {list(out_dir.rglob('*'))}"
    res = json.loads(results[0].read_text())
    metrics = res["results"]["arrcoc_tiny"]
    assert "exact_match,none" in metrics and 0.0 <= metrics["exact_match,none"] <= 1.0
    assert res["n-samples"]["arrcoc_tiny"]["effective"] == 3
    assert "pretrained=" in json.dumps(res["config"]) and res["config"]["model"] == "arrcoc"
    samples = [p for p in out_dir.rglob("*samples*.jsonl")]
    assert samples and len(samples[0].read_text().strip().splitlines()) == 3

    # in process, the same class lmms-eval resolved: the LLM gets the budgeted tokens; "full" is the
    # unmodified VLM's own count; loglikelihood gives finite log-probabilities
    from types import SimpleNamespace

    from lmms_eval.models import get_model

    cls = get_model("arrcoc")
    docs = {"t": {"test": ds}}
    reqs = [SimpleNamespace(args=(ds[i]["question"], {"max_new_tokens": 2}, lambda d: [d["image"]], i, "t", "test"))
            for i in range(2)]
    m = cls(pretrained=str(model_dir), policy="mean", budget="0.25")
    m.task_dict = docs
    assert len(m.generate_until(reqs)) == 2
    assert m.budget == round(0.25 * m.full_tokens) and all(0 < n <= m.budget for n in m.visual_tokens)
    full = cls(pretrained=str(model_dir), policy="full")
    full.task_dict = docs
    full.generate_until(reqs[:1])
    # the fraction is of the unmodified VLM's own count for an image at the encoder's image size
    # (the tiny processor: 8-px merged tokens, so (side / 8)^2, capped by its max_pixels at 4096)
    own = min((m.adapter.encoder.config.image_size // 8) ** 2, 4096)
    assert m.full_tokens == own and m.budget == round(0.25 * own)
    assert full.visual_tokens[0] == (120 // 8) * (160 // 8)  # the 120 x 160 image at its own resolution
    ll = m.loglikelihood([SimpleNamespace(args=(ds[0]["question"], "red", lambda d: [d["image"]], 0, "t", "test"))])
    assert len(ll) == 1 and ll[0][0] < 0 and isinstance(ll[0][1], bool)
