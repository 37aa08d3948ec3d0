"""``generate``: a decoding loop over a Hugging Face model's forward and KV cache,
drawing every token with ``gumbelkit.sampling.sample``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from ..._validate import check_int_range
from ...sampling import sample
from ...sampling._controls import MAX_POSITION, PerRow
from ._model import (
    cache_name,
    decoder_start,
    forward_names,
    prompt_positions,
    returned_cache,
)
from ._seeds import GenerationSeed, fix_seed

__all__ = ["GenerationOutput", "generate"]

TokenIds = int | Sequence[int] | torch.Tensor | None


class GenerationOutput(NamedTuple):
    """What :func:`generate` returns.

    Attributes:
        sequences: int64 ``[B, L + T]`` for a decoder-only model (the prompt, as
            given, then the new tokens), ``[B, 1 + T]`` for an encoder-decoder
            model (the decoder start token, then the new tokens). ``T <=
            max_new_tokens`` is the number of decoding steps run: the loop
            stops early once every row has produced an end-of-sequence token;
            a row that finished earlier is filled with ``pad_token_id``.
        logprobs: float32 ``[B, T]``, the log-probability of each new token under
            its row's filtered, temperature-scaled distribution (0 after the
            row's end-of-sequence token, so a row's sum is the log-probability
            of its continuation), or None unless ``return_logprobs=True``.
    """

    sequences: torch.Tensor
    logprobs: torch.Tensor | None


def _token_ids(value: TokenIds, name: str, vocab: int) -> list[int]:
    """None, an int, or a sequence / 1-D tensor of ints, as a list of ids in [0, vocab)."""
    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dim() > 1:
            raise ValueError(f"{name} must be an int or a 1-D integer tensor, got "
                             f"{value.dtype} of shape {tuple(value.shape)}")
        value = value.reshape(-1).tolist()
    ids = [value] if isinstance(value, int) else list(value)
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"{name} must be an int or a sequence of ints, got {value!r}")
        if not 0 <= i < vocab:
            raise ValueError(f"{name} must lie in [0, {vocab}) (the model's vocabulary), "
                             f"got {i}")
    return ids


def _end_ids(eos_token_id: TokenIds, pad_token_id: int | None,
             vocab: int) -> tuple[list[int], int | None]:
    """The end ids (none: no row ends early) and the pad id (default the first end id),
    checked against the vocabulary."""
    eos = _token_ids(eos_token_id, "eos_token_id", vocab)
    if pad_token_id is None:
        return eos, eos[0] if eos else None
    if isinstance(pad_token_id, torch.Tensor) or not isinstance(pad_token_id, int):
        raise TypeError(f"pad_token_id must be an int or None, got {pad_token_id!r}")
    _token_ids(pad_token_id, "pad_token_id", vocab)
    return eos, pad_token_id


def _check_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
               vocab: int, decoder_only: bool) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 \
            or input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool \
            or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        shown = (f"{input_ids.dtype} of shape {tuple(input_ids.shape)}"
                 if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__)
        raise ValueError(f"input_ids must be an integer tensor [batch, length] with batch >= 1 "
                         f"and length >= 1, got {shown}")
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= vocab:
        raise ValueError(f"input_ids must lie in [0, {vocab}) (the model's vocabulary), got "
                         f"values in [{low}, {high}]")
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor) \
            or tuple(attention_mask.shape) != tuple(input_ids.shape):
        shown = (tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor)
                 else type(attention_mask).__name__)
        raise ValueError(f"attention_mask must be a tensor of input_ids' shape "
                         f"{tuple(input_ids.shape)}, got {shown}")
    ok = (attention_mask == 0) | (attention_mask == 1)
    if not bool(ok.all()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
    empty = (attention_mask.sum(-1) == 0).nonzero()[:, 0].tolist()
    if empty:
        raise ValueError(f"attention_mask rows {empty[:5]} attend to no token")
    if decoder_only:
        right = (attention_mask[:, -1] == 0).nonzero()[:, 0].tolist()
        if right:
            raise ValueError(f"a decoder-only model continues each row after its last column, "
                             f"so prompts must be left-padded: attention_mask[:, -1] is 0 in "
                             f"rows {right[:5]}")


def _vocab(model: torch.nn.Module) -> int:
    embeddings = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") \
        else None
    if embeddings is not None and hasattr(embeddings, "out_features"):
        return int(embeddings.out_features)
    return int(model.config.vocab_size)


@torch.no_grad()
def generate(model: torch.nn.Module, input_ids: torch.Tensor,
             attention_mask: torch.Tensor | None = None, *, max_new_tokens: int,
             temperature: PerRow = 1.0, top_k: PerRow = None, top_p: PerRow = None,
             min_p: PerRow = None, seed: GenerationSeed = None,
             generator: torch.Generator | None = None, eos_token_id: TokenIds = None,
             pad_token_id: int | None = None, return_logprobs: bool = False
             ) -> GenerationOutput:
    """Sample continuations from a Hugging Face model with per-request seeds.

    Runs the model's forward with its KV cache (one prefill, then one token
    per step for every row at once) and draws each token with
    :func:`gumbelkit.sampling.sample`: ``argmax_{i kept} (z_i + G_i)`` with
    ``z = logits / temperature`` filtered by top-k, then top-p, then min-p,
    and ``G_i`` the counter-based Gumbel noise of (row seed, step, token)
    (the Gumbel-max trick: Gumbel 1954; Maddison et al. 2014). The
    step (0 for the first new token) is the row's position in the sampler's
    noise key, so with per-row seeds a row's continuation is a function of its
    own prompt, controls and seed only, whatever the batch, the row's index or
    its padding (as far as the model's own logits are: see
    ``docs/decoding.md``). Decoder-only models continue ``input_ids``
    (left-padded, with ``attention_mask``); encoder-decoder models encode it
    once and decode from their ``decoder_start_token_id``.

    Args:
        model: a transformers model with a language-model head and a KV cache
            (``GPT2LMHeadModel``, ``LlamaForCausalLM``, ``MarianMTModel``,
            ``T5ForConditionalGeneration``, ...). Call ``model.eval()`` first:
            dropout would make tokens depend on more than the seed.
        input_ids: int ``[B, L]``, ids in ``[0, vocab)``.
        attention_mask: ``[B, L]`` of 0 (padding) and 1, or None (no padding);
            decoder-only prompts must be left-padded.
        max_new_tokens: steps to run at most, in ``[0, 2**31]``.
        temperature, top_k, top_p, min_p: as in :func:`gumbelkit.sampling.sample`,
            each a scalar or one value per row (temperature 0 is greedy).
        seed: an integer tensor ``[B]`` or a list of ``B`` ints (None entries are
            drawn once from ``generator``, else the global torch RNG): one seed
            per request, batch-invariant; an int: one seed for the batch, rows
            told apart by their index (reproducible for the same batch, not
            batch-invariant); None: that int drawn from ``generator``, else the
            global torch RNG (``torch.manual_seed`` reproduces it).
        generator: the source of drawn seeds; with an int or tensor ``seed`` a
            ``ValueError``.
        eos_token_id: an id or a list of ids in ``[0, vocab)`` that end a row
            (None: every row runs ``max_new_tokens`` steps, whatever the model's
            ``generation_config`` says). Pass
            ``model.generation_config.eos_token_id`` for a checkpoint's own.
        pad_token_id: the id written after a row's end; defaults to the first
            ``eos_token_id``.
        return_logprobs: also return each new token's log-probability.

    Returns:
        :class:`GenerationOutput` with ``sequences`` and, when asked, ``logprobs``.

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> _ = torch.manual_seed(0)
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32,
        ...                                    vocab_size=64)).eval()
        >>> prompts = torch.tensor([[5, 6, 7], [8, 9, 10]])
        >>> out = generate(model, prompts, max_new_tokens=4, temperature=0.8, top_p=0.9,
        ...                seed=torch.tensor([11, 12]))
        >>> alone = generate(model, prompts[1:], max_new_tokens=4, temperature=0.8,
        ...                  top_p=0.9, seed=torch.tensor([12]))
        >>> out.sequences.shape, torch.equal(out.sequences[1:], alone.sequences)
        (torch.Size([2, 7]), True)
    """
    names = forward_names(model)
    cache_keyword = cache_name(model, names, "generate")
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    vocab = _vocab(model)
    _check_ids(input_ids, attention_mask, vocab, decoder_only=not encoder_decoder)
    check_int_range(max_new_tokens, "max_new_tokens", 0, MAX_POSITION)
    rows, device = input_ids.shape[0], input_ids.device
    eos, pad_token_id = _end_ids(eos_token_id, pad_token_id, vocab)
    fixed = fix_seed(seed, generator, rows)
    if isinstance(fixed, torch.Tensor):
        fixed = fixed.to(device)
    controls = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    # Every control is checked by the sampler itself, on a dummy row per request,
    # before the model runs.
    sample(torch.zeros(rows, 1, device=device), **controls, seed=fixed, positions=0,
           return_logprobs=return_logprobs)
    start = decoder_start(model) if encoder_decoder else None
    if max_new_tokens == 0:
        prefix = input_ids if start is None else torch.full((rows, 1), start, device=device)
        return GenerationOutput(prefix.to(torch.int64), torch.empty(
            rows, 0, dtype=torch.float32, device=device) if return_logprobs else None)

    kwargs: dict = {"use_cache": True} if "use_cache" in names else {}
    if encoder_decoder:
        encoder = model.get_encoder()
        kwargs["encoder_outputs"] = encoder(input_ids=input_ids, attention_mask=attention_mask,
                                            return_dict=True)
        kwargs["attention_mask"] = attention_mask
        sequences = torch.full((rows, 1), start, dtype=torch.int64, device=device)
        step_input = {"decoder_input_ids": sequences}
    else:
        if "logits_to_keep" in names:
            kwargs["logits_to_keep"] = 1
        mask = attention_mask
        positions = None
        if "position_ids" in names:
            positions = prompt_positions(torch.ones_like(input_ids) if mask is None else mask)
        if mask is not None and bool((mask == 1).all()):
            mask = None  # the model's fast path for unpadded batches, as in model.generate
        sequences = input_ids.to(torch.int64)
        step_input = {"input_ids": sequences, "attention_mask": mask, "position_ids": positions}
        step_input = {k: v for k, v in step_input.items() if v is not None}

    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    eos_ids = torch.tensor(eos, dtype=torch.int64, device=device)
    new_tokens, logprobs = [], []
    cache = None
    for step in range(max_new_tokens):
        outputs = model(**step_input, **kwargs, **({cache_keyword: cache} if cache is not None
                                                   else {}), return_dict=True)
        cache = returned_cache(model, outputs, cache_keyword, "generate")
        logits = outputs.logits[:, -1]
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        out = sample(logits, **controls, seed=fixed, positions=step,
                     return_logprobs=return_logprobs)
        tokens = out.tokens
        if eos:
            tokens = torch.where(finished, pad_token_id, tokens)
        new_tokens.append(tokens)
        if return_logprobs:
            logprobs.append(torch.where(finished, 0.0, out.logprobs.float()))
        if eos:
            finished |= torch.isin(tokens, eos_ids)
            if bool(finished.all()):
                break
        if step + 1 == max_new_tokens:
            break
        if encoder_decoder:
            step_input = {"decoder_input_ids": tokens[:, None]}
        else:
            step_input = {"input_ids": tokens[:, None]}
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(rows, 1)], dim=-1)
                step_input["attention_mask"] = mask
            if positions is not None:
                positions = positions[:, -1:] + 1
                step_input["position_ids"] = positions
    lp = torch.stack(logprobs, dim=1) if return_logprobs else None
    return GenerationOutput(torch.cat([sequences, torch.stack(new_tokens, dim=1)], dim=1), lp)
