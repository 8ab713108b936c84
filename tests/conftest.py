"""Shared fixtures: the torch device under test (CPU always, CUDA when torch sees one)."""

from __future__ import annotations

import pytest
import torch

# The tests run tiny tensors: one intra-op thread avoids thread hand-off overhead that makes each
# small op ~10x slower on a shared 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> torch.device:
    """Parametrizes a test over CPU and CUDA; the CUDA case skips where no CUDA device is visible."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device(request.param)


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's name, so every test draws its own fixed numbers."""
    import zlib

    import numpy as np

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
