"""ctypes binding of the fused CPU sampler (``kernels/csrc/sampler.c``)."""

from __future__ import annotations

import ctypes
from functools import cache

import torch

from ..kernels import library
from ._controls import Controls

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@cache
def _function() -> ctypes._CFuncPtr | None:
    lib = library()
    if lib is None:
        return None
    fn = lib.gk_sample_f32
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    fn.argtypes = [p, i64, i64, i64, p, p, p, p, p, p, i64, p, p, p, ctypes.c_int]
    fn.restype = None
    return fn


def available(x: torch.Tensor) -> bool:
    """Whether the fused kernel can sample these logits (built, CPU, float32/16, bf16)."""
    return x.device.type == "cpu" and x.dtype in KERNEL_DTYPES and _function() is not None


def _outputs(rows: int, n: int, logprobs: bool
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Uninitialised output buffers; the kernel writes every element."""
    lp = torch.empty((rows, n), dtype=torch.float32) if logprobs else None
    return torch.empty((rows, n), dtype=torch.int64), lp, torch.empty(rows, dtype=torch.int8)


def sample_rows(x: torch.Tensor, ctl: Controls, n: int, logprobs: bool,
                threads: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Tokens [B, n], log-probabilities [B, n] (or None) and status [B] (int8, 0 = ok)."""
    fn = _function()
    if fn is None:
        raise RuntimeError("the fused CPU sampler is not built")
    x = x.detach().to(torch.float32)
    if x.stride(-1) != 1:
        x = x.contiguous()
    rows, vocab = x.shape
    tokens, lp, status = _outputs(rows, n, logprobs)
    args = [c.contiguous() for c in (ctl.temperature, ctl.top_k, ctl.top_p, ctl.log_min_p,
                                     ctl.seeds, ctl.keys)]
    fn(x.data_ptr(), rows, vocab, x.stride(0), *(a.data_ptr() for a in args), n,
       tokens.data_ptr(), lp.data_ptr() if lp is not None else None, status.data_ptr(),
       threads or torch.get_num_threads())
    return tokens, lp, status
