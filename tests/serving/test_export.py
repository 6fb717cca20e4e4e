"""export_triton writes every stage, its config and the ensemble; the committed example is current."""
import json
from pathlib import Path

import pytest

from arrcoc.serving import ENSEMBLE, STAGES, ExportConfig, export_triton

ROOT = Path(__file__).resolve().parents[2]


def test_repository_layout(tiny, tmp_path):
    repo = export_triton(tmp_path / "repo", *tiny, config=ExportConfig(max_batch_size=4, instances=2))
    for stage in STAGES:
        cfg = (repo / stage / "config.pbtxt").read_text()
        assert f'name: "{stage}"' in cfg and 'backend: "python"' in cfg and "max_batch_size: 4" in cfg
        assert "dynamic_batching" in cfg and "count: 2" in cfg
        assert (repo / stage / "1" / "model.py").is_file()
        settings = json.loads((repo / stage / "1" / "arrcoc.json").read_text())
        assert settings["model"]["config"]["grid"] == 4 and settings["processor"]["size"] == 128
    ens = (repo / ENSEMBLE / "config.pbtxt").read_text()
    assert 'platform: "ensemble"' in ens and (repo / ENSEMBLE / "1").is_dir()
    assert 'name: "seed" data_type: TYPE_INT64 dims: [ 1 ] optional: true' in ens
    rel = (repo / "arrcoc_relevance" / "config.pbtxt").read_text()
    assert 'name: "global_tokens" data_type: TYPE_FP32 dims: [ 16, 32 ]' in rel  # tiny: 16 global tokens, D 32


def test_bad_export_arguments(tiny, tmp_path):
    with pytest.raises(ValueError, match="checkpoint"):
        export_triton(tmp_path / "r", *tiny, checkpoint=tmp_path)
    with pytest.raises(TypeError, match="processor"):
        export_triton(tmp_path / "r", tiny[0], processor=3)


@pytest.mark.slow
def test_committed_example_is_what_export_writes(tmp_path):
    from arrcoc.modeling import load_default_model

    repo = export_triton(tmp_path / "example", *load_default_model())
    for path in sorted((ROOT / "triton_repo" / "example").rglob("*")):
        if path.is_file() and path.suffix in (".pbtxt", ".json"):
            rel = path.relative_to(ROOT / "triton_repo" / "example")
            assert (repo / rel).read_text() == path.read_text(), rel
