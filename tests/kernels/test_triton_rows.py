"""The Triton kernels of the row ops (``kernels/triton_rows.py``): the same
indices, one-hots and decisions as the CPU path bit for bit, relaxed values and
gradients to float32 rounding, the same errors; compiled ahead of time for
sm_80 and sm_90 without a GPU.

The comparison runs the kernels in Triton's interpreter in a subprocess
(``triton_rows_check.py``: the interpreter must be chosen before Triton is
imported). The ahead-of-time compile of every form, with the PTX check of the
exact forms (those that form the noise), is ``gumbelkit doctor --cuda-compile``'s
test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gumbelkit
from gumbelkit.kernels import ops, row_reference
from interpreted import run_interpreted

triton = pytest.importorskip("triton")

from gumbelkit.kernels import triton_compile, triton_rows  # noqa: E402  (needs triton)

FORMS = {form.name: form for form in triton_rows.specializations()}


@pytest.mark.slow
def test_interpreted_kernels_match_the_cpu_path():
    assert run_interpreted(Path(__file__).with_name("triton_rows_check.py")) == \
        "all checks passed"


def test_an_exact_form_compiles_without_inexact_instructions():
    """The one form of every Gumbel-Softmax launch with long rows, float32, through the
    check ``gumbelkit doctor --cuda-compile`` runs on every form (its test in
    tests/experiments/test_doctor_cuda.py compiles them all, once)."""
    result = triton_compile.check_form("triton_rows", FORMS["softmax_stats[fp32, 1x1024]"], 90)
    assert result.error is None and result.inexact == ()


def test_forms_cover_every_launch_choice():
    """Every tile the launchers choose, for every dtype they read, has its forms;
    the forward kernels are exact, the backward ones (tl.log) are not."""
    for dtype, short in ((torch.float32, triton_rows.SHORT_TILE),
                         (torch.float64, triton_rows.SHORT_TILE_F64)):
        tiles = {triton_rows._tile(cols, dtype) for cols in (1, triton_rows.SHORT_COLS,
                                                             triton_rows.SHORT_COLS + 1, 10**6)}
        assert tiles == {short, triton_rows.LONG_TILE}
    for rows, cols in ((1, 1), (1, 128000), (10**5, 128000), (3, 100)):
        tile = triton_rows._tile(cols, torch.float32)
        segments, seg_cols = triton_rows._segments(rows, cols, tile)
        assert 1 <= segments <= triton_rows.MAX_SEGMENTS
        assert seg_cols % 4 == 0 or segments == 1
        assert (segments - 1) * seg_cols < cols <= segments * seg_cols
    for cols in (65, 40):
        for compute, x_dtypes in ((torch.float32, ("fp32", "bf16", "fp16")),
                                  (torch.float64, ("fp64",))):
            name = "x".join(str(n) for n in triton_rows._tile(cols, compute))
            for dtype in x_dtypes:
                assert FORMS[f"softmax_stats[{dtype}, {name}]"].exact
                assert FORMS[f"concrete[{dtype}, {name}]"].exact
            ct = x_dtypes[0]
            assert FORMS[f"softmax_finish[{ct}, {name}]"].exact
            assert not FORMS[f"softmax_grad[{ct}, {name}]"].exact
            assert not FORMS[f"concrete_backward[{ct}, {name}]"].exact
    assert len(FORMS) == 32


def test_a_long_row_in_a_small_batch_is_split():
    """[1, 128000] runs on many programs, each on whole Philox counters."""
    segments, seg_cols = triton_rows._segments(1, 128000, triton_rows.LONG_TILE)
    assert segments >= 32 and seg_cols % 4 == 0
    assert triton_rows._segments(4096, 128000, triton_rows.LONG_TILE)[0] == 1
    assert triton_rows._segments(1, 64, triton_rows.SHORT_TILE)[0] == 1


# ------------------------------------------------------- without Triton


def test_cuda_kernels_without_triton_run_the_reference(without_triton):
    x = torch.randn(3, 5)
    tau = torch.tensor([0.5])
    seeds, keys = torch.tensor([7]), torch.empty(0, dtype=torch.int64)
    got = ops._gumbel_softmax_cuda(x, tau, seeds, keys, True, True, [3], 1)
    ref = row_reference.gumbel_softmax_rows(x, tau, seeds, keys, True, True, [3], 1)
    assert all(torch.equal(a, b) for a, b in zip(got, ref))
    assert torch.equal(ops._gumbel_max_cuda(x, seeds, keys, [3], 1),
                       row_reference.gumbel_max_rows(x, seeds, keys, [3], 1))
    tau2 = torch.full((3, 5), 0.5)
    got = ops._concrete_cuda(x, tau2, seeds, keys, 2, False, -0.1, 1.2, [3, 5])
    ref = row_reference.concrete_rows(x, tau2, seeds, keys, 2, False, -0.1, 1.2, [3, 5])
    assert torch.equal(got[0], ref[0])
    g = torch.randn(3, 5)
    soft = torch.softmax(x, -1)
    got = ops._gumbel_softmax_backward_cuda(g, soft, tau, True)
    ref = row_reference.gumbel_softmax_backward_rows(g, soft, tau, True)
    assert all(torch.equal(a, b) for a, b in zip(got, ref))
    got = ops._concrete_backward_cuda(g, soft, tau2, 0, 0.0, 1.0, True)
    ref = row_reference.concrete_backward_rows(g, soft, tau2, 0, 0.0, 1.0, True)
    assert all(torch.equal(a, b) for a, b in zip(got, ref))


def test_triton_backend_without_triton_is_an_error(without_triton, monkeypatch):
    monkeypatch.setattr(ops, "_TRITON_ON_CPU", True)
    with pytest.raises(ImportError, match="GUMBELKIT_BACKEND=triton needs triton"):
        torch.ops.gumbelkit.gumbel_max(torch.zeros(2, 3), torch.tensor([1]),
                                       torch.empty(0, dtype=torch.int64), [2], 1)


# ---------------------------------------------------------------- on a GPU

cuda = pytest.mark.cuda


@pytest.fixture(autouse=True)
def poisoned_buffers(monkeypatch):
    """Every buffer the Triton kernels write starts as NaN (or -7): an element a
    kernel leaves unwritten fails the comparisons."""
    def poisoned(shape, dtype, device):
        fill = float("nan") if dtype.is_floating_point else -7
        return torch.full(shape, fill, dtype=dtype, device=device)

    monkeypatch.setattr(triton_rows, "_empty", poisoned)


def _logits(rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(rows * 7 + cols)
    x = (torch.randn(rows, 2 * cols, generator=g) * 3).to(dtype)[:, ::2]
    x[0, 0] = -float("inf")
    return x


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("shape", [(7, 5), (33, 64), (5, 1000), (1, 128000), (2, 50000)])
def test_cuda_indices_and_hard_samples_are_bit_identical_to_cpu(dtype, shape):
    x = _logits(*shape, dtype)
    seeds = torch.arange(shape[0], dtype=torch.int64) * 31 - 2**60
    for seed in (12345, seeds):
        cpu = gumbelkit.gumbel_max(x, seed=seed)
        assert torch.equal(gumbelkit.gumbel_max(x.cuda(), seed=seed).cpu(), cpu)
        hard = gumbelkit.gumbel_softmax(x.cuda(), 0.5, hard=True, seed=seed).cpu()
        assert torch.equal(hard, gumbelkit.gumbel_softmax(x, 0.5, hard=True, seed=seed))
        assert torch.equal(hard.argmax(-1), cpu)
        soft = gumbelkit.gumbel_softmax(x.cuda(), 0.5, seed=seed).cpu()
        ref = gumbelkit.gumbel_softmax(x, 0.5, seed=seed)
        tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {
            "rtol": 1e-4, "atol": 2e-6}
        if dtype in (torch.bfloat16, torch.float16):
            tol = {"rtol": 1e-2, "atol": 1e-3}  # the output's own rounding
        torch.testing.assert_close(soft, ref, **tol)
        gate = gumbelkit.binary_concrete(x.cuda(), 0.5, hard=True, seed=seed).cpu()
        cpu_gate = gumbelkit.binary_concrete(x, 0.5, hard=True, seed=seed)
        # s > 1/2 for s = 1 / (1 + exp(-v)): the exp of |v| < 2**-21 rounds to within
        # an ulp of 1 differently on every exp (the C kernels' differ per instruction
        # set), so only the decisions outside that window must agree
        s = gumbelkit.binary_concrete(x.double(), 0.5, seed=seed)
        decided = (s - 0.5).abs() > 1e-6
        assert torch.equal(gate[decided], cpu_gate[decided])


@cuda
def test_cuda_gradients_match_cpu():
    x = torch.randn(4, 3000, dtype=torch.float64)
    tau = torch.rand(4, 1, dtype=torch.float64) + 0.5
    w = torch.randn(4, 3000, dtype=torch.float64)
    grads = []
    for device in ("cpu", "cuda"):
        xd = x.to(device).requires_grad_()
        td = tau.to(device).requires_grad_()
        y = gumbelkit.gumbel_softmax(xd, td, seed=3)
        z = gumbelkit.hard_concrete(xd, td.expand(4, 3000), seed=3)
        grads.append([g.cpu() for g in torch.autograd.grad(
            (y * w.to(device)).sum() + (z * w.to(device)).sum(), (xd, td))])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@cuda
def test_cuda_errors_match_cpu():
    x = torch.zeros(3, 300)
    x[1, 7] = float("nan")
    x[2, :] = -float("inf")
    for fn in (lambda t: gumbelkit.gumbel_max(t, seed=0),
               lambda t: gumbelkit.gumbel_softmax(t, 0.5, seed=0)):
        with pytest.raises(ValueError) as cpu:
            fn(x)
        with pytest.raises(ValueError) as gpu:
            fn(x.cuda())
        assert str(gpu.value) == str(cpu.value)
    with pytest.raises(ValueError) as cpu:
        gumbelkit.binary_concrete(x, seed=0)
    with pytest.raises(ValueError) as gpu:
        gumbelkit.binary_concrete(x.cuda(), seed=0)
    assert str(gpu.value) == str(cpu.value)


@cuda
def test_cuda_sparse_relaxation_matches_cpu():
    x = _logits(6, 5000, torch.float32)
    for k in (8, 5000):
        idx, w = gumbelkit.sparse_gumbel_softmax(x.cuda(), k, 0.5, seed=4)
        cpu_idx, cpu_w = gumbelkit.sparse_gumbel_softmax(x, k, 0.5, seed=4)
        assert torch.equal(idx.cpu(), cpu_idx)
        torch.testing.assert_close(w.cpu(), cpu_w, rtol=1e-4, atol=2e-6)


@cuda
def test_cuda_logits_take_a_zero_dim_cpu_tau():
    x = _logits(3, 200, torch.float32)
    tau = torch.tensor(0.7)
    assert torch.equal(gumbelkit.gumbel_softmax(x.cuda(), tau, hard=True, seed=2).cpu(),
                       gumbelkit.gumbel_softmax(x, tau, hard=True, seed=2))
    torch.testing.assert_close(gumbelkit.hard_concrete(x.cuda(), tau, seed=2).cpu(),
                               gumbelkit.hard_concrete(x, tau, seed=2), rtol=1e-5, atol=1e-6)
