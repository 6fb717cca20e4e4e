"""The toolkit's tests work on small tensors, where OpenMP thread wake-ups cost more than the work
itself (and a shared 2-core CI box makes that worse): run them single-threaded."""
import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
