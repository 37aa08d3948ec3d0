"""``no_host_reads``: a context in which every host read of a tensor's data fails."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

# every way Python code reads tensor data on the host
HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__")


@contextlib.contextmanager
def no_host_reads() -> Iterator[None]:
    """Make every host read of a tensor an ``AssertionError`` naming it."""
    saved = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def forbidden(name):
        def read(self, *args, **kwargs):
            raise AssertionError(f"host read: Tensor.{name}")
        return read

    try:
        for name in HOST_READS:
            setattr(torch.Tensor, name, forbidden(name))
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)
