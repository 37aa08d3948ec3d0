"""Large kernel outputs are advised to use transparent huge pages (csrc/memory.c):
the advice must leave any buffer usable and its contents intact, whatever its
alignment and size."""

from __future__ import annotations

import pytest
import torch

from gumbelkit import functional as F
from gumbelkit.kernels import _lib, ops

pytestmark = pytest.mark.skipif(_lib.library() is None, reason="fused kernels not built")


@pytest.mark.parametrize("offset,numel", [(0, 0), (1, 7), (3, 3 << 20), (0, 5 << 20)])
def test_advice_keeps_buffers_intact(offset, numel):
    storage = torch.arange(offset + numel + 1, dtype=torch.float32)
    view = storage[offset:offset + numel]
    _lib.library().gk_advise_huge_pages(view.data_ptr(), view.nbytes)
    assert torch.equal(storage, torch.arange(offset + numel + 1, dtype=torch.float32))
    view.fill_(2.0)
    assert storage[offset:offset + numel].eq(2.0).all()


def test_large_outputs_are_ordinary_tensors():
    out = ops._empty((1024, 2048), torch.float32)
    assert out.nbytes >= ops.HUGE_PAGE_OUTPUT_BYTES and out.is_contiguous()
    x = torch.randn(1024, 2048)
    y = F.gumbel_softmax(x, seed=3)
    torch.testing.assert_close(y.sum(-1), torch.ones(1024))
