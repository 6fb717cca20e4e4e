"""python -m eval.checkset: bad arguments fail with a one-line error before the model loads; a slow
end-to-end run in a fresh interpreter writes the JSON."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval.checkset import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv, match", [
    (["--budget", "10"], "at least the global thumbnail's 64 tokens"),
    (["--scenes", "0"], "num_scenes must be >= 1"),
    (["--budget", "640", "640"], "must not repeat"),
    (["--seed", "-1"], "seed must be >= 0"),
])
def test_bad_arguments_exit_2_with_a_named_error(argv, match, capsys, monkeypatch, tmp_path):
    import arrcoc.modeling as modeling

    def no_load(**kw):
        raise AssertionError("the model must not load for bad arguments")

    monkeypatch.setattr(modeling, "load_default_model", no_load)
    assert main(argv + ["--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and err.count("\n") == 1
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_end_to_end_in_a_fresh_interpreter(tmp_path):
    out = tmp_path / "cs.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "eval.checkset", "--scenes", "1", "--budget", "640",
                           "--modes", "deterministic", "--no-progress", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "hit@top" in proc.stdout and "bundled sample scene" in proc.stdout
    data = json.loads(out.read_text())
    assert {m["policy"] for m in data["metrics"]} >= {"arrcoc/deterministic", "top_k_salience"}
    assert len(data["bundled"]["rows"]) == 5 and data["scenes"][0]["questions"]


def test_dumps_is_json_with_one_record_a_line():
    from eval.checkset import dumps

    payload = {"metrics": [{"a": 1}], "records": [{"allocation": [0, 64]}, {"allocation": [400, 0]}],
               "scenes": [], "runtime_s": 1.5}
    text = dumps(payload)
    assert json.loads(text) == payload
    assert '  {"allocation": [0, 64]},\n' in text


def test_model_fingerprint_tells_weights_apart():
    import torch

    from eval.checkset import model_fingerprint

    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b.weight[0, 0] += 1e-6
    assert model_fingerprint(a) != model_fingerprint(b)
