"""Small randomly initialised Hugging Face models built from configs (nothing is downloaded).

Every builder fixes its own initial weights (the global torch RNG is left as it
was) and returns the model in eval mode.
"""

from __future__ import annotations

import torch
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    GPT2Config,
    GPT2LMHeadModel,
    MarianConfig,
    MarianMTModel,
    T5Config,
    T5ForConditionalGeneration,
)

VOCAB = 64
EOS = 1


def _built(make, seed: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make().eval()


def gpt2(vocab: int = VOCAB, seed: int = 0, initializer_range: float = 0.02) -> GPT2LMHeadModel:
    """The test GPT-2: 2 layers, 2 heads, width 32."""
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=vocab, bos_token_id=0,
                        eos_token_id=EOS, initializer_range=initializer_range)
    return _built(lambda: GPT2LMHeadModel(config), seed)


def marian(seed: int = 0) -> MarianMTModel:
    config = MarianConfig(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2,
                          encoder_attention_heads=2, decoder_attention_heads=2,
                          encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
                          pad_token_id=VOCAB - 1, decoder_start_token_id=VOCAB - 1,
                          eos_token_id=EOS, forced_eos_token_id=None)
    return _built(lambda: MarianMTModel(config), seed)


def bart(seed: int = 0) -> BartForConditionalGeneration:
    config = BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
                        forced_eos_token_id=None, forced_bos_token_id=None)
    return _built(lambda: BartForConditionalGeneration(config), seed)


def t5(seed: int = 0) -> T5ForConditionalGeneration:
    config = T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                      num_decoder_layers=2, num_heads=2, decoder_start_token_id=0,
                      pad_token_id=0, eos_token_id=EOS)
    return _built(lambda: T5ForConditionalGeneration(config), seed)


ENCODER_DECODERS = {"marian": marian, "bart": bart, "t5": t5}


def prompts(lengths: list[int], seed: int = 0, vocab: int = VOCAB, pad: int = 0,
            side: str = "left") -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Random prompts of the given lengths padded with ``pad`` on the ``side`` that the
    model expects (decoder-only: left; encoder-decoder: right, so that every token keeps
    its position): (ids, mask, each alone)."""
    g = torch.Generator().manual_seed(seed)
    alone = [torch.randint(2, vocab, (n,), generator=g) for n in lengths]
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad, dtype=torch.int64)
    mask = torch.zeros(len(lengths), width, dtype=torch.int64)
    for row, p in enumerate(alone):
        start = width - len(p) if side == "left" else 0
        ids[row, start:start + len(p)] = p
        mask[row, start:start + len(p)] = 1
    return ids, mask, alone
