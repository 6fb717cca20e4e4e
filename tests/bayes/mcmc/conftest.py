"""MCMC tests run on tiny tensors: one intra-op thread avoids OpenMP start-up costs that dominate
such ops on a busy 2-core machine (e.g. log_sigmoid on 4 numbers: ~3 us with 1 thread, ms with 2)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
