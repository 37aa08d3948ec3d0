"""The Triton kernel of the ``sample`` op: tokens bit-identical to the CPU path,
compiled ahead of time for sm_80 and sm_90 without a GPU, launched without reading
anything back to the host.

The bit comparison runs the kernel in Triton's interpreter (``TRITON_INTERPRET=1``)
in a subprocess (``triton_sampler_check.py``), because the interpreter must be
chosen before Triton is imported; on a GPU the same cases run on the device.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from gumbelkit.kernels import ops, sampler_reference
from gumbelkit.sampling import _controls
from host_reads import no_host_reads
from interpreted import run_interpreted

triton = pytest.importorskip("triton")

from gumbelkit.kernels import triton_kernels, triton_sampler  # noqa: E402  (needs triton)
from triton_launches import LaunchRecorder  # noqa: E402  (needs triton)

CHECK = Path(__file__).with_name("triton_sampler_check.py")
CUDA = pytest.mark.cuda


def _check_module():
    spec = importlib.util.spec_from_file_location("triton_sampler_check", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_interpreted_kernel_is_bit_identical_to_the_cpu_path():
    assert run_interpreted(CHECK) == "all bit-identical"


FORMS = {form.name: form for form in triton_sampler.specializations()}


def test_every_logit_dtype_has_a_form():
    dtypes = ["bf16", "fp16", "fp32", "fp64"]
    segment = ["sample", "sample-scan-segment", "sample-topk-segment", "sample-topp-segment",
               "sample-count-segment", "sample-race-segment"]
    reduce = ["sample-scan-reduce", "sample-topk-reduce", "sample-topp-reduce",
              "sample-race-reduce"]
    assert sorted(FORMS) == sorted(
        [f"{kernel}[{dtype}]" for kernel in segment for dtype in dtypes]
        + [f"{kernel}[{compute}]" for kernel in reduce for compute in ("fp32", "fp64")]
        + ["sample-count-reduce"])
    assert all(form.exact and form.options == triton_kernels.COMPILE_OPTIONS
               for form in FORMS.values())


# the forms that divide: z = x / T (and the logarithm's division in the whole-row kernel)
DIVIDES = ("sample[", "sample-topp-segment", "sample-count-segment", "sample-race-segment",
           "sample-scan-reduce", "sample-topk-reduce")


@pytest.mark.slow
@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("name", sorted(FORMS))
def test_compiles_ahead_of_time_without_inexact_instructions(arch, name):
    from triton.backends.compiler import GPUTarget

    form = FORMS[name]
    source = triton.compiler.ASTSource(fn=form.fn, signature=form.signature,
                                       constexprs=form.constexprs)
    ptx = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                         options=form.options).asm["ptx"]
    assert f".target sm_{arch}" in ptx
    # the divisions are correctly rounded, in the compute dtype
    if name.startswith(DIVIDES):
        is_f64 = form.constexprs["IS_F64"]
        if is_f64 or form.fn is triton_sampler._sample_kernel:
            assert re.search(r"\bdiv\.rn\.f64\b", ptx)
        if not is_f64:
            assert re.search(r"\bdiv\.rn\.f32\b", ptx)
    for inexact in ("div.approx", "div.full", "lg2.approx", "ex2.approx", "fma.rn"):
        assert inexact not in ptx, f"{inexact} in the PTX for sm_{arch} {name}"


def _row_controls(rows: int) -> _controls.Controls:
    ctl, _ = _controls.controls(rows, temperature=0.8, top_k=5, top_p=0.9, min_p=0.1,
                                seed=torch.arange(rows), positions=None, generator=None)
    return ctl


def test_launch_rejects_an_integer_dtype():
    with pytest.raises(ValueError, match="logits must be float32, bfloat16, float16 or float64"):
        triton_sampler.sample(torch.zeros(2, 3, dtype=torch.int32), *_row_controls(2), 1, False)


def test_launch_reads_nothing_back(monkeypatch):
    """The launcher's arguments depend on shapes only: with every host read of a
    tensor forbidden it still launches (recorded here: no kernel runs)."""
    recorder = LaunchRecorder(monkeypatch, triton_sampler)
    x = torch.randn(3, 40, dtype=torch.bfloat16)
    ctl = _row_controls(3)
    with no_host_reads():
        tokens, lp, status = triton_sampler.sample(x, *ctl, 2, True)
    assert tokens.shape == (3, 2) and lp.shape == (3, 2) and status.shape == (3,)
    ((name, grid, kwargs),) = recorder.launches
    assert name == "_sample_kernel" and grid == (3,)
    assert kwargs["enable_fp_fusion"] is False and kwargs["IS_F64"] is False
    assert triton_sampler.launches(3, 40, 2, torch.bfloat16) == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_split_launch_reads_nothing_back(monkeypatch, dtype):
    """A small batch of long rows runs every pass on (rows x segments) programs, each
    followed by a reduction per row: the first pass, a fixed number of steps per
    search (8 for 32-bit keys, 16 for 64-bit ones), the count and per token a race
    pass, a number of launches fixed by the shapes, none reading anything back."""
    recorder = LaunchRecorder(monkeypatch, triton_sampler)
    x = torch.randn(2, 128_000, dtype=dtype)
    ctl = _row_controls(2)
    with no_host_reads():
        tokens, lp, status = triton_sampler.sample(x, *ctl, 2, True)
    assert tokens.shape == (2, 2) and lp.shape == (2, 2) and status.shape == (2,)
    segments, seg_cols = triton_sampler._segments(2, 128_000, 2)
    assert segments > 1 and seg_cols % triton_sampler.BLOCK == 0
    assert (segments - 1) * seg_cols < 128_000 <= segments * seg_cols
    steps = 16 if dtype == torch.float64 else 8
    split, rows = (2, segments), (2,)
    expected = [("_scan_segment_kernel", split), ("_scan_reduce_kernel", rows)]
    expected += [("_search_segment_kernel", split), ("_search_reduce_kernel", rows)] * 2 * steps
    expected += [("_count_segment_kernel", split), ("_count_reduce_kernel", rows)]
    expected += [("_race_segment_kernel", split), ("_race_reduce_kernel", rows)] * 2
    assert [(name, grid) for name, grid, _ in recorder.launches] == expected
    assert triton_sampler.launches(2, 128_000, 2, dtype) == len(expected)
    searches = [kwargs for name, _, kwargs in recorder.launches if name.startswith("_search")]
    assert [kwargs["TOP_P"] for kwargs in searches] == [False] * 2 * steps + [True] * 2 * steps
    assert all(kwargs["enable_fp_fusion"] is False for _, _, kwargs in recorder.launches)
    # and it traces with fake tensors: the same launches
    launched = list(recorder.launches)
    recorder.launches.clear()
    with FakeTensorMode() as mode:
        tokens, lp, status = triton_sampler.sample(
            mode.from_tensor(x), *(mode.from_tensor(c) for c in ctl), 2, True)
    assert tokens.shape == (2, 2) and lp.shape == (2, 2) and status.shape == (2,)
    assert [(name, grid) for name, grid, _ in recorder.launches] == [
        (name, grid) for name, grid, _ in launched]


def test_launches_of_one_long_row():
    """[1, 128000] float32 logits, one token: 38 launches (2 for the first pass, 16 per
    search, 2 for the count, 2 for the race)."""
    assert triton_sampler.launches(1, 128_000, 1, torch.float32) == 38
    assert triton_sampler.launches(1, 128_000, 1, torch.float64) == 70


def test_race_splits_only_small_batches_of_long_rows():
    assert triton_sampler._segments(1, 128_000, 1)[0] > 1
    assert triton_sampler._segments(1, triton_sampler.SPLIT_MIN_COLS - 1, 1) == (
        1, triton_sampler.SPLIT_MIN_COLS - 1)
    assert triton_sampler._segments(triton_sampler.TARGET_PROGRAMS, 128_000, 1)[0] == 1
    assert triton_sampler._segments(1, 128_000, triton_sampler.SPLIT_MAX_N + 1)[0] == 1
    assert triton_sampler._segments(1, 128_000, 1)[0] <= triton_sampler.MAX_SEGMENTS


def test_cuda_kernel_without_triton_runs_the_reference(without_triton):
    x = torch.randn(3, 30, generator=torch.Generator().manual_seed(0))
    got = ops._sample_cuda(x, *_row_controls(3), 2, True)
    ref = sampler_reference.sample_rows(x, *_row_controls(3), 2, True)
    assert all(torch.equal(a, b) for a, b in zip(got, ref))


def test_triton_backend_without_triton_is_an_error(without_triton, monkeypatch):
    monkeypatch.setattr(ops, "_TRITON_ON_CPU", True)
    with pytest.raises(ImportError, match="GUMBELKIT_BACKEND=triton needs triton"):
        torch.ops.gumbelkit.sample(torch.zeros(2, 3), *_row_controls(2), 1, False)


@CUDA
def test_cuda_op_is_bit_identical_to_cpu():
    failures: list[str] = []
    _check_module().op_cases(failures, device="cuda")
    assert not failures, "\n".join(failures)


@CUDA
@pytest.mark.parametrize("scale", [0.3, 3.0, 10.0])
def test_cuda_op_on_full_vocabulary_rows_is_bit_identical_to_cpu(scale):
    rows, vocab = 8, 128_000
    x = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(3)) * scale
    ctl, _ = _controls.controls(
        rows, temperature=torch.tensor([0.8, 1.0, 0.7, 1.2, 0.0, 0.9, 1.0, 0.6]),
        top_k=torch.tensor([50, 0, 0, 1000, 0, 0, 40, 0]),
        top_p=torch.tensor([0.9, 0.95, 1.0, 0.8, 1.0, 0.5, 1.0, 0.99]),
        min_p=torch.tensor([0.0, 0.0, 0.05, 0.0, 0.0, 0.02, 0.1, 0.0]),
        seed=torch.arange(rows), positions=torch.arange(rows), generator=None)
    check = _check_module()
    failures: list[str] = []
    check.compare(f"N(0, {scale}^2) rows", x, ctl, 1, failures, device="cuda")
    check.compare(f"N(0, {scale}^2) rows, n=4", x, ctl, 4, failures, device="cuda")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("rows, vocab", [(3, 40), (1, 128_000)])
def test_forms_declare_the_integer_types_that_launches_pass(monkeypatch, rows, vocab):
    """The ahead-of-time forms are the launched ones: every integer argument of every
    launch (whole-row and split) has the type its form declares (the JIT passes
    integers below 2**31 as i32)."""
    signatures = {form.fn.fn.__name__: form.signature for form in FORMS.values()}
    recorder = LaunchRecorder(monkeypatch, triton_sampler)
    triton_sampler.sample(torch.zeros(rows, vocab), *_row_controls(rows), 1, True)
    assert {name for name, _, _ in recorder.launches} == (
        {"_sample_kernel"} if vocab == 40 else set(signatures) - {"_sample_kernel"})
    for name, _, kwargs in recorder.launches:
        for arg, declared in signatures[name].items():
            if declared != "constexpr" and not declared.startswith("*"):
                value = kwargs[arg]
                launched = "i32" if -2**31 <= value < 2**31 else "i64"
                assert declared == launched, (name, arg, value)
