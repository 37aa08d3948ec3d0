import pytest
import torch


@pytest.fixture
def one_thread():
    """The pure-PyTorch Philox path is fastest single-threaded on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
