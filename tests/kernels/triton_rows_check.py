"""The Triton kernels of the row ops against the CPU path and the PyTorch reference.

Run by ``test_triton_rows.py`` in a subprocess with ``TRITON_INTERPRET=1`` and
``GUMBELKIT_BACKEND=triton`` (both must be set before Triton is imported), so
that the ops on CPU tensors run the Triton kernels in Triton's interpreter;
switching ``ops._TRITON_ON_CPU`` off gives the C kernels in the same process.
Segments are made small (``SPLIT_MIN_COLS``) so that rows of a few hundred
columns take the two-stage path. Every buffer the kernels write is poisoned
(NaN, or -7 for integers) first. Prints one line per mismatch and exits 1 if
there is any.

Indices, one-hots and Binary Concrete decisions must be bit-identical to both;
relaxed values and gradients agree with the reference (exact noise) to float32
rounding, and with the C kernels (whose float32 soft pass uses noise accurate
to about 2**-16 absolute, see kernels_impl.h) to that noise's accuracy.
"""

from __future__ import annotations

import functools
import os
import sys

import torch

import gumbelkit
from gumbelkit.kernels import ops, row_reference, triton_rows

DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
INF = float("inf")
failures: list[str] = []


def poisoned(shape, dtype, device="cpu"):
    fill = float("nan") if dtype.is_floating_point else -7
    return torch.full(shape, fill, dtype=dtype, device=device)


def on(backend: str, fn, *args):
    """fn(*args) on the C kernels ("c") or the Triton kernels ("triton"); an error
    comes back as its message."""
    ops._TRITON_ON_CPU = backend == "triton"
    try:
        return fn(*args)
    except ValueError as error:
        return f"ValueError: {error}"
    finally:
        ops._TRITON_ON_CPU = True


def both(fn, *args):
    """(Triton, C) results of fn(*args)."""
    return on("triton", fn, *args), on("c", fn, *args)


def same_error(got, c, what: str) -> None:
    check(isinstance(got, str) and got == c, f"{what}: {got!r} != {c!r}")


def check(ok: bool, what: str) -> None:
    if not ok:
        failures.append(what)


def tolerance(dtype: torch.dtype, versus_c: bool) -> dict:
    if dtype == torch.float64:
        return {"rtol": 1e-12, "atol": 1e-14}
    return {"rtol": 1e-4, "atol": 2e-6} if versus_c else {"rtol": 2e-6, "atol": 1e-7}


def close(a, b, dtype, versus_c, what):
    if isinstance(a, str) or isinstance(b, str):
        check(a == b, f"{what}: {a} != {b}")
        return
    same_shape = a.shape == b.shape and a.dtype == b.dtype
    if same_shape and torch.allclose(a, b, **tolerance(dtype, versus_c)):
        return
    diff = (a - b).abs().nan_to_num(nan=INF).max() if same_shape else (a.shape, b.shape)
    failures.append(f"{what}: max diff {diff}")


def same(a, b, what):
    if isinstance(a, str) or isinstance(b, str):
        check(a == b, f"{what}: {a!r} != {b!r}")
        return
    check(a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b), f"{what}: differ")


def logits(rows: int, cols: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Normal logits with masked entries, a tie (equal huge logits: x + G rounds
    to x; see tie_row) in row 1, and non-contiguous columns (every second of a
    wider tensor)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, 2 * cols, generator=g, dtype=torch.float64) * 3).to(dtype)[:, ::2]
    if rows > 0 and cols > 2:
        x[0, 1] = -INF
        x[rows - 1, cols - 1] = -INF
    if tie_row(rows, cols, dtype):
        x[1, :] = -INF
        x[1, 2] = x[1, cols - 1] = 1e30
    return x


def tie_row(rows: int, cols: int, dtype: torch.dtype) -> bool:
    """Whether row 1 of ``logits`` holds a tie (float16 holds no logit so large
    that G vanishes next to it)."""
    return rows > 1 and cols > 3 and dtype != torch.float16


def seeds_and_keys(rows: int, form: str) -> tuple[torch.Tensor, torch.Tensor]:
    if form == "scalar":
        return torch.tensor([2**63 - 5], dtype=torch.int64), torch.empty(0, dtype=torch.int64)
    if form == "one key":
        return torch.tensor([-3], dtype=torch.int64), torch.tensor([2**40], dtype=torch.int64)
    seeds = torch.arange(rows, dtype=torch.int64) * 7919 - 2**62
    keys = torch.arange(rows, dtype=torch.int64) * -13 + 5
    return seeds, keys


GUMBEL_SOFTMAX = torch.ops.gumbelkit.gumbel_softmax
GUMBEL_MAX = torch.ops.gumbelkit.gumbel_max
CONCRETE = torch.ops.gumbelkit.concrete
CONCRETE_BACKWARD = torch.ops.gumbelkit.concrete_backward
# every shape for float32, a short and a two-stage one for the other dtypes
SHAPES = ((6, 7), (3, 64), (4, 65), (2, 300), (0, 5), (1, 1))
OTHER_SHAPES = ((6, 7), (2, 300))


def check_gumbel_softmax() -> None:
    for dtype in DTYPES:
        compute = row_reference.compute_dtype(dtype)
        shapes, forms = SHAPES, ("scalar", "one key", "per row")
        if dtype != torch.float32:
            shapes, forms = OTHER_SHAPES, ("per row",)
        for rows, cols in shapes:
            x = logits(rows, cols, dtype, rows * 1000 + cols)
            for form in forms:
                seeds, keys = seeds_and_keys(rows, form)
                taus = [torch.tensor([0.7], dtype=compute)]
                if form == "per row":
                    per_row = torch.rand(rows, dtype=torch.float64) * 2 + 0.3
                    if tie_row(rows, cols, dtype):
                        per_row[1] = 1e27  # the tie's z / tau stays finite
                    taus.append(per_row.to(compute))
                for tau in taus:
                    case = f"gumbel_softmax {dtype} {rows}x{cols} {form} tau{tuple(tau.shape)}"
                    for hard, save in ((False, False), (True, True), (True, False)):
                        args = (x, tau, seeds, keys, hard, save, [rows], 1)
                        got, c = both(GUMBEL_SOFTMAX, *args)
                        ref = row_reference.gumbel_softmax_rows(*args)
                        what = f"{case} hard={hard} save={save}"
                        if hard:
                            same(got[0], c[0], f"{what} one-hot vs C")
                            same(got[0], ref[0], f"{what} one-hot vs reference")
                            close(got[1], ref[1], compute, False, f"{what} soft vs reference")
                            close(got[1], c[1], compute, True, f"{what} soft vs C")
                        else:
                            close(got[0], ref[0], compute, False, f"{what} vs reference")
                            close(got[0], c[0], compute, True, f"{what} vs C")
                            same(got[1], c[1], f"{what} empty soft")
                args = (x, seeds, keys, [rows], 1)
                index, c = both(GUMBEL_MAX, *args)
                same(index, c, f"{case} gumbel_max vs C")
                same(index, row_reference.gumbel_max_rows(*args), f"{case} gumbel_max vs ref")
                if tie_row(rows, cols, dtype):
                    check(int(index[1]) == 2, f"{case} tie: index {int(index[1])}")


def check_ties_across_blocks() -> None:
    """A tie between two column blocks of one program (no split) and between two
    segments: the lowest column wins, as on the CPU path."""
    seeds, keys = seeds_and_keys(2, "scalar")
    tau = torch.tensor([1e27])
    for split, cols in ((10**9, 1100), (64, 300)):
        triton_rows.SPLIT_MIN_COLS = split
        x = torch.full((2, cols), -INF)
        x[:, 5] = x[:, cols - 3] = 1e30
        index, c = both(GUMBEL_MAX, x, seeds, keys, [2], 1)
        same(index, c, f"ties across blocks, {cols} columns")
        check(index.tolist() == [5, 5], f"ties across blocks: {index.tolist()}")
        got, c = both(GUMBEL_SOFTMAX, x, tau, seeds, keys, True, True, [2], 1)
        same(got[0], c[0], f"ties across blocks, {cols} columns, one-hot")
    triton_rows.SPLIT_MIN_COLS = 64


def check_gumbel_softmax_errors() -> None:
    seeds, keys = seeds_and_keys(4, "scalar")
    for dtype in DTYPES:
        compute = row_reference.compute_dtype(dtype)
        bad = {
            "nan": [(2, 1, float("nan")), (1, 4, INF)],  # the first bad row is 1
            "empty": [(3, slice(None), -INF)],
            "overflow": [(2, 0, float(torch.finfo(dtype).max))],
        }
        for name, edits in bad.items():
            x = torch.zeros(4, 6, dtype=dtype)
            for row, col, value in edits:
                x[row, col] = value
            # float16's largest logit overflows float32 only with a tiny tau
            tau = torch.tensor([1e-35 if dtype == torch.float16 else 0.25] if name == "overflow"
                               else [1.0], dtype=compute)
            for hard, save in ((False, False), (True, True), (True, False)):
                got, c = both(GUMBEL_SOFTMAX, x, tau, seeds, keys, hard, save, [2, 2], 1)
                same_error(got, c, f"error {name} {dtype} hard={hard} save={save}")
            if name != "overflow":
                got, c = both(GUMBEL_MAX, x, seeds, keys, [4], 1)
                same_error(got, c, f"gumbel_max {name} {dtype}")


def check_gumbel_softmax_backward() -> None:
    for dtype in (torch.float32, torch.float64):
        for rows, cols in ((5, 9), (2, 300), (3, 70), (0, 4)):
            g = torch.Generator().manual_seed(cols)
            soft = torch.softmax(torch.randn(rows, cols, generator=g, dtype=dtype) * 4, -1)
            if rows and cols > 3:
                soft[0, 2] = 0.0  # a masked category
            grad = torch.randn(cols, rows, generator=g, dtype=dtype).t()  # non-contiguous
            for tau in (torch.tensor([0.5], dtype=dtype),
                        torch.rand(rows, generator=g, dtype=dtype) + 0.2):
                for need_tau in (True, False):
                    args = (grad, soft, tau, need_tau)
                    got, c = both(torch.ops.gumbelkit.gumbel_softmax_backward, *args)
                    ref = row_reference.gumbel_softmax_backward_rows(*args)
                    what = f"gumbel_softmax_backward {dtype} {rows}x{cols} tau{tuple(tau.shape)}"
                    for i, part in enumerate(("gx", "gtau")):
                        close(got[i], ref[i], dtype, False, f"{what} {part} vs reference")
                        close(got[i], c[i], dtype, False, f"{what} {part} vs C")


def sample_and_grad(fn: str, x0: torch.Tensor, t0: torch.Tensor, w: torch.Tensor):
    """A public function's sample and its gradients wrt logits and tau."""
    x = x0.clone().requires_grad_()
    t = (t0 if fn in ("soft", "hard") else t0.expand(x0.shape)).clone().requires_grad_()
    if fn in ("soft", "hard"):
        y = gumbelkit.gumbel_softmax(x, t, hard=fn == "hard", seed=11)
    elif fn == "hard concrete":
        y = gumbelkit.hard_concrete(x, t, seed=11)
    else:
        y = gumbelkit.binary_concrete(x, t, hard=fn == "binary hard", seed=11)
    gx, gt = torch.autograd.grad((y * w).sum(), (x, t))
    return y.detach(), gx, gt


def check_autograd() -> None:
    """Gradients of the public functions wrt logits and a per-row tau, both paths."""
    for dtype, cols in ((torch.float32, 7), (torch.float32, 300), (torch.float64, 300)):
        g = torch.Generator().manual_seed(cols)
        x0 = torch.randn(3, cols, generator=g, dtype=dtype)
        t0 = torch.rand(3, 1, generator=g, dtype=dtype) + 0.5
        w = torch.randn(3, cols, generator=g, dtype=dtype)
        for fn in ("soft", "hard", "binary", "binary hard", "hard concrete"):
            got, c = both(sample_and_grad, fn, x0, t0, w)
            what = f"autograd {fn} {dtype} cols={cols}"
            if fn in ("hard", "binary hard"):
                same(got[0], c[0], f"{what} forward")
            else:
                close(got[0], c[0], dtype, True, f"{what} forward")
            close(got[1], c[1], dtype, True, f"{what} grad logits")
            close(got[2], c[2], dtype, True, f"{what} grad tau")


def check_concrete() -> None:
    for dtype in DTYPES:
        compute = row_reference.compute_dtype(dtype)
        shapes = ((5, 9), (3, 70), (0, 3), (2, 1)) if dtype == torch.float32 else ((5, 9),)
        for rows, cols in shapes:
            x = logits(rows, cols, dtype, cols)
            if rows > 2 and cols > 3:
                x[2, 3] = INF
                x[2, 0] = 0.0
            g = torch.Generator().manual_seed(rows + cols)
            taus = [torch.full((), 0.6, dtype=compute).expand(rows, cols),
                    (torch.rand(cols, rows, generator=g, dtype=compute) + 0.1).t()]
            for form, tau in (("scalar", taus[0]), ("per row", taus[1])):
                seeds, keys = seeds_and_keys(rows, form)
                for mode, save in ((0, False), (1, True), (1, False), (2, False)):
                    gamma, span = (-0.1, 1.2) if mode == 2 else (0.0, 1.0)
                    args = (x, tau, seeds, keys, mode, save, gamma, span, [rows, cols])
                    got, c = both(CONCRETE, *args)
                    ref = row_reference.concrete_rows(*args)
                    what = f"concrete {dtype} {rows}x{cols} {form} mode={mode} save={save}"
                    if mode == 1:
                        same(got[0], c[0], f"{what} decisions vs C")
                        same(got[0], ref[0], f"{what} decisions vs reference")
                    close(got[0], ref[0], compute, False, f"{what} vs reference")
                    close(got[0], c[0], compute, False, f"{what} vs C")
                    close(got[1], ref[1], compute, False, f"{what} soft vs reference")
                    if mode == 1 and not save:
                        continue
                    grad = torch.randn(cols, rows, generator=g, dtype=compute).t()
                    for need_tau in (True, False):
                        back = (grad, got[1] if mode == 1 else got[0], tau, mode, gamma, span,
                                need_tau)
                        bg, bc = both(CONCRETE_BACKWARD, *back)
                        br = row_reference.concrete_backward_rows(*back)
                        for i, part in enumerate(("gx", "gtau")):
                            close(bg[i], br[i], compute, False, f"{what} back {part} vs ref")
                            close(bg[i], bc[i], compute, False, f"{what} back {part} vs C")
        x = torch.zeros(3, 4, dtype=dtype)
        x[1, 2] = x[2, 0] = float("nan")
        tau = torch.ones((), dtype=compute).expand(3, 4)
        seeds, keys = seeds_and_keys(3, "scalar")
        for mode in (0, 1, 2):
            got, c = both(CONCRETE, x, tau, seeds, keys, mode, False, -0.1, 1.2, [3, 4])
            same_error(got, c, f"concrete NaN {dtype} mode={mode}")


def vmapped_gumbel_max(x: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    no_keys = torch.empty(0, dtype=torch.int64)
    return torch.func.vmap(lambda x, s: GUMBEL_MAX(x, s, no_keys, [3], 1))(x, seeds)


def check_vmap() -> None:
    x = torch.randn(2, 3, 70)
    seeds = torch.tensor([[4], [9]], dtype=torch.int64)
    same(*both(vmapped_gumbel_max, x, seeds), "vmap of gumbel_max")


def check_sparse() -> None:
    """sparse_gumbel_softmax on the Triton kernels (noise op for k < V, the
    Gumbel-Softmax op for k = V): the same indices, weights to float32 rounding."""
    x = logits(3, 40, torch.float32, 1)
    for k in (5, 40):
        for hard in (False, True):
            got, c = both(functools.partial(gumbelkit.sparse_gumbel_softmax, seed=9), x, k,
                          0.5, hard)
            what = f"sparse k={k} hard={hard}"
            same(got[0], c[0], f"{what} indices")
            (same if hard else close)(got[1], c[1], *(() if hard else (torch.float32, True)),
                                      f"{what} weights")


def main() -> int:
    assert os.environ.get("TRITON_INTERPRET") == "1" and ops._TRITON_ON_CPU
    triton_rows.SPLIT_MIN_COLS = 64
    triton_rows._empty = poisoned
    ops._empty = poisoned
    check(triton_rows._segments(2, 300, triton_rows.LONG_TILE)[0] > 1, "no two-stage case")
    check_gumbel_softmax()
    check_ties_across_blocks()
    check_gumbel_softmax_errors()
    check_gumbel_softmax_backward()
    check_autograd()
    check_concrete()
    check_vmap()
    check_sparse()
    print("\n".join(failures) or "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
