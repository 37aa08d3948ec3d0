"""The Triton kernel of the ``noise`` op: bit-identical to the CPU path, and
compiled ahead of time for sm_80 and sm_90 without a GPU.

The bit comparison runs the kernel in Triton's interpreter
(``TRITON_INTERPRET=1``) in a subprocess (``triton_noise_check.py``), because
the interpreter must be chosen before Triton is imported. The ahead-of-time
compile checks the PTX for the instructions that would change the bits on a
GPU: approximate division, logarithm or exponential, and fused multiply-add.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gumbelkit import _rng

triton = pytest.importorskip("triton")

from gumbelkit.kernels import triton_kernels  # noqa: E402  (needs triton)


@pytest.mark.slow
def test_interpreted_kernel_is_bit_identical_to_reference():
    env = dict(os.environ, TRITON_INTERPRET="1", GUMBELKIT_BACKEND="triton")
    script = Path(__file__).with_name("triton_noise_check.py")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "all bit-identical"


def _ptx(arch: int, form: triton_kernels.Specialization, options: dict) -> str:
    from triton.backends.compiler import GPUTarget

    source = triton.compiler.ASTSource(fn=form.fn, signature=form.signature,
                                       constexprs=form.constexprs)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options).asm["ptx"]


FORMS = {form.name: form for form in triton_kernels.specializations()}


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("name", sorted(FORMS))
def test_compiles_ahead_of_time_without_inexact_instructions(arch, name):
    form = FORMS[name]
    assert form.exact
    ptx = _ptx(arch, form, form.options)
    width = "f64" if form.constexprs["IS_F64"] else "f32"
    assert f".target sm_{arch}" in ptx
    assert re.search(rf"\bdiv\.rn\.{width}\b", ptx), "the logarithm's division is missing"
    for inexact in ("div.approx", "div.full", "lg2.approx", "ex2.approx", "fma.rn"):
        assert inexact not in ptx, f"{inexact} in the PTX for sm_{arch} {name}"


def test_fusion_check_detects_contraction():
    """With contraction allowed the compiler fuses the polynomial: the check above
    is what keeps ``enable_fp_fusion=False`` in the launch options."""
    ptx = _ptx(90, FORMS["noise[gumbel, fp32]"], {"enable_fp_fusion": True})
    assert "fma.rn.f32" in ptx


def test_launch_rejects_bad_kind_and_dtype():
    seeds = keys = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="kind must be one of"):
        triton_kernels.noise(seeds, keys, 3, 0, "normal", torch.float32)
    with pytest.raises(ValueError, match="dtype must be"):
        triton_kernels.noise(seeds, keys, 3, 0, "gumbel", torch.float16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
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
