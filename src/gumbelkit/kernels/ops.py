"""The fused kernels as PyTorch custom ops (``torch.ops.gumbelkit.*``).

Each op takes 2-D ``[rows, cols]`` tensors of any strides (categories along
the last axis), per-row 64-bit seeds and row keys, and calls the C library
(``_lib.py``) on raw pointers. Fake implementations give shapes and dtypes
only, so ``torch.compile(fullgraph=True)`` traces through the ops; autograd
formulas are registered with :func:`torch.library.register_autograd` and run
the fused backward kernels on the saved sample alone (no noise is kept). The
backward ops have autograd formulas of their own, in torch ops on the same
saved sample, so double backward (``create_graph=True``) works.

Shapes: ``tau`` is ``[rows]`` (or ``[1]``, one value for every row) for the
Gumbel-Softmax and ``[rows, cols]`` of any strides (broadcast views welcome)
for the Concrete ops; ``seeds`` is ``[rows]`` or ``[1]``; ``keys`` is
``[rows]``, ``[1]`` or ``[0]`` (then the row key is the row index). Outputs
are contiguous in the compute dtype: float64 for float64 inputs, else float32.

The ``cuda`` kernels are Triton launchers registered on these opaque ops rather
than ``torch.library.triton_op`` bodies: traced into, Inductor would recompile
them without ``enable_fp_fusion=False`` and the noise bits would change
(docs/architecture.md, "The op boundary").
"""

from __future__ import annotations

import ctypes
import importlib.util
import os

import torch
from torch import Tensor

from .. import _rng
from .._validate import (
    check_temperature,
    check_temperature_range,
    checks_deferred,
    raise_bad_logits_row,
    raise_overflow_row,
)
from . import row_reference, sampler_reference
from ._lib import KINDS, library
from .row_reference import (  # the modes of the Concrete kernels, and their dtype rule
    BINARY_HARD,
    BINARY_SOFT,
    HARD_CONCRETE,
    compute_dtype,
    row_log,
)

DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3}

def _suffix(dtype: torch.dtype) -> str:
    return "_f64" if dtype == torch.float64 else "_f32"


def _ptr(t: Tensor | None) -> ctypes.c_void_p | None:
    return None if t is None or t.numel() == 0 else ctypes.c_void_p(t.data_ptr())


def _stride(t: Tensor) -> int:
    return 0 if t.numel() == 1 else 1


# Calls on fewer elements run on one thread: starting an OpenMP team costs more
# than the work there (milliseconds on a busy machine, against microseconds).
PARALLEL_MIN_ELEMENTS = 1 << 14


def _threads(rows: int, cols: int) -> int:
    """Threads for a kernel call over ``rows x cols`` elements."""
    return torch.get_num_threads() if rows * cols >= PARALLEL_MIN_ELEMENTS else 1


def _rows_cols(x: Tensor) -> tuple[int, int]:
    return int(x.shape[0]), int(x.shape[1])


# Outputs of this many bytes or more are backed by huge pages where possible.
HUGE_PAGE_OUTPUT_BYTES = 4 << 20


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """Every output buffer comes from here (tests poison it with NaN). Large ones
    are advised to use transparent huge pages before the kernel's first write
    (``csrc/memory.c``): faulting in 4 KiB pages one by one cost more than the
    kernel itself on the benchmark machine."""
    out = torch.empty(shape, dtype=dtype)
    if out.nbytes >= HUGE_PAGE_OUTPUT_BYTES:
        library().gk_advise_huge_pages(out.data_ptr(), out.nbytes)
    return out


def _status() -> Tensor:
    return torch.empty(3, dtype=torch.int64)


def _raise_for_status(status: Tensor, batch_shape: list[int], dim: int,
                      x: Tensor | None = None, tau: Tensor | None = None) -> None:
    """Raise the error of the first bad row the kernel reported: NaN/+inf logits,
    every logit -inf, or (Gumbel-Softmax, given ``x`` and ``tau``) an overflowing
    ``(x + G) / tau``, named by the row's largest logit and its temperature.
    Where the status must stay on the device (a CUDA graph capturing), a bad row
    fails a device-side assert instead, without the row."""
    if checks_deferred(status):
        checked = status if x is not None and tau is not None else status[:2]
        torch._assert_async((checked < 0).all(), "gumbelkit: a row of the logits holds "
                            "NaN or +inf, is -inf everywhere, or overflows logits / tau")
        return
    nan_row, empty_row, overflow_row = (int(v) for v in status.tolist())
    if nan_row >= 0:
        raise_bad_logits_row("nan", nan_row, tuple(batch_shape), dim)
    if empty_row >= 0:
        raise_bad_logits_row("empty", empty_row, tuple(batch_shape), dim)
    if overflow_row >= 0 and x is not None and tau is not None:
        t = tau[overflow_row if tau.shape[0] > 1 else 0]
        raise_overflow_row(overflow_row, tuple(batch_shape), dim,
                           float(x[overflow_row].max()), float(t), tau.dtype)


# ------------------------------------------------------------ temperature


@torch.library.custom_op("gumbelkit::checked_temperature", mutates_args=())
def checked_temperature(tau: Tensor, name: str, dtype: torch.dtype) -> Tensor:
    """``tau`` (a copy) after checking every value is > 0 and finite, in its own
    dtype and in ``dtype``, the dtype the op computes in."""
    check_temperature(tau, name=name)
    check_temperature_range(tau, dtype, name)
    return tau.clone()


@checked_temperature.register_fake
def _(tau, name, dtype):
    return torch.empty_like(tau)


checked_temperature.register_autograd(lambda ctx, grad: (grad, None, None),
                                      setup_context=lambda ctx, inputs, output: None)


# ------------------------------------------------------------------ noise


@torch.library.custom_op("gumbelkit::noise", mutates_args=())
def noise(seeds: Tensor, keys: Tensor, cols: int, stream: int, kind: str,
          dtype: torch.dtype) -> Tensor:
    """``[rows, cols]`` noise of ``kind`` ("gumbel", "exponential", "logistic") for
    rows with the 64-bit ``seeds`` and row ``keys`` (both ``[rows]``), on their
    device. This body is the PyTorch reference, ``_rng.noise``."""
    return _noise_reference(seeds, keys, cols, stream, kind, dtype)


def _noise_reference(seeds: Tensor, keys: Tensor, cols: int, stream: int, kind: str,
                     dtype: torch.dtype) -> Tensor:
    return _rng.noise(kind, (seeds.shape[0],), cols, _rng.Seed(per_row=seeds), dtype,
                      seeds.device, row_keys=keys, stream=stream)


def draw_noise(kind: str, batch_shape: tuple[int, ...], n_cols: int, seed: _rng.Seed,
               dtype: torch.dtype, device: torch.device,
               row_keys: Tensor | None = None, stream: int = 0) -> Tensor:
    """``_rng.noise`` (same arguments, same values) drawn through the ``noise`` op, so
    that the C fill runs on CPU and the transforms (``torch.func``, ``torch.compile``)
    see one op instead of the reference's scratch buffers."""
    seeds, keys = _rng.row_keys_and_seeds(seed, batch_shape, device, row_keys)
    out = torch.ops.gumbelkit.noise(seeds, keys, n_cols, stream, kind, dtype)
    return out.reshape(*batch_shape, n_cols)


def _batched(t: Tensor, dim: int | None, batch: int) -> Tensor:
    """``t`` with the vmapped axis first (expanded to ``batch`` when not vmapped)."""
    return t.movedim(dim, 0) if dim is not None else t.expand(batch, *t.shape)


def _batched_rows(in_dims: tuple, batch: int, x: Tensor, seeds: Tensor, keys: Tensor
                  ) -> tuple[Tensor, Tensor, Tensor, int]:
    """``x`` as ``[batch * rows, cols]``, its per-row ``seeds`` and ``keys``, and
    ``rows``, for the vmap rule of a row op taking ``(x, seeds, keys, ...)``: compact
    seeds ([1]: one for every row) and keys ([0]: row r keyed by r) are spelled out per
    row first, so every batch element keeps the noise it has alone."""
    x = _batched(x, in_dims[0], batch)
    rows = x.shape[1]
    seeds = _batched(seeds, in_dims[1], batch).expand(batch, rows)
    keys = _batched(keys, in_dims[2], batch)
    if keys.shape[1] == 0:
        keys = torch.arange(rows, dtype=torch.int64, device=keys.device).expand(batch, rows)
    keys = keys.expand(batch, rows)
    return x.reshape(batch * rows, x.shape[2]), seeds.reshape(-1), keys.reshape(-1), rows


@noise.register_vmap
def _(info, in_dims, seeds, keys, cols, stream, kind, dtype):
    """One call for the whole batch: rows of every batch element, their own seeds and keys."""
    seeds = _batched(seeds, in_dims[0], info.batch_size)
    keys = _batched(keys, in_dims[1], info.batch_size)
    out = torch.ops.gumbelkit.noise(seeds.reshape(-1), keys.reshape(-1), cols, stream, kind,
                                    dtype)
    return out.reshape(seeds.shape[0], seeds.shape[1], cols), 0


# Test route: GUMBELKIT_BACKEND=triton sends CPU tensors through the Triton
# kernel too, so that TRITON_INTERPRET=1 runs it without a GPU.
_TRITON_ON_CPU = os.environ.get("GUMBELKIT_BACKEND") == "triton"


def _triton(module: str):
    """The Triton kernel module ``module`` of this package (imported on the first
    call: it imports Triton), or None when Triton is not installed."""
    if importlib.util.find_spec("triton") is None:
        if _TRITON_ON_CPU:
            raise ImportError("GUMBELKIT_BACKEND=triton needs triton; install it with "
                              "pip install 'gumbelkit[cuda]'")
        return None
    return importlib.import_module(f".{module}", __package__)


def _triton_noise():
    """The Triton kernel of the ``noise`` op, or None when Triton is not installed."""
    kernels = _triton("triton_kernels")
    return None if kernels is None else kernels.noise


def _triton_rows():
    """The module of the row ops' Triton kernels (``triton_rows``), or None."""
    return _triton("triton_rows")


# Whether the ``cuda`` kernels of the ops run Triton (else the op bodies run): a
# constant, so that torch.compile traces the functions that read it.
TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


@noise.register_kernel("cuda")
def _noise_cuda(seeds, keys, cols, stream, kind, dtype):
    kernel = _triton_noise()
    if kernel is None:
        return _noise_reference(seeds, keys, cols, stream, kind, dtype)
    return kernel(seeds, keys, cols, stream, kind, dtype)


@noise.register_kernel("cpu")
def _(seeds, keys, cols, stream, kind, dtype):
    if _TRITON_ON_CPU:
        return _triton_noise()(seeds, keys, cols, stream, kind, dtype)
    if library() is None:
        return _noise_reference(seeds, keys, cols, stream, kind, dtype)
    rows = int(seeds.shape[0])
    out = _empty((rows, cols), dtype)
    if out.numel() > 0:
        fill = getattr(library(), "gk_noise_fill" + _suffix(dtype))
        # named: a temporary's memory would be freed before the call reads it
        seeds, keys = seeds.contiguous(), keys.contiguous()
        fill(_ptr(out), _ptr(seeds), _ptr(keys), rows, cols,
             stream & 0xFFFFFFFF, KINDS[kind])
    return out


@noise.register_fake
def _(seeds, keys, cols, stream, kind, dtype):
    return seeds.new_empty((seeds.shape[0], cols), dtype=dtype)


# ---------------------------------------------------------- Gumbel-Softmax


@torch.library.custom_op("gumbelkit::gumbel_softmax", mutates_args=())
def gumbel_softmax(x: Tensor, tau: Tensor, seeds: Tensor, keys: Tensor, hard: bool,
                   save_soft: bool, batch_shape: list[int], dim: int) -> tuple[Tensor, Tensor]:
    """``(y, soft)``: y the sample (one-hot if ``hard``); soft the relaxed sample
    when ``hard and save_soft`` (for the backward), else empty.

    This body is the PyTorch reference (``row_reference``), for devices without a
    kernel of their own; the C kernel is registered for CPU.
    """
    return row_reference.gumbel_softmax_rows(x, tau, seeds, keys, hard, save_soft, batch_shape, dim)


def _gumbel_softmax_triton(kernels, x, tau, seeds, keys, hard, save_soft, batch_shape, dim):
    y, soft, _, status = kernels.softmax_rows(x, tau, seeds, keys, hard, save_soft)
    _raise_for_status(status, batch_shape, dim, x, tau)
    return y, soft


@gumbel_softmax.register_kernel("cuda")
def _gumbel_softmax_cuda(x, tau, seeds, keys, hard, save_soft, batch_shape, dim):
    kernels = _triton_rows()
    if kernels is None:
        return row_reference.gumbel_softmax_rows(x, tau, seeds, keys, hard, save_soft,
                                                 batch_shape, dim)
    return _gumbel_softmax_triton(kernels, x, tau, seeds, keys, hard, save_soft, batch_shape,
                                  dim)


@gumbel_softmax.register_kernel("cpu")
def _(x, tau, seeds, keys, hard, save_soft, batch_shape, dim):
    if _TRITON_ON_CPU:
        return _gumbel_softmax_triton(_triton_rows(), x, tau, seeds, keys, hard, save_soft,
                                      batch_shape, dim)
    if library() is None:
        return row_reference.gumbel_softmax_rows(x, tau, seeds, keys, hard, save_soft,
                                                 batch_shape, dim)
    seeds, keys = seeds.contiguous(), keys.contiguous()
    rows, cols = _rows_cols(x)
    dtype = compute_dtype(x.dtype)
    y = _empty((rows, cols), dtype)
    soft = _empty((rows, cols) if hard and save_soft else (0,), dtype)
    status = _status()
    kernel = getattr(library(), "gk_gumbel_softmax" + _suffix(dtype))
    kernel(_ptr(x), DTYPE_CODES[x.dtype], x.stride(0), x.stride(1), rows, cols, _ptr(tau),
           _stride(tau), _ptr(seeds), _stride(seeds), _ptr(keys), _stride(keys), 0, _ptr(y),
           _ptr(soft), int(hard), None, _threads(rows, cols), _ptr(status))
    _raise_for_status(status, batch_shape, dim, x, tau)
    return y, soft


@gumbel_softmax.register_fake
def _(x, tau, seeds, keys, hard, save_soft, batch_shape, dim):
    dtype = compute_dtype(x.dtype)
    y = x.new_empty(x.shape, dtype=dtype)
    return y, x.new_empty(x.shape if hard and save_soft else (0,), dtype=dtype)


@torch.library.custom_op("gumbelkit::gumbel_softmax_backward", mutates_args=())
def gumbel_softmax_backward(grad: Tensor, soft: Tensor, tau: Tensor,
                            need_tau: bool) -> tuple[Tensor, Tensor]:
    """``(grad_logits, grad_tau)`` from the saved relaxed sample ``soft``.

    This body is the PyTorch reference (``row_reference``), for devices without a
    kernel of their own; the C kernel is registered for CPU.
    """
    return row_reference.gumbel_softmax_backward_rows(grad, soft, tau, need_tau)


@gumbel_softmax_backward.register_kernel("cuda")
def _gumbel_softmax_backward_cuda(grad, soft, tau, need_tau):
    kernels = _triton_rows()
    if kernels is None:
        return row_reference.gumbel_softmax_backward_rows(grad, soft, tau, need_tau)
    return kernels.softmax_backward_rows(grad, soft, tau, need_tau)


@gumbel_softmax_backward.register_kernel("cpu")
def _(grad, soft, tau, need_tau):
    if _TRITON_ON_CPU:
        return _triton_rows().softmax_backward_rows(grad, soft, tau, need_tau)
    if library() is None:
        return row_reference.gumbel_softmax_backward_rows(grad, soft, tau, need_tau)
    rows, cols = _rows_cols(soft)
    grad = grad.to(soft.dtype)
    gx = _empty((rows, cols), soft.dtype)
    gtau = _empty((rows,) if need_tau else (0,), soft.dtype)
    kernel = getattr(library(), "gk_gumbel_softmax_backward" + _suffix(soft.dtype))
    kernel(_ptr(grad), DTYPE_CODES[grad.dtype], grad.stride(0), grad.stride(1), _ptr(soft),
           rows, cols, _ptr(tau), _stride(tau), _ptr(gx), _ptr(gtau), _threads(rows, cols))
    return gx, gtau


@gumbel_softmax_backward.register_fake
def _(grad, soft, tau, need_tau):
    return torch.empty_like(soft), soft.new_empty((soft.shape[0],) if need_tau else (0,))


def _gumbel_softmax_setup(ctx, inputs, output) -> None:
    x, tau, _, _, hard, _, _, _ = inputs
    y, soft = output
    ctx.save_for_backward(soft if hard else y, tau)
    ctx.set_materialize_grads(False)  # soft is rarely used downstream: no zero-filled grad
    ctx.x_dtype, ctx.hard = x.dtype, hard


def _gumbel_softmax_grad(ctx, grad_y, grad_soft):
    # Straight-through: the one-hot's gradient is the relaxed sample's, so a gradient
    # reaching the auxiliary soft output (a double backward through the saved sample)
    # takes the same path.
    grad = _sum_present(grad_y, grad_soft if ctx.hard else None)
    if grad is None:
        return (None,) * 8
    soft, tau = ctx.saved_tensors
    need_tau = bool(ctx.needs_input_grad[1])
    gx, gtau = torch.ops.gumbelkit.gumbel_softmax_backward(grad, soft, tau, need_tau)
    if need_tau and tau.shape[0] != gtau.shape[0]:
        gtau = gtau.sum(0, keepdim=True)
    return (gx.to(ctx.x_dtype), gtau.to(tau.dtype) if need_tau else None,
            None, None, None, None, None, None)


def _sum_present(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    return a if b is None else b if a is None else a + b


gumbel_softmax.register_autograd(_gumbel_softmax_grad, setup_context=_gumbel_softmax_setup)


def _gumbel_softmax_backward_setup(ctx, inputs, output) -> None:
    grad, soft, tau, need_tau = inputs
    ctx.save_for_backward(grad, soft, tau)
    ctx.set_materialize_grads(False)
    ctx.need_tau = need_tau


def _gumbel_softmax_backward_grad(ctx, grad_gx, grad_gtau):
    """The backward of ``gx = y (g - <g, y>) / tau``, ``gtau = -sum_i gx_i log y_i``
    in torch ops on the saved sample, so that it is differentiable again.

    With ``C = A - b log y`` (``A``, ``b`` the incoming gradients of gx, gtau) and
    ``Phi = sum_i C_i gx_i``: ``dPhi/dg = y (C - <C, y>) / tau``, ``dPhi/dy =
    (C (g - s) - g <C, y> - b (g - s) [y > 0]) / tau`` and ``dPhi/dtau = -Phi / tau``.
    """
    grad, soft, tau = ctx.saved_tensors
    if grad_gx is None and grad_gtau is None:
        return None, None, None, None
    g = grad.to(soft.dtype)
    t = tau.to(soft.dtype).unsqueeze(-1)
    log_y = row_log(soft)
    c = grad_gx.to(soft.dtype) if grad_gx is not None else torch.zeros_like(soft)
    b = None
    if ctx.need_tau and grad_gtau is not None:
        b = grad_gtau.to(soft.dtype).unsqueeze(-1)
        c = c - b * log_y
    s = (g * soft).sum(-1, keepdim=True)
    cy = (c * soft).sum(-1, keepdim=True)
    d_grad = d_soft = d_tau = None
    if ctx.needs_input_grad[0]:
        d_grad = (soft * (c - cy) / t).to(grad.dtype)
    if ctx.needs_input_grad[1]:
        d_soft = c * (g - s) - g * cy
        if b is not None:
            d_soft = d_soft - torch.where(soft > 0, b * (g - s), 0.0)
        d_soft = d_soft / t
    if ctx.needs_input_grad[2]:
        phi = (c * soft * (g - s)).sum(-1) / t.squeeze(-1)
        d_tau = -phi / t.squeeze(-1)
        if tau.shape[0] != d_tau.shape[0]:
            d_tau = d_tau.sum(0, keepdim=True)
        d_tau = d_tau.to(tau.dtype)
    return d_grad, d_soft, d_tau, None


gumbel_softmax_backward.register_autograd(_gumbel_softmax_backward_grad,
                                          setup_context=_gumbel_softmax_backward_setup)


@torch.library.custom_op("gumbelkit::gumbel_max", mutates_args=())
def gumbel_max(x: Tensor, seeds: Tensor, keys: Tensor, batch_shape: list[int],
               dim: int) -> Tensor:
    """``argmax(x + G)`` per row, int64 ``[rows]`` (no relaxed sample is formed).

    This body is the PyTorch reference (``row_reference``), for devices without a
    kernel of their own; the C kernel is registered for CPU.
    """
    return row_reference.gumbel_max_rows(x, seeds, keys, batch_shape, dim)


def _gumbel_max_triton(kernels, x, seeds, keys, batch_shape, dim):
    tau = torch.ones(1, dtype=compute_dtype(x.dtype), device=x.device)
    _, _, index, status = kernels.softmax_rows(x, tau, seeds, keys, True, False, index=True)
    _raise_for_status(status, batch_shape, dim)
    return index


@gumbel_max.register_kernel("cuda")
def _gumbel_max_cuda(x, seeds, keys, batch_shape, dim):
    kernels = _triton_rows()
    if kernels is None:
        return row_reference.gumbel_max_rows(x, seeds, keys, batch_shape, dim)
    return _gumbel_max_triton(kernels, x, seeds, keys, batch_shape, dim)


@gumbel_max.register_kernel("cpu")
def _(x, seeds, keys, batch_shape, dim):
    if _TRITON_ON_CPU:
        return _gumbel_max_triton(_triton_rows(), x, seeds, keys, batch_shape, dim)
    if library() is None:
        return row_reference.gumbel_max_rows(x, seeds, keys, batch_shape, dim)
    seeds, keys = seeds.contiguous(), keys.contiguous()
    rows, cols = _rows_cols(x)
    dtype = compute_dtype(x.dtype)
    index = _empty((rows,), torch.int64)
    tau = torch.ones(1, dtype=dtype)
    status = _status()
    kernel = getattr(library(), "gk_gumbel_softmax" + _suffix(dtype))
    kernel(_ptr(x), DTYPE_CODES[x.dtype], x.stride(0), x.stride(1), rows, cols, _ptr(tau), 0,
           _ptr(seeds), _stride(seeds), _ptr(keys), _stride(keys), 0, None, None, 1,
           _ptr(index), _threads(rows, cols), _ptr(status))
    _raise_for_status(status, batch_shape, dim)
    return index


@gumbel_max.register_fake
def _(x, seeds, keys, batch_shape, dim):
    return x.new_empty((x.shape[0],), dtype=torch.int64)


@gumbel_max.register_vmap
def _(info, in_dims, x, seeds, keys, batch_shape, dim):
    """One call for the whole batch (``_batched_rows``)."""
    batch = info.batch_size
    x, seeds, keys, rows = _batched_rows(in_dims, batch, x, seeds, keys)
    index = torch.ops.gumbelkit.gumbel_max(x, seeds, keys, [batch * rows], dim)
    return index.reshape(batch, rows), 0


# ----------------------------------------------------- Binary/Hard Concrete


@torch.library.custom_op("gumbelkit::concrete", mutates_args=())
def concrete(x: Tensor, tau: Tensor, seeds: Tensor, keys: Tensor, mode: int, save_soft: bool,
             gamma: float, span: float, shape: list[int]) -> tuple[Tensor, Tensor]:
    """``(y, soft)`` of Binary Concrete (soft/hard) or Hard Concrete; soft is the
    relaxed sample when ``mode == BINARY_HARD and save_soft``, else empty.

    This body is the PyTorch reference (``row_reference``), for devices without a
    kernel of their own; the C kernel is registered for CPU.
    """
    return row_reference.concrete_rows(x, tau, seeds, keys, mode, save_soft, gamma, span, shape)


def _raise_for_nan(first_nan: Tensor, shape: list[int]) -> None:
    """Raise the Concrete kernels' error for the first NaN logit, at the flat index
    ``first_nan`` (a one-element tensor, -1: none) of ``shape``. Where the index must
    stay on the device (a CUDA graph capturing), a NaN fails a device-side assert
    instead, without the index."""
    if checks_deferred(first_nan):
        torch._assert_async(first_nan.reshape(()) < 0, "gumbelkit: logits contain NaN")
        return
    flat = int(first_nan)
    if flat >= 0:
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), tuple(shape)))
        raise ValueError(f"logits contain NaN at index {index}")


def _concrete_triton(kernels, x, tau, seeds, keys, mode, save_soft, gamma, span, shape):
    y, soft, first_nan = kernels.concrete_rows(x, tau, seeds, keys, mode, save_soft, gamma,
                                               span)
    _raise_for_nan(first_nan, shape)
    return y, soft


@concrete.register_kernel("cuda")
def _concrete_cuda(x, tau, seeds, keys, mode, save_soft, gamma, span, shape):
    kernels = _triton_rows()
    if kernels is None:
        return row_reference.concrete_rows(x, tau, seeds, keys, mode, save_soft, gamma, span, shape)
    return _concrete_triton(kernels, x, tau, seeds, keys, mode, save_soft, gamma, span, shape)


@concrete.register_kernel("cpu")
def _(x, tau, seeds, keys, mode, save_soft, gamma, span, shape):
    if _TRITON_ON_CPU:
        return _concrete_triton(_triton_rows(), x, tau, seeds, keys, mode, save_soft, gamma,
                                span, shape)
    if library() is None:
        return row_reference.concrete_rows(x, tau, seeds, keys, mode, save_soft, gamma, span, shape)
    seeds, keys = seeds.contiguous(), keys.contiguous()
    rows, cols = _rows_cols(x)
    dtype = compute_dtype(x.dtype)
    y = _empty((rows, cols), dtype)
    with_soft = mode == BINARY_HARD and save_soft
    soft = _empty((rows, cols) if with_soft else (0,), dtype)
    status = _status()
    kernel = getattr(library(), "gk_concrete" + _suffix(dtype))
    kernel(_ptr(x), DTYPE_CODES[x.dtype], x.stride(0), x.stride(1), rows, cols, _ptr(tau),
           tau.stride(0), tau.stride(1), _ptr(seeds), _stride(seeds), _ptr(keys),
           _stride(keys), 0, _ptr(y), _ptr(soft), mode, gamma, span, _threads(rows, cols),
           _ptr(status))
    _raise_for_nan(status[0], shape)
    return y, soft


@concrete.register_fake
def _(x, tau, seeds, keys, mode, save_soft, gamma, span, shape):
    dtype = compute_dtype(x.dtype)
    with_soft = mode == BINARY_HARD and save_soft
    return x.new_empty(x.shape, dtype=dtype), x.new_empty(x.shape if with_soft else (0,),
                                                          dtype=dtype)


@torch.library.custom_op("gumbelkit::concrete_backward", mutates_args=())
def concrete_backward(grad: Tensor, saved: Tensor, tau: Tensor, mode: int, gamma: float,
                      span: float, need_tau: bool) -> tuple[Tensor, Tensor]:
    """``(grad_logits, grad_tau)`` from the saved sample (sigmoid, or the gate).

    This body is the PyTorch reference (``row_reference``), for devices without a
    kernel of their own; the C kernel is registered for CPU.
    """
    return row_reference.concrete_backward_rows(grad, saved, tau, mode, gamma, span, need_tau)


@concrete_backward.register_kernel("cuda")
def _concrete_backward_cuda(grad, saved, tau, mode, gamma, span, need_tau):
    kernels = _triton_rows()
    if kernels is None:
        return row_reference.concrete_backward_rows(grad, saved, tau, mode, gamma, span, need_tau)
    return kernels.concrete_backward_rows(grad, saved, tau, mode, gamma, span, need_tau)


@concrete_backward.register_kernel("cpu")
def _(grad, saved, tau, mode, gamma, span, need_tau):
    if _TRITON_ON_CPU:
        return _triton_rows().concrete_backward_rows(grad, saved, tau, mode, gamma, span,
                                                     need_tau)
    if library() is None:
        return row_reference.concrete_backward_rows(grad, saved, tau, mode, gamma, span, need_tau)
    rows, cols = _rows_cols(saved)
    grad = grad.to(saved.dtype)
    tau = tau.to(saved.dtype)
    gx = _empty((rows, cols), saved.dtype)
    gtau = _empty((rows, cols) if need_tau else (0,), saved.dtype)
    kernel = getattr(library(), "gk_concrete_backward" + _suffix(saved.dtype))
    kernel(_ptr(grad), DTYPE_CODES[grad.dtype], grad.stride(0), grad.stride(1), _ptr(saved),
           rows, cols, _ptr(tau), tau.stride(0), tau.stride(1),
           HARD_CONCRETE if mode == HARD_CONCRETE else BINARY_SOFT, gamma, span, _ptr(gx),
           _ptr(gtau), _threads(rows, cols))
    return gx, gtau


@concrete_backward.register_fake
def _(grad, saved, tau, mode, gamma, span, need_tau):
    return torch.empty_like(saved), saved.new_empty(saved.shape if need_tau else (0,))


def _concrete_setup(ctx, inputs, output) -> None:
    x, tau, _, _, mode, _, gamma, span, _ = inputs
    y, soft = output
    ctx.save_for_backward(soft if mode == BINARY_HARD else y, tau)
    ctx.set_materialize_grads(False)
    ctx.x_dtype, ctx.mode, ctx.gamma, ctx.span = x.dtype, mode, gamma, span


def _concrete_grad(ctx, grad_y, grad_soft):
    # As for the Gumbel-Softmax: the straight-through {0, 1} output and the auxiliary
    # soft output share the sigmoid's gradient.
    grad = _sum_present(grad_y, grad_soft if ctx.mode == BINARY_HARD else None)
    if grad is None:
        return (None,) * 9
    saved, tau = ctx.saved_tensors
    need_tau = bool(ctx.needs_input_grad[1])
    gx, gtau = torch.ops.gumbelkit.concrete_backward(grad, saved, tau, ctx.mode, ctx.gamma,
                                                     ctx.span, need_tau)
    return (gx.to(ctx.x_dtype), gtau.to(tau.dtype) if need_tau else None,
            None, None, None, None, None, None, None)


concrete.register_autograd(_concrete_grad, setup_context=_concrete_setup)


def _concrete_backward_setup(ctx, inputs, output) -> None:
    grad, saved, tau, mode, gamma, span, need_tau = inputs
    ctx.save_for_backward(grad, saved, tau)
    ctx.set_materialize_grads(False)
    ctx.mode, ctx.gamma, ctx.span, ctx.need_tau = mode, gamma, span, need_tau


def _concrete_backward_grad(ctx, grad_gx, grad_gtau):
    """The backward of the Concrete backward in torch ops, differentiable again.

    With ``y`` the sigmoid, ``g`` the incoming gradient (times the stretch
    ``span`` for Hard Concrete, whose gate is ``z = y span + gamma``),
    ``gv = g y (1 - y)``, ``gx = gv / tau`` and ``gtau = -gv v / tau``
    (``v = logit y``): with ``D = A - B v`` (``A``, ``B`` the incoming gradients of
    gx, gtau), ``dPhi/dg = y (1 - y) D / tau``, ``dPhi/dy = g ((1 - 2y) D - B) / tau``
    and ``dPhi/dtau = -gv D / tau^2``; nothing passes where the gate is clamped.
    """
    grad, saved, tau = ctx.saved_tensors
    if grad_gx is None and grad_gtau is None:
        return (None,) * 7
    dtype = saved.dtype
    g, t = grad.to(dtype), tau.to(dtype)
    if ctx.mode == HARD_CONCRETE:
        live = (saved > 0) & (saved < 1)
        y = (saved - ctx.gamma) / ctx.span
        g = g * ctx.span
    else:
        live = torch.ones_like(saved, dtype=torch.bool)
        y = saved
    inside = (y > 0) & (y < 1)
    safe = torch.where(inside, y, 0.5)
    v = torch.where(inside, torch.log(safe) - torch.log1p(-safe), 0.0)
    d = grad_gx.to(dtype) if grad_gx is not None else torch.zeros_like(saved)
    b = None
    if ctx.need_tau and grad_gtau is not None:
        b = grad_gtau.to(dtype)
        d = d - b * v
    d = torch.where(live, d, 0.0)
    d_grad = d_saved = d_tau = None
    if ctx.needs_input_grad[0]:
        d_grad = (y * (1 - y) * d / t * (ctx.span if ctx.mode == HARD_CONCRETE else 1.0))
        d_grad = d_grad.to(grad.dtype)
    if ctx.needs_input_grad[1]:
        d_y = (1 - 2 * y) * d
        if b is not None:
            d_y = d_y - torch.where(live & inside, b, 0.0)
        d_saved = g * d_y / t
        if ctx.mode == HARD_CONCRETE:
            d_saved = d_saved / ctx.span
    if ctx.needs_input_grad[2]:
        d_tau = (-g * y * (1 - y) * d / (t * t)).to(tau.dtype)
    return d_grad, d_saved, d_tau, None, None, None, None


concrete_backward.register_autograd(_concrete_backward_grad,
                                    setup_context=_concrete_backward_setup)


# ------------------------------------------------------------ token sampler

# Logit dtypes the C sampler reads (it computes in float32; float64 logits keep
# float64 math on the reference).
SAMPLER_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@torch.library.custom_op("gumbelkit::sample", mutates_args=())
def sample(x: Tensor, temperature: Tensor, top_k: Tensor, top_p: Tensor, log_min_p: Tensor,
           seeds: Tensor, keys: Tensor, n: int, logprobs: bool
           ) -> tuple[Tensor, Tensor, Tensor]:
    """``(tokens [B, n], logprobs [B, n] or [B, 0], status [B] int8)`` of the token
    sampler (``sampler_reference`` states the definition). This body is the
    PyTorch reference, run on every device without a kernel of its own."""
    return _sample_reference(x, temperature, top_k, top_p, log_min_p, seeds, keys, n, logprobs)


def _sample_reference(x, temperature, top_k, top_p, log_min_p, seeds, keys, n, logprobs):
    tokens, lp, status = sampler_reference.sample_rows(x, temperature, top_k, top_p, log_min_p,
                                                       seeds, keys, n, logprobs)
    return tokens, _logprobs_or_empty(lp, x, n), status


def _logprobs_or_empty(lp: Tensor | None, x: Tensor, n: int) -> Tensor:
    if lp is not None:
        return lp
    return x.new_empty((x.shape[0], 0), dtype=compute_dtype(x.dtype))


@sample.register_fake
def _(x, temperature, top_k, top_p, log_min_p, seeds, keys, n, logprobs):
    rows = x.shape[0]
    return (x.new_empty((rows, n), dtype=torch.int64),
            x.new_empty((rows, n if logprobs else 0), dtype=compute_dtype(x.dtype)),
            x.new_empty((rows,), dtype=torch.int8))


def sampler_kernel_available(x: Tensor) -> bool:
    """Whether the C sampler takes these logits (built, and a dtype it reads)."""
    return library() is not None and x.dtype in SAMPLER_DTYPES


def _triton_sample():
    """The Triton kernel of the ``sample`` op, or None when Triton is not installed."""
    kernels = _triton("triton_sampler")
    return None if kernels is None else kernels.sample


@sample.register_kernel("cuda")
def _sample_cuda(x, temperature, top_k, top_p, log_min_p, seeds, keys, n, logprobs):
    kernel = _triton_sample()
    if kernel is None:
        return _sample_reference(x, temperature, top_k, top_p, log_min_p, seeds, keys, n,
                                 logprobs)
    return kernel(x, temperature, top_k, top_p, log_min_p, seeds, keys, n, logprobs)


@sample.register_kernel("cpu")
def _(x, temperature, top_k, top_p, log_min_p, seeds, keys, n, logprobs):
    if _TRITON_ON_CPU:
        return _triton_sample()(x, temperature, top_k, top_p, log_min_p, seeds, keys, n,
                                logprobs)
    if not sampler_kernel_available(x):
        return _sample_reference(x, temperature, top_k, top_p, log_min_p, seeds, keys, n,
                                 logprobs)
    tokens, lp, status = sample_fused(x, temperature, top_k, top_p, log_min_p, seeds, keys, n,
                                      logprobs)
    return tokens, _logprobs_or_empty(lp, x, n), status


def sample_fused(x: Tensor, temperature: Tensor, top_k: Tensor, top_p: Tensor,
                 log_min_p: Tensor, seeds: Tensor, keys: Tensor, n: int, logprobs: bool,
                 threads: int | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
    """The C sampler on CPU logits: the outputs of :func:`sample`, ``None`` for the
    log-probabilities unless ``logprobs``; every output element is written."""
    x = x.detach().to(torch.float32)
    if x.stride(-1) != 1:
        x = x.contiguous()
    rows, vocab = x.shape
    tokens = _empty((rows, n), torch.int64)
    lp = _empty((rows, n), torch.float32) if logprobs else None
    status = _empty((rows,), torch.int8)
    controls = [c.contiguous() for c in (temperature.to(torch.float32), top_k, top_p,
                                         log_min_p, seeds, keys)]
    library().gk_sample_f32(_ptr(x), rows, vocab, x.stride(0), *(_ptr(c) for c in controls), n,
                            _ptr(tokens), _ptr(lp), _ptr(status), threads or _threads(rows, vocab))
    return tokens, lp, status


# ------------------------------------------------------- perturbed top-k


@torch.library.custom_op("gumbelkit::perturbed_top_k", mutates_args=())
def perturbed_top_k(x: Tensor, seeds: Tensor, keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``(indices [rows, k] int64, noise [rows, k])``: per row, the columns of the ``k``
    largest ``fl(x + G)`` in increasing order and ``G`` there (the ``noise`` op's Gumbel
    noise for the row's seed and key, in the compute dtype). Ties at the k-th largest
    value (``-inf`` logits, kept when a row has fewer than ``k`` finite ones) go to the
    lowest columns; ``1 <= k <= cols``; ``x`` holds no NaN (the caller checks).

    This body is the PyTorch reference (``row_reference``, O(cols) per chunk of rows),
    which is also the CPU kernel; the ``cuda`` kernel is ``triton_sparse.perturbed_top_k``.
    """
    return row_reference.perturbed_top_k_rows(x, seeds, keys, k)


def _triton_top_k():
    """The Triton kernel of the ``perturbed_top_k`` op, or None when Triton is not
    installed."""
    kernels = _triton("triton_sparse")
    return None if kernels is None else kernels.perturbed_top_k


@perturbed_top_k.register_kernel("cuda")
def _perturbed_top_k_cuda(x, seeds, keys, k):
    kernel = _triton_top_k()
    if kernel is None:
        return row_reference.perturbed_top_k_rows(x, seeds, keys, k)
    return kernel(x, seeds, keys, k)


@perturbed_top_k.register_kernel("cpu")
def _(x, seeds, keys, k):
    if _TRITON_ON_CPU:
        return _triton_top_k()(x, seeds, keys, k)
    return row_reference.perturbed_top_k_rows(x, seeds, keys, k)


@perturbed_top_k.register_fake
def _(x, seeds, keys, k):
    row_reference.check_top_k(k, x.shape[1])
    rows = x.shape[0]
    return (x.new_empty((rows, k), dtype=torch.int64),
            x.new_empty((rows, k), dtype=compute_dtype(x.dtype)))


@perturbed_top_k.register_vmap
def _(info, in_dims, x, seeds, keys, k):
    """One call for the whole batch (``_batched_rows``)."""
    batch = info.batch_size
    x, seeds, keys, rows = _batched_rows(in_dims, batch, x, seeds, keys)
    indices, noise_at = torch.ops.gumbelkit.perturbed_top_k(x, seeds, keys, k)
    return (indices.reshape(batch, rows, k), noise_at.reshape(batch, rows, k)), (0, 0)
