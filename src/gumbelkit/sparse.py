"""Sparse Gumbel-Softmax: relax over each row's ``k`` best perturbed categories only.

For a vocabulary of ``V`` tokens the dense relaxation keeps ``V`` numbers per
position (and autograd keeps them again for the backward pass). Here only the
``k`` categories with the largest ``logits + G`` survive, so the output and
everything saved for backward is O(k) per position. The O(V) part, choosing
the ``k`` categories, is one op (``torch.ops.gumbelkit.perturbed_top_k``): on
CPU it draws the noise in row chunks of bounded size, so the transient O(V)
work never covers the whole batch at once; on CUDA (with Triton) it is one
fused kernel (a fixed sequence of them for a small batch of long rows) that
forms the noise in registers, finds each row's k-th largest ``logits + G`` by
a search over integer keys and writes only the ``k`` indices and their
noise, so no [rows, V] tensor exists at all.
"""

from __future__ import annotations

import torch

from . import _rng
from ._autograd import divide_by_temperature, forward_as
from ._rng import SeedLike
from ._validate import (
    Temperature,
    check_dim_type,
    check_int_range,
    check_logits,
    check_temperature,
    check_temperature_range,
)
from .functional import _check_overflow, gumbel_softmax

__all__ = ["sparse_gumbel_softmax", "sparse_to_dense"]


def _top_k_perturbed(logits: torch.Tensor, k: int, seed: _rng.Seed
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (ascending) of the k largest ``logits + G`` per row, and G there.

    ``logits`` is [rows..., V] with categories last (a detached view, checked: no NaN
    or +inf, no row all -inf). The noise of row r is the same as the dense path draws
    for row r: the op ``perturbed_top_k`` draws it with the row's own seed and row key
    (ties at the k-th value, i.e. masked categories in rows with fewer than k unmasked
    ones, go to the lowest indices).
    """
    batch_shape = tuple(logits.shape[:-1])
    n_cols = logits.shape[-1]
    seeds, keys = _rng.row_keys_and_seeds(seed, batch_shape, logits.device)
    indices, noise_at = torch.ops.gumbelkit.perturbed_top_k(logits.reshape(-1, n_cols), seeds,
                                                           keys, k)
    return indices.reshape(*batch_shape, k), noise_at.reshape(*batch_shape, k)


def sparse_gumbel_softmax(logits: torch.Tensor, k: int, tau: Temperature = 1.0,
                          hard: bool = False, dim: int = -1, *, seed: SeedLike = None,
                          generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-Softmax restricted to the ``k`` largest perturbed logits of each row.

    With ``G`` the Gumbel noise that :func:`gumbelkit.gumbel_softmax` draws for
    the same seed, let ``S`` be the ``k`` categories with the largest
    ``logits_i + G_i``. Returns ``(indices, weights)`` with ``indices = S`` (in
    increasing category order) and ``weights = softmax((logits_S + G_S) / tau)``.
    Because ``S`` is chosen after adding the noise, the category with the
    largest weight is ``argmax(logits + G)``, an exact sample of
    ``softmax(logits)`` (the one :func:`gumbelkit.gumbel_max` draws with the
    same seed); the categories left out carry the smallest relaxed weights, so
    the result is the dense sample with its ``V - k`` smallest entries dropped
    and the rest renormalised. With ``k = V`` nothing is dropped and the
    result is the dense ``gumbel_softmax`` itself (bit for bit, values and
    gradients) with ``indices = 0..V-1``. For ``k < V`` memory is O(k) per
    position for the output and for autograd.
    Gradients reach ``logits`` at the selected categories. This is the
    top-k truncation of the Concrete relaxation (Jang et al. 2017; Maddison
    et al. 2017) used to feed tokens of a large vocabulary into an embedding.

    Args:
        logits: floating tensor, categories along ``dim``; finite or ``-inf``
            (masked: a masked category is selected only when a row has fewer
            than ``k`` unmasked ones, the lowest-index masked ones first, and
            then has weight and gradient 0).
        k: kept categories per row, 1 <= k <= V.
        tau: temperature > 0 and finite: a float, or a tensor broadcasting
            against ``logits`` with size 1 along ``dim``.
        hard: straight-through: the forward weights are the exact one-hot (over
            the ``k`` slots) of ``argmax(logits + G)``, the gradient is that
            of the soft weights.
        dim: the category axis; ``indices`` and ``weights`` have ``logits``'
            shape with ``dim`` of size ``k``.
        seed, generator: see :func:`gumbelkit.gumbel_noise`.

    Returns:
        ``(indices, weights)``: int64 indices and weights of ``logits``' dtype;
        each row of weights sums to 1. Feed them to
        :class:`gumbelkit.nn.SoftEmbedding` as ``emb((indices, weights))``.

    Example:
        >>> logits = torch.randn(2, 1000)
        >>> idx, w = gumbelkit.sparse_gumbel_softmax(logits, k=8, tau=0.5, seed=0)
        >>> idx.shape, w.shape
        (torch.Size([2, 8]), torch.Size([2, 8]))
        >>> torch.equal(idx.gather(-1, w.argmax(-1, keepdim=True)).squeeze(-1),
        ...             gumbelkit.gumbel_max(logits, seed=0))
        True
    """
    dim = check_logits(logits, dim)
    n_categories = logits.shape[dim]
    check_int_range(k, "k", 1, n_categories)
    tau = check_temperature(tau, logits, dim)
    if k == n_categories:
        # Nothing to drop: the dense op itself, so the two agree bit for bit on every code
        # path (its fused kernel sums the softmax in its own order).
        weights = gumbel_softmax(logits, tau, hard, dim, seed=seed, generator=generator)
        shape = [1] * logits.dim()
        shape[dim] = n_categories
        indices = torch.arange(n_categories, device=logits.device).reshape(shape)
        return indices.expand(logits.shape).contiguous(), weights
    check_temperature_range(tau, _rng.noise_dtype(logits.dtype))
    return _truncated(logits, k, tau, hard, dim, _rng.resolve_seed(seed, generator))


def _truncated(logits: torch.Tensor, k: int, tau: Temperature, hard: bool, dim: int,
               seed: _rng.Seed) -> tuple[torch.Tensor, torch.Tensor]:
    """The O(k) path of :func:`sparse_gumbel_softmax` (arguments already checked)."""
    moved = logits.movedim(dim, -1)
    indices, noise_at = _top_k_perturbed(moved.detach(), k, seed)
    # index_select on the flat logits saves only the index for backward (gather would keep
    # the whole [..., V] logits alive until the backward pass).
    n_cols = moved.shape[-1]
    offsets = torch.arange(0, indices.numel() // k * n_cols, n_cols, device=logits.device)
    flat_index = (indices + offsets.reshape(indices.shape[:-1] + (1,))).reshape(-1)
    selected = moved.reshape(-1).index_select(0, flat_index).reshape(indices.shape)
    perturbed = selected.to(noise_at.dtype) + noise_at
    if isinstance(tau, torch.Tensor):
        tau = tau.reshape((1,) * (logits.dim() - tau.dim()) + tuple(tau.shape))
        tau = tau.movedim(dim, -1).to(perturbed.dtype)
    # Masked categories (kept only in rows with fewer than k unmasked ones) stay -inf
    # without -inf / tau, whose derivative in tau is NaN.
    scores = divide_by_temperature(perturbed, tau, -1)
    _check_overflow(scores, selected, tau, -1, report_dim=dim)
    weights = torch.softmax(scores, dim=-1)
    if hard:
        winner = perturbed.detach().argmax(-1, keepdim=True)
        one_hot = torch.zeros_like(weights).scatter_(-1, winner, 1.0)
        weights = forward_as(one_hot, weights)
    return indices.movedim(-1, dim), weights.to(logits.dtype).movedim(-1, dim)


def sparse_to_dense(indices: torch.Tensor, weights: torch.Tensor, n_categories: int,
                    dim: int = -1) -> torch.Tensor:
    """Scatter ``(indices, weights)`` back to a dense tensor with ``n_categories`` along ``dim``.

    Example:
        >>> gumbelkit.sparse.sparse_to_dense(torch.tensor([0, 2]), torch.tensor([0.25, 0.75]), 4)
        tensor([0.2500, 0.0000, 0.7500, 0.0000])
    """
    if indices.shape != weights.shape:
        raise ValueError(f"indices {tuple(indices.shape)} and weights {tuple(weights.shape)} "
                         f"must have the same shape")
    check_int_range(n_categories, "n_categories", 1)
    dim = check_dim_type(dim) % max(indices.dim(), 1)
    shape = list(indices.shape)
    shape[dim] = n_categories
    dense = torch.zeros(shape, dtype=weights.dtype, device=weights.device)
    return dense.scatter(dim, indices, weights)

