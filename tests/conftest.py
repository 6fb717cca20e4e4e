"""Shared pytest setup: `slow` tests run only with --runslow, `gpu` tests only where CUDA exists."""
import pytest
import torch

import arrcoc.backbones  # noqa: F401  (applies the torchvision compatibility fix before transformers is imported)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    skip_gpu = pytest.mark.skip(reason="gpu: no CUDA device available")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def gen():
    """A seeded CPU torch.Generator; tests pass it explicitly to anything random."""
    g = torch.Generator().manual_seed(20261124)
    return g


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    import numpy as np
    np.random.seed(0)
