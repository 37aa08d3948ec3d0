"""Stochastic beam search for Hugging Face transformers models, on their KV cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..._validate import check_int_range
from ...sampling import beam_search
from ...sampling._controls import MAX_POSITION, PerRow
from ._generate import _check_ids, _end_ids, _vocab
from ._model import cache_name, decoder_start, forward_names, prompt_positions, returned_cache

__all__ = ["stochastic_beam_search"]

_CALLER = "stochastic_beam_search"


class _DecoderOnly:
    """``step_fn`` of a decoder-only model: the prompt once, then one token per
    row, the cache and the attention mask reordered by ``parents``."""

    def __init__(self, model: Any, attention_mask: torch.Tensor, names: set[str],
                 cache_keyword: str) -> None:
        self.model = model
        self.mask = attention_mask
        self.cache = None
        self.cache_keyword = cache_keyword
        self.position_ids = "position_ids" in names
        self.last_logits = "logits_to_keep" in names

    def __call__(self, tokens: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
        if parents is None:
            ids, mask = tokens, self.mask
            positions = prompt_positions(mask)
        else:
            self.cache.reorder_cache(parents)
            mask = torch.cat([self.mask[parents], self.mask.new_ones(len(parents), 1)], 1)
            ids, positions = tokens[:, -1:], prompt_positions(mask)[:, -1:]
        self.mask = mask
        kwargs = dict(input_ids=ids, attention_mask=mask, use_cache=True)
        if self.cache is not None:
            kwargs[self.cache_keyword] = self.cache
        if self.position_ids:
            kwargs["position_ids"] = positions
        if self.last_logits:
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs, return_dict=True)
        self.cache = returned_cache(self.model, out, self.cache_keyword, _CALLER)
        return out.logits[:, -1]


class _EncoderDecoder:
    """``step_fn`` of an encoder-decoder model: the encoder once; the decoder one
    token per row, its cache and the encoder states gathered by ``parents``."""

    def __init__(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 cache_keyword: str) -> None:
        self.model = model
        self.input_ids = input_ids
        self.encoder_mask = attention_mask
        self.rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        self.cache = None
        self.cache_keyword = cache_keyword

    def __call__(self, tokens: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
        if parents is None:  # the first call: the search has checked its arguments
            self.encoded = self.model.get_encoder()(input_ids=self.input_ids,
                                                    attention_mask=self.encoder_mask)
        else:
            self.cache.reorder_cache(parents)
            self.rows = self.rows[parents]
        hidden = self.encoded.last_hidden_state[self.rows]
        cache = {} if self.cache is None else {self.cache_keyword: self.cache}
        out = self.model(encoder_outputs=(hidden,), attention_mask=self.encoder_mask[self.rows],
                         decoder_input_ids=tokens if parents is None else tokens[:, -1:],
                         use_cache=True, return_dict=True, **cache)
        self.cache = returned_cache(self.model, out, self.cache_keyword, _CALLER)
        return out.logits[:, -1]


def stochastic_beam_search(model: Any, input_ids: torch.Tensor,
                           attention_mask: torch.Tensor | None = None, *, k: int,
                           max_new_tokens: int,
                           eos_token_id: int | Sequence[int] | torch.Tensor | None = None,
                           pad_token_id: int | None = None,
                           temperature: PerRow = 1.0, top_k: PerRow = None,
                           top_p: PerRow = None, min_p: PerRow = None,
                           seed: int | torch.Tensor | None = None,
                           generator: torch.Generator | None = None
                           ) -> beam_search.BeamSearchOutput:
    """:func:`gumbelkit.sampling.stochastic_beam_search` on a transformers model.

    ``k`` distinct continuations per prompt, sampled without replacement from
    the model's distribution over continuations of at most ``max_new_tokens``
    tokens (Kool et al. 2019), with the model's KV cache: the prompt is run
    once, then each step runs the ``B * k`` beams' last tokens, with the
    cache reordered by the beams' parents (``Cache.reorder_cache``, as
    transformers' own beam search does). Decoder-only models
    (``GPT2LMHeadModel``, ``LlamaForCausalLM``, ...) take left-padded prompts
    with their ``attention_mask``; positions count the real tokens, as in
    ``generate``. Encoder-decoder models (``config.is_encoder_decoder``: BART,
    T5, Marian, ...) run the encoder once on ``input_ids`` and decode from
    ``decoder_start_token_id``. The model runs under ``torch.no_grad()``;
    call ``model.eval()`` first (dropout would change the distribution).

    Args:
        model: a transformers model with a language-modelling head.
        input_ids: int64 ``[B, P]`` prompts (encoder inputs for an
            encoder-decoder model), ``P >= 1``, ids in ``[0, vocab)``.
        attention_mask: ``[B, P]`` of 0 (padding) and 1 (default: all ones);
            decoder-only prompts must be left-padded.
        k: sequences per prompt; see the sampling function.
        max_new_tokens: tokens to generate at most, in ``[0, 2**31)``; 0
            returns the prompt without running the model, as
            :func:`~gumbelkit.integrations.transformers.generate` does (its
            one continuation is the empty one, so ``k`` must be 1).
        eos_token_id: an id or a list of ids in ``[0, vocab)`` that end a
            sequence (None: every sequence has ``max_new_tokens`` tokens,
            whatever the model's ``generation_config`` says), as
            in :func:`~gumbelkit.integrations.transformers.generate`. Pass
            ``model.generation_config.eos_token_id`` for a checkpoint's own.
        pad_token_id: the id in ``[0, vocab)`` written after a sequence's end;
            defaults to the first ``eos_token_id``.
        temperature, top_k, top_p, min_p, seed, generator: as in
            :func:`gumbelkit.sampling.stochastic_beam_search` (per prompt).

    Returns:
        :class:`gumbelkit.sampling.BeamSearchOutput`; ``sequences`` holds the
        prompt and the generated tokens (decoder-only) or the decoder start
        token and the generated tokens (encoder-decoder).

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> _ = torch.manual_seed(0)  # the weights
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32,
        ...                                    vocab_size=64)).eval()
        >>> out = stochastic_beam_search(model, torch.tensor([[1, 2, 3]]), k=4,
        ...                              max_new_tokens=5, seed=torch.tensor([7]))
        >>> out.sequences.shape, len({tuple(s) for s in out.sequences[0].tolist()})
        (torch.Size([1, 4, 8]), 4)
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else \
            type(input_ids).__name__
        raise ValueError(f"input_ids must be a tensor of shape [batch, length], got {shape}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    elif attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids "
                         f"{tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    # the model runs before the search checks its first logits: ids outside the
    # vocabulary, or right padding that a decoder-only model would continue, are
    # refused here, as generate() refuses them
    vocab = _vocab(model)
    _check_ids(input_ids, attention_mask, vocab, decoder_only=not encoder_decoder)
    check_int_range(max_new_tokens, "max_new_tokens", 0, MAX_POSITION - 1)
    check_int_range(k, "k", 1)
    if max_new_tokens == 0 and k > 1:
        raise ValueError(f"k must lie in [1, 1]: with max_new_tokens=0 the only continuation "
                         f"is the empty one, got k={k}")
    eos, pad_token_id = _end_ids(eos_token_id, pad_token_id, vocab)
    names = forward_names(model)
    cache_keyword = cache_name(model, names, _CALLER)
    with torch.no_grad():
        if encoder_decoder:
            step_fn = _EncoderDecoder(model, input_ids, attention_mask, cache_keyword)
            prefix = torch.full((input_ids.shape[0], 1), decoder_start(model),
                                dtype=torch.int64, device=input_ids.device)
        else:
            step_fn = _DecoderOnly(model, attention_mask, names, cache_keyword)
            prefix = input_ids
        return beam_search.stochastic_beam_search(
            step_fn, prefix, k, max_new_tokens, eos_token_id=eos,
            pad_token_id=pad_token_id, temperature=temperature, top_k=top_k, top_p=top_p,
            min_p=min_p, seed=seed, generator=generator)
