"""The Triton kernels of ``perturbed_top_k`` (``kernels/triton_sparse.py``): indices and
noise bit-identical to the CPU path, launches recorded from shapes alone (one, or a fixed
number for a split row), compiled ahead of time for sm_80 and sm_90 without a GPU.

The comparison runs the kernel in Triton's interpreter in a subprocess
(``triton_sparse_check.py``: the interpreter must be chosen before Triton is
imported). The ahead-of-time compile of every form, with the PTX check of the exact
forms, is ``gumbelkit doctor --cuda-compile``'s test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import gumbelkit
from gumbelkit.kernels import ops, row_reference
from host_reads import no_host_reads
from interpreted import run_interpreted

triton = pytest.importorskip("triton")

from gumbelkit.kernels import triton_compile, triton_kernels, triton_sparse  # noqa: E402
from triton_launches import LaunchRecorder  # noqa: E402  (needs triton)

FORMS = {form.name: form for form in triton_sparse.specializations()}
NO_KEYS = torch.empty(0, dtype=torch.int64)


@pytest.mark.slow
def test_interpreted_kernel_is_bit_identical_to_the_cpu_path():
    assert run_interpreted(Path(__file__).with_name("triton_sparse_check.py")) == \
        "all checks passed"


def test_every_launched_kernel_has_an_exact_form_per_logit_dtype():
    kernels = ("perturbed_top_k", "perturbed_top_k-count", "perturbed_top_k-split-at",
               "perturbed_top_k-write")
    assert sorted(FORMS) == sorted(
        [f"{kernel}[{dtype}]" for kernel in kernels for dtype in ("bf16", "fp16", "fp32", "fp64")]
        + ["perturbed_top_k-narrow"])
    assert all(form.exact and form.options == triton_kernels.COMPILE_OPTIONS
               for form in FORMS.values())
    assert "triton_sparse" in triton_compile.MODULES


def test_float32_form_compiles_exact_without_spills():
    """The float32 form through the check ``gumbelkit doctor --cuda-compile`` runs on
    every form (its test in tests/experiments/test_doctor_cuda.py compiles them all)."""
    result = triton_compile.check_form("triton_sparse", FORMS["perturbed_top_k[fp32]"], 90)
    assert result.error is None and result.inexact == ()
    assert result.spill_stores == 0 and result.spill_loads == 0


def _launches(monkeypatch, x: torch.Tensor, k: int) -> list:
    """``(kernel, grid, arguments)`` of every launch of the launcher, run on fake tensors
    with every host read forbidden (recorded: no kernel runs)."""
    recorder = LaunchRecorder(monkeypatch, triton_sparse)
    with FakeTensorMode() as mode, no_host_reads():
        triton_sparse.perturbed_top_k(mode.from_tensor(x), mode.from_tensor(torch.tensor([7])),
                                      mode.from_tensor(NO_KEYS), k)
    return recorder.launches


def test_launch_traces_from_shapes_alone(monkeypatch):
    """One launch over one program per row, compiled without contraction."""
    x = torch.randn(40, 3, dtype=torch.bfloat16).t()
    ((name, grid, arguments),) = _launches(monkeypatch, x, 5)
    assert name == "_top_k_kernel" and grid == (3,)
    assert arguments["enable_fp_fusion"] is False
    assert arguments["xcs"] == 3 and arguments["row_keys"] == 1


@pytest.mark.parametrize("dtype, passes", [(torch.float32, 8), (torch.float16, 8),
                                           (torch.float64, 16)])
def test_a_long_row_in_a_small_batch_is_split_into_a_fixed_number_of_launches(
        monkeypatch, dtype, passes):
    """[2, 128000]: per search pass a segment count over rows x segments and a
    per-row narrowing, then the split and the write; the same for any values."""
    segments, seg_cols = triton_sparse._segments(2, 128_000)
    assert 32 <= segments <= triton_sparse.MAX_SEGMENTS and seg_cols % triton_sparse.BLOCK == 0
    assert (segments - 1) * seg_cols < 128_000 <= segments * seg_cols
    launches = _launches(monkeypatch, torch.randn(2, 128_000, dtype=dtype), 50)
    assert triton_sparse._passes(dtype == torch.float64) == passes
    split, rows = (2, segments), (2,)
    assert [(name, grid) for name, grid, _ in launches] == (
        [("_count_segment_kernel", split), ("_narrow_kernel", rows)] * passes
        + [("_split_at_kernel", split), ("_write_segment_kernel", split)])
    assert all(arguments["enable_fp_fusion"] is False for _, _, arguments in launches)


@pytest.mark.parametrize("shape, transpose", [((3, 40), False), ((40, 3), True),
                                              ((2, 128_000), False)])
def test_launches_compile_the_declared_forms(monkeypatch, shape, transpose):
    """Every integer argument of every launch (whole-row and split; contiguous rows,
    whose column stride is 1, and transposed ones, whose row stride is 1) reaches the
    kernel as the i32 its form declares: the JIT would compile an argument equal to 1
    that it may specialize into a constant, a form the ahead-of-time check never sees
    (the whole-row float32 kernel with a constant column stride spills 8 bytes a
    thread on sm_80 for rows whose length is not a multiple of 16)."""
    x = torch.randn(*shape)
    x = x.t() if transpose else x
    signatures = {form.fn: form.signature for form in FORMS.values()}
    kernels = {name: value for name, value in vars(triton_sparse).items()
               if name.endswith("_kernel")}
    for name, _, arguments in _launches(monkeypatch, x, 2):
        kernel = kernels[name]
        fixed = {param.name for param in kernel.params if param.do_not_specialize}
        for arg, declared in signatures[kernel].items():
            if declared == "i32":
                assert -2**31 <= arguments[arg] < 2**31, (name, arg)
                assert arguments[arg] != 1 or arg in fixed, (name, arg)


def test_only_small_batches_of_long_rows_split():
    assert triton_sparse._segments(1, triton_sparse.SPLIT_MIN_COLS)[0] > 1
    assert triton_sparse._segments(1, triton_sparse.SPLIT_MIN_COLS - 1) == (
        1, triton_sparse.SPLIT_MIN_COLS - 1)
    assert triton_sparse._segments(triton_sparse.TARGET_PROGRAMS, 128_000)[0] == 1


# ------------------------------------------------------- without Triton


def test_cuda_kernel_without_triton_runs_the_reference(without_triton):
    x = torch.randn(3, 50)
    seeds = torch.tensor([4, 5, 6])
    got = ops._perturbed_top_k_cuda(x, seeds, NO_KEYS, 6)
    ref = row_reference.perturbed_top_k_rows(x, seeds, NO_KEYS, 6)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


def test_triton_backend_without_triton_is_an_error(without_triton, monkeypatch):
    monkeypatch.setattr(ops, "_TRITON_ON_CPU", True)
    with pytest.raises(ImportError, match="GUMBELKIT_BACKEND=triton needs triton"):
        torch.ops.gumbelkit.perturbed_top_k(torch.zeros(2, 3), torch.tensor([1]), NO_KEYS, 2)


# ---------------------------------------------------------------- on a GPU


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("shape", [(7, 5), (33, 1000), (1, 128000), (3, 50000), (300, 32000)])
def test_cuda_indices_and_noise_are_bit_identical_to_cpu(dtype, shape):
    rows, cols = shape
    g = torch.Generator().manual_seed(rows + cols)
    x = (torch.randn(rows, 2 * cols, generator=g) * 3).to(dtype)[:, ::2]
    x[0, :] = -float("inf")
    x[0, cols - 1] = 0.0
    seeds = torch.arange(rows, dtype=torch.int64) * 31 - 2**60
    keys = torch.arange(rows, dtype=torch.int64)
    for k in sorted({1, min(cols, 3), min(cols, 50), cols}):
        cpu = torch.ops.gumbelkit.perturbed_top_k(x, seeds, keys, k)
        gpu = torch.ops.gumbelkit.perturbed_top_k(x.cuda(), seeds.cuda(), keys.cuda(), k)
        assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])
    idx, w = gumbelkit.sparse_gumbel_softmax(x.cuda(), min(cols, 8), 0.5, seed=seeds.cuda())
    cpu_idx, cpu_w = gumbelkit.sparse_gumbel_softmax(x, min(cols, 8), 0.5, seed=seeds)
    assert torch.equal(idx.cpu(), cpu_idx)
    torch.testing.assert_close(w.cpu(), cpu_w)  # CUDA's softmax sums in its own order
