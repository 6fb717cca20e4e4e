"""export-triton --backend torchscript|onnx: the exported parts, loaded back on their own, give the
eager outputs; their configs name the PyTorch / ONNX Runtime platforms; the Python-only server skips them."""
import pytest
import torch

from arrcoc.serving import export_triton
from arrcoc.serving.export_parts import PixelScorers, export_parts
from arrcoc.serving.server import servable_models
from arrcoc.serving.traced import backbone_sizes

PARTS = ["arrcoc_backbone_8px", "arrcoc_backbone_16px", "arrcoc_backbone_24px", "arrcoc_pixel_scorers"]


def _eager_tokens(model, x):
    with torch.no_grad():
        return model.backbone._features(x)[0]  # (N, h*w, D)


@pytest.fixture(scope="module")
def ts_repo(tiny, tmp_path_factory):
    return export_triton(tmp_path_factory.mktemp("parts") / "repo", *tiny, backend="torchscript")


def test_torchscript_parts_equal_eager(tiny, ts_repo, one_thread):
    model = tiny[0]
    assert backbone_sizes(model) == [8, 16, 24]  # levels 4/16/36 -> 2/4/6 patches of 4 px; glimpse 4x4
    g = torch.Generator().manual_seed(7)
    for size in (8, 16, 24):
        cfg = (ts_repo / f"arrcoc_backbone_{size}px" / "config.pbtxt").read_text()
        n = (size // 4) ** 2
        assert 'platform: "pytorch_libtorch"' in cfg and "max_batch_size: 8" in cfg
        assert f'name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, {size}, {size} ]' in cfg
        assert f'name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ {n}, 32 ]' in cfg
        graph = torch.jit.load(str(ts_repo / f"arrcoc_backbone_{size}px" / "1" / "model.pt"))
        x = torch.randn(3, 3, size, size, generator=g)  # another batch size than the trace's
        with torch.no_grad():
            got = graph(x)
        torch.testing.assert_close(got, _eager_tokens(model, x), rtol=1e-4, atol=1e-5)


def test_torchscript_pixel_scorers_equal_the_allocators_channels(tiny, ts_repo, one_thread):
    model = tiny[0]
    R, s = model.config.num_regions, model.config.scorer_pixels
    cfg = (ts_repo / "arrcoc_pixel_scorers" / "config.pbtxt").read_text()
    assert f"dims: [ {R}, 3, {s}, {s} ]" in cfg and f"dims: [ {R}, 2 ]" in cfg
    graph = torch.jit.load(str(ts_repo / "arrcoc_pixel_scorers" / "1" / "model.pt"))
    g = torch.Generator().manual_seed(3)
    crops = torch.rand(3, R, 3, s, s, generator=g)  # (3, R, 3, s, s)
    crops[1, :5] = 0.5  # flat regions: one grey level (a soft histogram splits it over two bins)
    feats = torch.randn(3, R, model.hidden_size, generator=g)
    with torch.no_grad():
        got = graph(crops)  # (3, R, 2)
        ent = model.allocator.information(feats, crops)["information_pixel"]
        spec = model.allocator.salience(feats, crops)["salience_spectral"]
    torch.testing.assert_close(got[..., 0], ent, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[..., 1], spec, rtol=1e-4, atol=1e-6)
    flat = got[1, :5, 0]
    assert torch.allclose(flat, flat[0].expand(5)) and float(flat.max()) < 0.5 * float(got[0, :, 0].min())


def test_python_only_server_loads_the_stages_and_skips_the_parts(ts_repo, tmp_path):
    (tmp_path / "python").mkdir()
    load, skip = servable_models(ts_repo, tmp_path)
    assert skip == sorted(PARTS)
    assert load == ["arrcoc", "arrcoc_encode", "arrcoc_predictive", "arrcoc_preprocess", "arrcoc_relevance"]
    for name in ("pytorch", "onnxruntime"):
        (tmp_path / name).mkdir()
    assert servable_models(ts_repo, tmp_path)[1] == []


def test_onnx_backbone_part_equals_eager(tiny, tmp_path, one_thread):
    ort = pytest.importorskip("onnxruntime", reason="pip install 'arrcoc[serve]' for the ONNX export")
    pytest.importorskip("onnxscript", reason="pip install 'arrcoc[serve]' for the ONNX export")
    import numpy as np

    model = tiny[0]
    written = export_parts(tmp_path / "repo", model, "onnx", sizes=[16], max_batch_size=4)
    assert [p.name for p in written] == ["arrcoc_backbone_16px"]  # no ONNX pixel scorers (weighted bincount)
    cfg = (written[0] / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in cfg and "max_batch_size: 4" in cfg
    assert 'name: "pixels" data_type: TYPE_FP32 dims: [ 3, 16, 16 ]' in cfg
    assert 'name: "tokens" data_type: TYPE_FP32 dims: [ 16, 32 ]' in cfg
    sess = ort.InferenceSession(str(written[0] / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(11))  # batch 5: dynamic
    got = sess.run(["tokens"], {"pixels": x.numpy()})[0]
    np.testing.assert_allclose(got, _eager_tokens(model, x).numpy(), rtol=1e-4, atol=1e-5)


def test_bad_part_arguments(tiny, tmp_path):
    with pytest.raises(ValueError, match="backend"):
        export_triton(tmp_path / "r", *tiny, backend="tensorrt")
    with pytest.raises(ValueError, match="sizes"):
        export_parts(tmp_path / "r", tiny[0], "torchscript", sizes=[20])
    with pytest.raises(TypeError, match="allocator"):
        PixelScorers(tiny[0])


def test_cli_takes_the_backend():
    from arrcoc.cli import build_parser

    assert build_parser().parse_args(["export-triton", "--out", "x", "--backend", "onnx"]).backend == "onnx"
    assert build_parser().parse_args(["export-triton", "--out", "x"]).backend == "python"


@pytest.mark.slow
def test_default_model_parts_onnx_and_torchscript(tmp_path):
    """The pretrained default (EfficientNet-Lite0, 'same' padding, BatchNorm) at every crop size."""
    pytest.importorskip("onnxruntime")
    from arrcoc.cli import main

    for backend in ("torchscript", "onnx"):
        assert main(["export-triton", "--out", str(tmp_path / backend), "--backend", backend]) == 0
        assert sorted(p.name for p in (tmp_path / backend).glob("arrcoc_backbone_*px")) == [
            "arrcoc_backbone_256px", "arrcoc_backbone_320px", "arrcoc_backbone_512px", "arrcoc_backbone_640px"]
