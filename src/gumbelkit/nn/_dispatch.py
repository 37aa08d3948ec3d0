"""Sparse dispatch: run each module only on the rows that chose it."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def groups(index: torch.Tensor, n_groups: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``(g, positions)`` for every group ``g`` in ``[0, n_groups)`` that the 1-D
    ``index`` names: the positions of its entries, in increasing order (a stable
    sort of ``index``). Reads the group sizes back to the host once, to slice.
    """
    order = torch.argsort(index, stable=True)
    start = 0
    for g, count in enumerate(torch.bincount(index, minlength=n_groups).tolist()):
        if count:
            yield g, order[start:start + count]
            start += count
