from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Some tests pin torch to one thread; results of some CPU kernels depend on the thread
    count, so no test may leak its setting into the next."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
