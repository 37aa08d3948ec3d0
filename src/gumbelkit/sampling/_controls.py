"""The sampler's per-row controls, validated and broadcast to one value per row.

Every control is a Python scalar or a tensor of shape [B]. The result lives on
the logits' device (so that the non-blocking mode copies nothing to the host)
in the dtypes both sampler paths read: temperature
float32 (0 = greedy), top_k int64 (0 = off), top_p float64 (1 = off),
log(min_p) float64 (-inf = off), and every row's 64-bit seed and row key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import NamedTuple

import torch

from .. import _rng
from .._validate import check_rows

SeedArg = int | torch.Tensor | Sequence[int | None] | None
PerRow = float | int | torch.Tensor | None

MAX_POSITION = 2**31


class Controls(NamedTuple):
    """The per-row controls in the order ``torch.ops.gumbelkit.sample`` takes them."""

    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor
    log_min_p: torch.Tensor
    seeds: torch.Tensor
    keys: torch.Tensor


def _per_row(value: PerRow, name: str, rows: int, dtype: torch.dtype, device: torch.device,
             integer: bool = False) -> torch.Tensor:
    """A scalar or a [rows] tensor as a [rows] tensor of ``dtype`` on ``device``."""
    if isinstance(value, torch.Tensor):
        if integer and (value.dtype.is_floating_point or value.dtype.is_complex
                        or value.dtype == torch.bool):
            raise ValueError(f"{name} must have an integer dtype, got {value.dtype}")
        if not integer and not value.dtype.is_floating_point:
            value = value.to(torch.float64)
        if value.dim() == 0:
            value = value.reshape(1).expand(rows)
        if tuple(value.shape) != (rows,):
            raise ValueError(f"{name} must be a scalar or a tensor of shape [{rows}] (one value "
                             f"per row), got shape {tuple(value.shape)}")
        return value.detach().to(device, dtype)
    if integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, an integer tensor or None, "
                            f"got {type(value).__name__}")
    elif isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, a tensor or None, "
                        f"got {type(value).__name__}")
    return torch.full((rows,), value, dtype=dtype, device=device)


def _seeds_and_keys(seed: SeedArg, generator: torch.Generator | None, rows: int,
                    positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row's (seed, row key).

    A per-row seed (tensor entry or list entry) gives the row key = position,
    so the row's noise depends on nothing else. Rows without their own seed
    share one 64-bit seed (``seed=int``, else drawn from ``generator`` or the
    global torch RNG) and are told apart by the key ``2**32 * position + row``.
    ``generator`` only serves rows without their own seed: beside an int or a
    tensor seed it would be ignored, so that is a ``ValueError``; beside a list
    it serves the None entries, and is accepted when there are none, so that
    acceptance never depends on the batch's composition.
    """
    if not isinstance(seed, (list, tuple)):
        _rng.check_seed_source(seed, generator)
    device = positions.device
    batch_keys = (positions << 32) | torch.arange(rows, dtype=torch.int64, device=device)
    if isinstance(seed, torch.Tensor):
        if tuple(seed.shape) != (rows,):
            raise ValueError(f"a seed tensor must have shape [{rows}] (one seed per row), got "
                             f"shape {tuple(seed.shape)}")
        return _rng.resolve_seed(seed).per_row.to(device), positions
    if isinstance(seed, (list, tuple)):
        if len(seed) != rows:
            raise ValueError(f"a seed list must have one entry (int or None) per row: {rows}, "
                             f"got {len(seed)}")
        mine = [s is not None for s in seed]
        # decided on the host list: bool() of a device tensor would wait for the device
        shared = 0 if all(mine) else _rng.resolve_seed(None, generator).scalar
        words = [_rng.resolve_seed(s).scalar if s is not None else shared for s in seed]
        seeds = torch.tensor([_rng.as_int64(w) for w in words], dtype=torch.int64, device=device)
        own = torch.tensor(mine, dtype=torch.bool, device=device)
        return seeds, torch.where(own, positions, batch_keys)
    shared = _rng.resolve_seed(seed, generator).scalar
    return torch.full((rows,), _rng.as_int64(shared), dtype=torch.int64, device=device), batch_keys


def controls(rows: int, *, temperature: PerRow, top_k: PerRow, top_p: PerRow, min_p: PerRow,
             seed: SeedArg, positions: PerRow, generator: torch.Generator | None,
             validate: bool = True, device: torch.device | str = "cpu"
             ) -> tuple[Controls, torch.Tensor]:
    """Every control broadcast to [rows] on ``device``, and the bool [rows] mask of
    rows whose controls are out of range.

    With ``validate=True`` an out-of-range value is a ``ValueError`` naming the
    row (the mask is then all False). With ``validate=False`` nothing is read
    back to the host: such rows are only marked in the mask, and their controls
    replaced by harmless defaults, so the caller can flag them.
    """
    device = torch.device(device)
    t64 = _per_row(temperature, "temperature", rows, torch.float64, device)
    t32 = t64.to(torch.float32)
    k = torch.zeros(rows, dtype=torch.int64, device=device) if top_k is None else \
        _per_row(top_k, "top_k", rows, torch.int64, device, integer=True).clamp(min=0)
    p = torch.ones(rows, dtype=torch.float64, device=device) if top_p is None else \
        _per_row(top_p, "top_p", rows, torch.float64, device)
    mp = torch.zeros(rows, dtype=torch.float64, device=device) if min_p is None else \
        _per_row(min_p, "min_p", rows, torch.float64, device)
    pos = torch.zeros(rows, dtype=torch.int64, device=device) if positions is None else \
        _per_row(positions, "positions", rows, torch.int64, device, integer=True)
    checks = [
        (t64, torch.isfinite(t64) & (t64 >= 0), "temperature",
         ">= 0 and finite (0 means greedy)"),
        (t64, torch.isfinite(t32) & ((t32 > 0) | (t64 == 0)), "temperature",
         "representable in float32 (between 1.2e-38 and 3.4e38, or 0)"),
        (p, (p > 0) & (p <= 1), "top_p", "in (0, 1] (1 switches the filter off)"),
        (mp, (mp >= 0) & (mp <= 1), "min_p", "in [0, 1] (0 switches the filter off)"),
        (pos, (pos >= 0) & (pos < MAX_POSITION), "positions", f"in [0, {MAX_POSITION})"),
    ]
    bad = torch.zeros(rows, dtype=torch.bool, device=device)
    for values, ok, name, allowed in checks:
        if validate:
            check_rows(values, ok, name, allowed)
        else:
            bad |= ~ok
    if not validate:
        t32 = torch.where(bad, 1.0, t32)
        p = torch.where(bad, 1.0, p)
        mp = torch.where(bad, 0.0, mp)
        pos = torch.where(bad, 0, pos)
    seeds, keys = _seeds_and_keys(seed, generator, rows, pos)
    log_min_p = torch.where(mp > 0, torch.log(mp), -math.inf)
    return Controls(t32, k, p, log_min_p, seeds, keys), bad
