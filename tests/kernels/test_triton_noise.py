"""The Triton kernel of the ``noise`` op: bit-identical to the CPU path, and
compiled ahead of time for sm_80 and sm_90 without a GPU.

The bit comparison runs the kernel in Triton's interpreter
(``TRITON_INTERPRET=1``) in a subprocess (``triton_noise_check.py``), because
the interpreter must be chosen before Triton is imported. The ahead-of-time
compile of every form for sm_80 and sm_90, and the check of its PTX for the
instructions that would change the bits on a GPU (approximate division or
logarithm, fused multiply-add), is ``gumbelkit doctor --cuda-compile``
(``gumbelkit.kernels.triton_compile``), run by
``tests/experiments/test_doctor_cuda.py``; here, that the check catches
contraction.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from gumbelkit import _rng
from interpreted import run_interpreted

triton = pytest.importorskip("triton")

from gumbelkit.kernels import triton_compile, triton_kernels  # noqa: E402  (needs triton)


@pytest.mark.slow
def test_interpreted_kernel_is_bit_identical_to_reference():
    assert run_interpreted(Path(__file__).with_name("triton_noise_check.py")) == \
        "all bit-identical"


def test_fusion_check_detects_contraction():
    """With contraction allowed the compiler fuses the polynomial, and the check that
    ``gumbelkit doctor --cuda-compile`` runs on every exact form (one line per form and
    architecture, checked in ``tests/experiments/test_doctor_cuda.py``) fails the form:
    the check is what keeps ``enable_fp_fusion=False`` in the launch options."""
    form = next(f for f in triton_kernels.specializations() if f.name == "noise[gumbel, fp32]")
    assert form.exact and form.options == {"enable_fp_fusion": False}
    fused = dataclasses.replace(form, options={"enable_fp_fusion": True})
    result = triton_compile.check_form("triton_kernels", fused, 90)
    assert result.error is None and "fma.rn.f32" in result.inexact
    assert not result.ok and "fma.rn.f32" in result.problem


def test_inexact_instructions_names_each_opcode_once():
    ptx = """
        div.rn.f32 %f3, %f1, %f2;
        div.full.f32 %f4, %f1, %f2;
        div.approx.ftz.f32 %f5, %f1, %f2;
        lg2.approx.f32 %f6, %f5;
        fma.rn.f32 %f7, %f1, %f2, %f3;
        fma.rn.f32 %f8, %f1, %f2, %f3;
        fma.rn.f64 %fd1, %fd2, %fd3, %fd4;
        ex2.approx.f32 %f9, %f1;
        // mydiv.approx is a label, not the opcode
    """
    assert triton_compile.inexact_instructions(ptx) == [
        "div.approx.ftz.f32", "div.full.f32", "fma.rn.f32", "fma.rn.f64", "lg2.approx.f32"]
    assert triton_compile.inexact_instructions("div.rn.f32 %f3, %f1, %f2;") == []


def test_launch_rejects_bad_kind_and_dtype():
    seeds = keys = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="kind must be one of"):
        triton_kernels.noise(seeds, keys, 3, 0, "normal", torch.float32)
    with pytest.raises(ValueError, match="dtype must be"):
        triton_kernels.noise(seeds, keys, 3, 0, "gumbel", torch.float16)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["gumbel", "exponential", "logistic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_op_is_bit_identical_to_cpu(kind, dtype):
    seeds = torch.tensor([0, 2**63 - 1, -1, -(2**63), 12345], dtype=torch.int64)
    keys = torch.tensor([0, 1, -5, 2**40 + 3, 7], dtype=torch.int64)
    for cols, stream in ((1, 0), (5, 1), (1030, 0), (4099, 2**32 - 1)):
        got = torch.ops.gumbelkit.noise(seeds.cuda(), keys.cuda(), cols, stream, kind, dtype)
        ref = _rng.noise(kind, (5,), cols, _rng.Seed(per_row=seeds), dtype, row_keys=keys,
                         stream=stream)
        bits = torch.int64 if dtype == torch.float64 else torch.int32
        assert torch.equal(got.cpu().view(bits), ref.view(bits)), (kind, dtype, cols, stream)
