"""Fixtures of the serving tests: the tiny random-weight model of tests/modeling, PNG bytes, and one
real tritonserver (side environment of arrcoc.serving.server) shared by the server tests."""
import io

import numpy as np
import pytest
import torch

from arrcoc.modeling import ARRCOCImageProcessor
from tests.modeling.conftest import tiny_model

QUESTION = "what is the red thing on the left?"


def png_bytes(seed: int, size=(96, 120)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    arr[:, : size[1] // 3, 0] = 255  # a red left third
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def tiny():
    model = tiny_model()
    return model, ARRCOCImageProcessor.from_model_config(model.config)


@pytest.fixture(scope="session")
def pipeline(tiny):
    from arrcoc.serving import ServingPipeline

    return ServingPipeline(*tiny)


@pytest.fixture
def one_thread():
    """The stages in Triton run with one torch thread; the in-process reference does too."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def triton(tiny, tmp_path_factory):
    """(server, repository) of the tiny model, cache threshold low enough that the second Thompson
    request of an image recomputes with more draws; exported with the TorchScript parts, which this
    Python-only server must leave out while serving the rest. Skips only when the side environment
    cannot be installed."""
    from arrcoc.serving import CacheConfig, ExportConfig, TritonServer, ensure_tritonserver, export_triton

    pytest.importorskip("tritonclient.grpc", reason="tritonclient missing: pip install 'arrcoc[serve]'")
    pytest.importorskip("tritonclient.http", reason="tritonclient missing: pip install 'arrcoc[serve]'")
    try:
        install = ensure_tritonserver()
    except RuntimeError as e:
        pytest.skip(f"tritonserver side environment unavailable: {e}")
    repo = export_triton(tmp_path_factory.mktemp("triton") / "repo", *tiny,
                         config=ExportConfig(cache=CacheConfig(threshold=1e-6, max_draws=32)), backend="torchscript")
    server = TritonServer(repo, install)
    server.start()
    try:
        server.wait_ready(timeout=240)
    except RuntimeError as e:
        server.stop()
        pytest.fail(str(e))
    yield server
    server.stop()
