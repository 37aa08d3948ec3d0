"""What both adapters read from a transformers model: the keyword of its KV cache,
the decoder start token, and the positions of left-padded prompts."""

from __future__ import annotations

import inspect
from typing import Any

import torch


def forward_names(model: torch.nn.Module) -> set[str]:
    """The keyword arguments ``model.forward`` takes."""
    return set(inspect.signature(model.forward).parameters)


def cache_name(model: torch.nn.Module, names: set[str], caller: str) -> str:
    """The keyword under which ``model.forward`` takes its KV cache, and under which its
    outputs return it; a ``ValueError`` naming ``caller`` if it takes none."""
    for name in ("cache", "past_key_values"):  # transformers >= 5.25, earlier releases
        if name in names:
            return name
    raise ValueError(f"{caller} needs a model with a KV cache: {type(model).__name__}.forward "
                     f"takes neither `cache` nor `past_key_values` (its arguments: "
                     f"{sorted(names)})")


def returned_cache(model: torch.nn.Module, outputs: Any, name: str, caller: str) -> Any:
    """``outputs``' KV cache, which the next step passes back under ``name``."""
    cache = outputs.get(name)
    if cache is None:
        raise ValueError(f"{type(model).__name__} returned no KV cache "
                         f"(outputs.{name} is None); {caller} needs one")
    return cache


def decoder_start(model: torch.nn.Module) -> int:
    """An encoder-decoder model's ``decoder_start_token_id``: its generation_config's,
    else its config's."""
    for config in (getattr(model, "generation_config", None), model.config):
        start = getattr(config, "decoder_start_token_id", None)
        if start is not None:
            return int(start)
    raise ValueError(f"{type(model).__name__} is an encoder-decoder model without a "
                     f"decoder_start_token_id in its generation_config or config")


def prompt_positions(mask: torch.Tensor) -> torch.Tensor:
    """int64 ``position_ids`` of left-padded prompts: each row's tokens at the positions
    they have alone (0, 1, ... from the row's first unmasked token), padding at 0."""
    ones = mask.to(torch.int64)
    return (ones.cumsum(-1) - 1).clamp(min=0)
