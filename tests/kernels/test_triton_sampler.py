"""The Triton kernel of the ``sample`` op: tokens bit-identical to the CPU path,
compiled ahead of time for sm_80 and sm_90 without a GPU, launched without reading
anything back to the host.

The bit comparison runs the kernel in Triton's interpreter (``TRITON_INTERPRET=1``)
in a subprocess (``triton_sampler_check.py``), because the interpreter must be
chosen before Triton is imported; on a GPU the same cases run on the device.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gumbelkit.kernels import ops, sampler_reference
from gumbelkit.sampling import _controls
from host_reads import no_host_reads

triton = pytest.importorskip("triton")

from gumbelkit.kernels import triton_kernels, triton_sampler  # noqa: E402  (needs triton)

CHECK = Path(__file__).with_name("triton_sampler_check.py")
CUDA = pytest.mark.cuda


def _check_module():
    spec = importlib.util.spec_from_file_location("triton_sampler_check", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_interpreted_kernel_is_bit_identical_to_the_cpu_path():
    env = dict(os.environ, TRITON_INTERPRET="1", GUMBELKIT_BACKEND="triton")
    result = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True,
                            env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "all bit-identical"


FORMS = {form.name: form for form in triton_sampler.specializations()}


def test_every_logit_dtype_has_a_form():
    dtypes = ["bf16", "fp16", "fp32", "fp64"]
    assert sorted(FORMS) == sorted(
        [f"{kernel}[{dtype}]" for kernel in ("sample", "sample-split", "sample-race-segment")
         for dtype in dtypes] + ["sample-race-reduce[fp32]", "sample-race-reduce[fp64]"])
    assert all(form.exact and form.options == triton_kernels.COMPILE_OPTIONS
               for form in FORMS.values())


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
    # z = x / T, the noise's and the logarithm's divisions: correctly rounded (the
    # reduction of the split race divides nothing, its segment pass in the compute dtype)
    if form.fn is not triton_sampler._race_reduce_kernel:
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
    launches = []

    class Recorder:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((grid, args, kwargs))

    monkeypatch.setattr(triton_sampler, "_sample_kernel", Recorder())
    x = torch.randn(3, 40, dtype=torch.bfloat16)
    ctl = _row_controls(3)
    with no_host_reads():
        tokens, lp, status = triton_sampler.sample(x, *ctl, 2, True)
    assert tokens.shape == (3, 2) and lp.shape == (3, 2) and status.shape == (3,)
    ((grid, args, kwargs),) = launches
    assert grid == (3,) and kwargs["enable_fp_fusion"] is False and kwargs["IS_F64"] is False
    assert kwargs["RACE"] is True


def test_split_launch_reads_nothing_back(monkeypatch):
    """A small batch of long rows races in segments: the whole-row kernel without its
    race, then per token a segment pass over (rows x segments) and a reduction, a
    number of launches fixed by the shapes, none reading anything back."""
    launches = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((self.name, grid, kwargs))

    for name in ("_sample_kernel", "_race_segment_kernel", "_race_reduce_kernel"):
        monkeypatch.setattr(triton_sampler, name, Recorder(name))
    x = torch.randn(2, 128_000, dtype=torch.bfloat16)
    ctl = _row_controls(2)
    with no_host_reads():
        tokens, lp, status = triton_sampler.sample(x, *ctl, 2, True)
    assert tokens.shape == (2, 2) and lp.shape == (2, 2) and status.shape == (2,)
    segments, seg_cols = triton_sampler._segments(2, 128_000, 2)
    assert segments > 1 and seg_cols % triton_sampler.BLOCK == 0
    assert (segments - 1) * seg_cols < 128_000 <= segments * seg_cols
    assert [(name, grid) for name, grid, _ in launches] == [
        ("_sample_kernel", (2,)),
        ("_race_segment_kernel", (2, segments)), ("_race_reduce_kernel", (2,)),
        ("_race_segment_kernel", (2, segments)), ("_race_reduce_kernel", (2,))]
    assert launches[0][2]["RACE"] is False
    assert all(kwargs["enable_fp_fusion"] is False for _, _, kwargs in launches)


def test_race_splits_only_small_batches_of_long_rows():
    assert triton_sampler._segments(1, 128_000, 1)[0] > 1
    assert triton_sampler._segments(1, triton_sampler.SPLIT_MIN_COLS - 1, 1) == (
        1, triton_sampler.SPLIT_MIN_COLS - 1)
    assert triton_sampler._segments(triton_sampler.TARGET_PROGRAMS, 128_000, 1)[0] == 1
    assert triton_sampler._segments(1, 128_000, triton_sampler.SPLIT_MAX_N + 1)[0] == 1
    assert triton_sampler._segments(1, 128_000, 1)[0] <= triton_sampler.MAX_SEGMENTS


@pytest.fixture
def without_triton(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "triton" else find_spec(name, *args))


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
