"""PyTorch bodies of the row ops: what ``torch.ops.gumbelkit.*`` runs on a device without
a kernel of its own.

Each function takes and returns exactly what its op in ``ops.py`` does (2-D
``[rows, cols]`` inputs; ``seeds`` ``[rows]`` or ``[1]``; ``keys`` ``[rows]``,
``[1]`` or ``[0]`` for "row r is keyed by r"), draws the same noise as the C
kernels (``_rng``, bit for bit), and reports bad rows with the C kernels'
errors. The relaxed values agree with the C kernels to float32 rounding, the
indices and one-hots exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _rng
from .._validate import check_logit_rows, overflow_message

# mode of the Concrete kernels
BINARY_SOFT, BINARY_HARD, HARD_CONCRETE = 0, 1, 2


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype an op computes in: float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def expand_rows(seeds: Tensor, keys: Tensor, rows: int) -> tuple[Tensor, Tensor]:
    """Per-row seeds and keys from the ops' compact forms."""
    seeds = seeds.expand(rows) if seeds.shape[0] == 1 else seeds
    if keys.shape[0] == 0:
        keys = torch.arange(rows, dtype=torch.int64, device=seeds.device)
    return seeds, keys.expand(rows) if keys.shape[0] == 1 else keys


def _noise(kind: str, x: Tensor, seeds: Tensor, keys: Tensor, dtype: torch.dtype) -> Tensor:
    rows, cols = x.shape
    seeds, keys = expand_rows(seeds, keys, rows)
    return _rng.noise(kind, (rows,), cols, _rng.Seed(per_row=seeds), dtype, x.device,
                      row_keys=keys)


def gumbel_softmax_rows(x: Tensor, tau: Tensor, seeds: Tensor, keys: Tensor, hard: bool,
                        save_soft: bool, batch_shape: list[int],
                        dim: int) -> tuple[Tensor, Tensor]:
    """``(y, soft)`` of ``ops.gumbel_softmax``: ``softmax((x + G) / tau)`` per row, or
    its one-hot at ``argmax(x + G)``; ``soft`` the relaxed sample when ``hard and
    save_soft``, else empty."""
    dtype = compute_dtype(x.dtype)
    z = x.detach().to(dtype)
    check_logit_rows(z, tuple(batch_shape), dim)
    z = z + _noise("gumbel", x, seeds, keys, dtype)
    t = tau.detach().to(dtype).expand(z.shape[0])[:, None]
    top = z.amax(-1, keepdim=True)
    overflow = torch.isinf(top / t)[:, 0]
    if bool(overflow.any()):
        row = int(overflow.nonzero()[0, 0])
        raise ValueError(overflow_message(row, tuple(batch_shape), dim,
                                          float(x[row].detach().max()), float(t[row, 0]),
                                          dtype))
    soft = torch.softmax(z / t, -1)
    empty = z.new_empty((0,))
    if not hard:
        return soft, empty
    one_hot = torch.zeros_like(soft).scatter_(-1, z.argmax(-1, keepdim=True), 1.0)
    return one_hot, soft if save_soft else empty


def row_log(y: Tensor) -> Tensor:
    """log y where y > 0, else 0 (as the backward kernels skip y == 0)."""
    return torch.where(y > 0, torch.log(torch.where(y > 0, y, 1.0)), 0.0)


def gumbel_softmax_backward_rows(grad: Tensor, soft: Tensor, tau: Tensor,
                                 need_tau: bool) -> tuple[Tensor, Tensor]:
    """``gx = y (g - <g, y>) / tau`` and, if ``need_tau``, ``gtau = -sum_i gx_i log y_i``
    per row, from the saved relaxed sample ``y = soft``."""
    g = grad.to(soft.dtype)
    t = tau.to(soft.dtype).expand(soft.shape[0])[:, None]
    gx = soft * (g - (g * soft).sum(-1, keepdim=True)) / t
    gtau = -(gx * row_log(soft)).sum(-1) if need_tau else soft.new_empty((0,))
    return gx, gtau


def gumbel_max_rows(x: Tensor, seeds: Tensor, keys: Tensor, batch_shape: list[int],
                    dim: int) -> Tensor:
    """``argmax(x + G)`` per row (the first on ties), int64 ``[rows]``."""
    dtype = compute_dtype(x.dtype)
    z = x.detach().to(dtype)
    check_logit_rows(z, tuple(batch_shape), dim)
    return (z + _noise("gumbel", x, seeds, keys, dtype)).argmax(-1)


def concrete_rows(x: Tensor, tau: Tensor, seeds: Tensor, keys: Tensor, mode: int,
                  save_soft: bool, gamma: float, span: float,
                  shape: list[int]) -> tuple[Tensor, Tensor]:
    """``(y, soft)`` of ``ops.concrete``: ``s = sigmoid((x + L) / tau)``; ``y = s``
    (Binary Concrete), ``s > 1/2`` (hard; ``soft = s`` when ``save_soft``) or
    ``clamp(s span + gamma, 0, 1)`` (Hard Concrete)."""
    dtype = compute_dtype(x.dtype)
    z = x.detach().to(dtype)
    nan = torch.isnan(z)
    if bool(nan.any()):
        flat = int(nan.reshape(-1).nonzero()[0, 0])
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), tuple(shape)))
        raise ValueError(f"logits contain NaN at index {index}")
    s = torch.sigmoid((z + _noise("logistic", x, seeds, keys, dtype)) / tau.detach().to(dtype))
    empty = z.new_empty((0,))
    if mode == HARD_CONCRETE:
        return torch.clamp(s * span + gamma, 0.0, 1.0), empty
    if mode == BINARY_HARD:
        return (s > 0.5).to(dtype), s if save_soft else empty
    return s, empty


def concrete_backward_rows(grad: Tensor, saved: Tensor, tau: Tensor, mode: int, gamma: float,
                           span: float, need_tau: bool) -> tuple[Tensor, Tensor]:
    """From the saved sample (the sigmoid ``y``, or the Hard Concrete gate ``z``, with no
    gradient where it is 0 or 1): ``gv = g y (1 - y)``, ``gx = gv / tau`` and, if
    ``need_tau``, ``gtau = -gv logit(y) / tau``."""
    g = grad.to(saved.dtype)
    t = tau.to(saved.dtype)
    live = torch.ones_like(saved, dtype=torch.bool)
    y = saved
    if mode == HARD_CONCRETE:
        live = (saved > 0) & (saved < 1)
        y = (saved - gamma) / span
        g = g * span
    gv = torch.where(live, g * (1 - y) * y, 0.0)
    gx = gv / t
    if not need_tau:
        return gx, saved.new_empty((0,))
    inside = (y > 0) & (y < 1)
    safe = torch.where(inside, y, 0.5)
    v = torch.where(inside, torch.log(safe) - torch.log1p(-safe), 0.0)
    return gx, -gv * v / t


# Rows of the top-k reference handled at once: chunk_rows * cols stays near this many
# elements, so its O(cols) temporaries never cover the whole batch.
TOP_K_CHUNK_ELEMENTS = 1 << 21


def check_top_k(k: int, cols: int) -> None:
    """``1 <= k <= cols`` for ``ops.perturbed_top_k`` (a shape check: no tensor read)."""
    if not 1 <= k <= cols:
        raise ValueError(f"k must be in [1, {cols}] (the number of columns), got {k}")


def _with_lowest_ties(z: Tensor, values: Tensor, index: Tensor) -> Tensor:
    """Rows of ``index`` (the columns of the ``k`` largest ``z``, ``values`` in decreasing
    order, some choice of ties at the k-th) with their ties at the k-th value replaced
    by the lowest tied columns, in increasing order."""
    cols = z.shape[1]
    k = index.shape[1]
    kth = values[:, k - 1:]
    above = values > kth
    need = k - above.sum(-1, keepdim=True)
    # the lowest tied columns: a topk of their column numbers (exact in float32 up to
    # 2**24 columns)
    column = torch.arange(cols, device=z.device,
                          dtype=torch.float32 if cols <= 2**24 else torch.float64)
    tied = torch.where(z == kth, column, math.inf).topk(k, dim=-1, largest=False).indices
    slot = torch.arange(k, device=z.device)
    # column number cols marks an unused entry; exactly k entries are used
    kept = torch.cat([torch.where(above, index, cols), torch.where(slot < need, tied, cols)], -1)
    return kept.sort(dim=-1).values[:, :k]


def _top_k_chunk(z: Tensor, k: int) -> Tensor:
    """Columns (increasing) of the ``k`` largest values of each row of NaN-free ``z``;
    ties at the k-th largest value go to the lowest columns."""
    rows, cols = z.shape
    if k == cols:
        return torch.arange(cols, device=z.device).expand(rows, cols).clone()
    # the k + 1 largest, in decreasing order: topk keeps every value above the k-th and
    # some of its ties (which ones is its own choice), and the (k + 1)-th equals the
    # k-th exactly where a tie is left out
    values, index = z.topk(k + 1, dim=-1)
    left_out = values[:, k] == values[:, k - 1]
    values, index = values[:, :k], index[:, :k]
    if z.device.type != "cpu":
        # a host read of left_out would stall the device: every row takes the fix-up
        # (which changes nothing in a row without a left-out tie)
        return _with_lowest_ties(z, values, index)
    top = index.sort(dim=-1).values
    fix = left_out.nonzero()[:, 0]
    if fix.numel() > 0:
        top[fix] = _with_lowest_ties(z[fix], values[fix], index[fix])
    return top


def perturbed_top_k_rows(x: Tensor, seeds: Tensor, keys: Tensor,
                         k: int) -> tuple[Tensor, Tensor]:
    """``(indices, noise)`` of ``ops.perturbed_top_k``: per row, the columns of the ``k``
    largest ``z = fl(x + G)`` in increasing order (ties at the k-th largest ``z``: the
    lowest columns) and ``G`` there, with ``G`` the ``noise`` op's Gumbel noise (stream
    0) in the compute dtype. Rows are handled in chunks of about
    ``TOP_K_CHUNK_ELEMENTS`` elements; ``x`` must hold no NaN."""
    rows, cols = int(x.shape[0]), int(x.shape[1])
    check_top_k(k, cols)
    dtype = compute_dtype(x.dtype)
    seeds, keys = expand_rows(seeds, keys, rows)
    seeds, keys = seeds.to(torch.int64), keys.to(torch.int64)
    indices = torch.empty((rows, k), dtype=torch.int64, device=x.device)
    noise_at = torch.empty((rows, k), dtype=dtype, device=x.device)
    step = max(1, TOP_K_CHUNK_ELEMENTS // cols)
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        g = torch.ops.gumbelkit.noise(seeds[start:stop], keys[start:stop], cols, 0, "gumbel",
                                      dtype)
        top = _top_k_chunk(x[start:stop].detach().to(dtype) + g, k)
        indices[start:stop] = top
        noise_at[start:stop] = g.gather(-1, top)
    return indices, noise_at
