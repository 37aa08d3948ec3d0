"""The Triton kernel of ``perturbed_top_k`` against the CPU path (the PyTorch reference).

Run by ``test_triton_sparse.py`` in a subprocess with ``TRITON_INTERPRET=1`` and
``GUMBELKIT_BACKEND=triton`` (both must be set before Triton is imported), so that
the op on CPU tensors runs the Triton kernel in Triton's interpreter; switching
``ops._TRITON_ON_CPU`` off gives the CPU kernel (the reference) in the same
process. ``BLOCK`` is made small so that rows of a few dozen columns take several
blocks (and, in ``check_split``, several segments), and every buffer the launcher
allocates is poisoned (NaN, or -7 for integers) first. Prints one line per
mismatch and exits 1 if there is any.

Indices and noise must be bit-identical, and ``sparse_gumbel_softmax`` must give
the same indices and weights on both routes.
"""

from __future__ import annotations

import os
import sys

import torch

import gumbelkit
from gumbelkit.kernels import ops, triton_sparse

INF = float("inf")
TOP_K = torch.ops.gumbelkit.perturbed_top_k
# the block size of the checks: rows of a few dozen columns take several blocks
BLOCK = 32
failures: list[str] = []


def poisoned(shape, dtype, device="cpu"):
    fill = float("nan") if dtype.is_floating_point else -7
    return torch.full(shape, fill, dtype=dtype, device=device)


def on(backend: str, fn, *args, **kwargs):
    """fn(*args) on the CPU kernel ("cpu") or the Triton kernel ("triton")."""
    ops._TRITON_ON_CPU = backend == "triton"
    try:
        return fn(*args, **kwargs)
    finally:
        ops._TRITON_ON_CPU = True


def same(a, b, what: str) -> None:
    if not (a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)):
        failures.append(f"{what}: differ\n  triton {a.tolist()}\n  cpu    {b.tolist()}")


def compare(x, seeds, keys, k, what: str):
    got = on("triton", TOP_K, x, seeds, keys, k)
    ref = on("cpu", TOP_K, x, seeds, keys, k)
    same(got[0], ref[0], f"{what} indices")
    same(got[1], ref[1], f"{what} noise")
    return got


def logits(rows: int, cols: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Normal logits (scale 3) in non-contiguous columns (every second of a wider
    tensor): row 0 with a masked entry and a block far below the rest (its noise is
    skipped once the search passes above it), row 1 with fewer finite entries than
    most k."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, 2 * cols, generator=g, dtype=torch.float64) * 3).to(dtype)[:, ::2]
    x[0, 1] = -INF
    if rows > 1:
        x[1, :] = -INF
        x[1, [3, cols - 2]] = torch.tensor([0.5, -1.0], dtype=dtype)
    if cols >= 2 * BLOCK:
        x[0, BLOCK:2 * BLOCK] = -100.0
    return x


def seeds_and_keys(rows: int, form: str) -> tuple[torch.Tensor, torch.Tensor]:
    if form == "scalar":
        return torch.tensor([2**63 - 5], dtype=torch.int64), torch.empty(0, dtype=torch.int64)
    seeds = torch.arange(rows, dtype=torch.int64) * 7919 - 2**62
    return seeds, torch.arange(rows, dtype=torch.int64) * -13 + 5


def check_dtypes_and_k() -> None:
    """Every dtype the op reads, k from 1 to V."""
    cases = {torch.float32: (1, 7, 70), torch.bfloat16: (9,), torch.float16: (5,),
             torch.float64: (1, 70)}
    seeds, keys = seeds_and_keys(2, "per row")
    for dtype, ks in cases.items():
        x = logits(2, 70, dtype, 70)
        for k in ks:
            compare(x, seeds, keys, k, f"{dtype} 2x70 k={k}")


def check_layouts() -> None:
    """Transposed storage (a column stride of rows), one column, no rows."""
    seeds, keys = seeds_and_keys(3, "per row")
    x = (torch.randn(40, 3, generator=torch.Generator().manual_seed(3)) * 3).t()
    x[0, 5] = -INF
    compare(x, seeds, keys, 4, "transposed 3x40 k=4")
    compare(torch.randn(2, 1), seeds[:2], keys[:2], 1, "2x1 k=1")
    for dtype in (torch.float32, torch.float64):
        index, noise = on("triton", TOP_K, torch.zeros(0, 7, dtype=dtype), seeds[:1],
                          torch.empty(0, dtype=torch.int64), 3)
        if index.shape != (0, 3) or noise.shape != (0, 3) or noise.dtype != dtype:
            failures.append(f"empty batch {dtype}: {index.shape} {noise.shape} {noise.dtype}")


def check_ties() -> None:
    """Ties at the k-th value take the lowest columns: -inf logits in rows with fewer
    than k finite ones (across blocks), and equal huge logits (x + G rounds to x)."""
    seeds, keys = seeds_and_keys(3, "per row")
    x = torch.full((3, 50), -INF)
    x[0, [40, 45]] = 1.0
    x[1, [2, 20, 35, 49]] = 1e30
    x[1, 10] = 2e30
    x[2, 49] = -3.0
    for k in (3, 20):
        got = compare(x, seeds, keys, k, f"ties k={k}")
        expected = sorted([40, 45] + [c for c in range(50) if c not in (40, 45)][:k - 2])
        if got[0][0].tolist() != expected:
            failures.append(f"ties k={k} row 0: {got[0][0].tolist()} != {expected}")
        if k == 3 and got[0][1].tolist() != [2, 10, 20]:
            failures.append(f"huge ties: {got[0][1].tolist()} != [2, 10, 20]")
    wide = torch.full((1, 40), 1e300, dtype=torch.float64)
    compare(wide, seeds[:1], keys[:1], 11, "float64 all tied k=11")


def check_default_block() -> None:
    """The block size the launcher uses, with a row longer than one block."""
    triton_sparse.BLOCK = 512
    seeds, keys = seeds_and_keys(1, "per row")
    compare(logits(1, 700, torch.float32, 8), seeds, keys, 17, "BLOCK 512, 1x700 k=17")
    triton_sparse.BLOCK = BLOCK


def check_split() -> None:
    """Rows split into segments (the block and split thresholds lowered so that 100
    columns take 4 segments of 2 blocks): the same bits, with ties (equal huge values,
    masked columns in a row with fewer than k finite ones) across segments, k up to V,
    both compute dtypes, both seed forms."""
    triton_sparse.BLOCK = 16
    triton_sparse.SPLIT_MIN_COLS = 32
    triton_sparse.SEGMENT_COLS = 16
    seeds, keys = seeds_and_keys(2, "per row")
    x = logits(2, 100, torch.float32, 100)
    x[1, [5, 40, 70, 99]] = 9.0e30  # row 1: 6 finite, 4 equal in 3 segments
    segments = triton_sparse._segments(2, 100)[0]
    if segments != 4:
        failures.append(f"split: {segments} segments")
    for k in (3, 40, 100):
        got = compare(x, seeds, keys, k, f"split float32 2x100 k={k}")
        if k == 3 and got[0][1].tolist() != [5, 40, 70]:
            failures.append(f"split ties: {got[0][1].tolist()} != [5, 40, 70]")
    seeds, keys = seeds_and_keys(1, "scalar")
    compare(logits(1, 100, torch.float64, 101), seeds, keys, 7, "split float64 1x100 k=7")
    triton_sparse.SPLIT_MIN_COLS = 10**9
    triton_sparse.BLOCK = BLOCK


def check_sparse() -> None:
    """sparse_gumbel_softmax through the op on both routes: the same indices and the
    same weights, bit for bit (the O(k) softmax runs the same torch ops on the same
    logits and noise)."""
    x = logits(4, 45, torch.float64, 11).reshape(2, 2, 45)
    for dtype, hard, seed in ((torch.float32, False, 9),
                              (torch.float64, True, torch.tensor([[3], [4]]))):
        y = x.to(dtype)
        got = on("triton", gumbelkit.sparse_gumbel_softmax, y, 5, 0.5, hard, seed=seed)
        ref = on("cpu", gumbelkit.sparse_gumbel_softmax, y, 5, 0.5, hard, seed=seed)
        what = f"sparse {dtype} hard={hard}"
        same(got[0], ref[0], f"{what} indices")
        same(got[1], ref[1], f"{what} weights")


def main() -> int:
    assert os.environ.get("TRITON_INTERPRET") == "1" and ops._TRITON_ON_CPU
    triton_sparse.BLOCK = BLOCK
    triton_sparse.SPLIT_MIN_COLS = 10**9  # check_split splits; the other checks do not
    triton_sparse._empty = poisoned
    for check_part in (check_dtypes_and_k, check_layouts, check_ties, check_default_block,
                       check_split, check_sparse):
        try:
            check_part()
        except Exception as error:  # noqa: BLE001 - a crash is one more mismatch to print
            failures.append(f"{check_part.__name__}: {type(error).__name__}: {error}")
    print("\n".join(failures) or "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
