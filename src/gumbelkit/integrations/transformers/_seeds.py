"""Seeds fixed once per generation, so every decoding step draws from the same stream."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ... import _rng

GenerationSeed = int | torch.Tensor | Sequence[int | None] | None


def fix_seed(seed: GenerationSeed, generator: torch.Generator | None,
             rows: int | None) -> int | torch.Tensor:
    """``seed=`` / ``generator=`` resolved once, as what ``sample`` takes every step.

    * an int stays the batch's one seed (rows told apart by row index and
      position, as in ``sample``);
    * None draws that one seed now from ``generator`` (else the global torch RNG);
    * an integer tensor ``[rows]`` is one seed per row;
    * a list of int/None is one seed per row, each None drawn now from
      ``generator`` (else the global torch RNG), so those rows keep one seed
      for the whole continuation.

    ``rows`` is the batch size when known (``None``: checked at the first step).
    """
    if not isinstance(seed, (list, tuple)):
        _rng.check_seed_source(seed, generator)
    if seed is None:
        return _rng.resolve_seed(None, generator).scalar
    if isinstance(seed, torch.Tensor):
        if seed.dim() != 1 or (rows is not None and seed.shape[0] != rows):
            want = f"[{rows}] (one seed per row of input_ids)" if rows is not None else "[batch]"
            raise ValueError(f"a seed tensor must have shape {want}, got shape "
                             f"{tuple(seed.shape)}")
        return _rng.resolve_seed(seed).per_row
    if isinstance(seed, (list, tuple)):
        if rows is not None and len(seed) != rows:
            raise ValueError(f"a seed list must have one entry (int or None) per row of "
                             f"input_ids: {rows}, got {len(seed)}")
        words = [_rng.resolve_seed(s, generator if s is None else None).scalar for s in seed]
        return torch.tensor([_rng.as_int64(w) for w in words], dtype=torch.int64)
    _rng.resolve_seed(seed)  # the type and range checks
    return seed
