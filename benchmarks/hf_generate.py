"""gumbelkit's Hugging Face ``generate`` against ``model.generate``, and how often the
model's own logits make a continuation depend on its batch.

Speed: the test GPT-2 config (2 layers, 2 heads, width 32, vocabulary 64), batch 16,
prompts of 8 tokens, 64 new tokens (no end-of-sequence token, so both run every
step), timed side by side in one process: median of interleaved runs.

Invariance (``--invariance``): every prompt (lengths 1 to 24) is generated alone
and inside left-padded batches of 16 other prompts with the same per-request seed;
the table counts the continuations and tokens that differ. The sampler adds no
dependence (its noise is keyed by seed and step only), so every difference comes
from the model's logits changing with padding and matrix shapes.

Run: ``python benchmarks/hf_generate.py [--threads 2] [--repeats 7] [--invariance]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

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

from gumbelkit.integrations.transformers import generate

VOCAB = 64


def _model(make, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return make().eval()


def gpt2() -> GPT2LMHeadModel:
    return _model(lambda: GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32,
                                                     vocab_size=VOCAB)))


def encoder_decoders() -> dict[str, torch.nn.Module]:
    common = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2,
                  encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                  decoder_ffn_dim=64, max_position_embeddings=128)
    return {
        "Marian": _model(lambda: MarianMTModel(MarianConfig(
            **common, pad_token_id=VOCAB - 1, decoder_start_token_id=VOCAB - 1)), 1),
        "BART": _model(lambda: BartForConditionalGeneration(BartConfig(**common)), 2),
        "T5": _model(lambda: T5ForConditionalGeneration(T5Config(
            vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
            num_heads=2, decoder_start_token_id=0, pad_token_id=0)), 3),
    }


def speed(repeats: int) -> None:
    model = gpt2()
    batch, new = 16, 64
    prompts = torch.randint(0, VOCAB, (batch, 8), generator=torch.Generator().manual_seed(0))
    seeds = torch.arange(batch)

    def ours() -> torch.Tensor:
        return generate(model, prompts, max_new_tokens=new, top_k=50, top_p=0.9,
                        seed=seeds).sequences

    def theirs() -> torch.Tensor:
        return model.generate(prompts, do_sample=True, top_k=50, top_p=0.9, max_new_tokens=new,
                              min_new_tokens=new, pad_token_id=0)

    methods = {"model.generate(do_sample=True, top_k=50, top_p=0.9)": theirs,
               "gumbelkit generate(top_k=50, top_p=0.9, seed=[16])": ours}
    for method in methods.values():  # warm up, and both make batch x (8 + 64) tokens
        assert method().shape == (batch, 8 + new)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            start = time.perf_counter()
            method()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    base = medians[next(iter(methods))]
    print(f"GPT-2 test config (vocab {VOCAB}), batch {batch}, {new} new tokens, "
          f"{torch.get_num_threads()} threads, median of {repeats} interleaved runs")
    print(f"{'method':<56}{'ms':>10}{'tokens/s':>10}{'speed-up':>10}")
    for name, ms in medians.items():
        print(f"{name:<56}{ms:>10.1f}{batch * new / ms * 1e3:>10.0f}{base / ms:>9.2f}x")


def _padded(prompts: list[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.int64)
    mask = torch.zeros(len(prompts), width, dtype=torch.int64)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = p
        mask[row, width - len(p):] = 1
    return ids, mask


def invariance(n_prompts: int = 64, batch: int = 16, new: int = 32) -> None:
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(2, VOCAB - 1, (int(n),), generator=g)
               for n in torch.randint(1, 25, (n_prompts,), generator=g)]
    seeds = torch.randint(0, 2**62, (n_prompts,), generator=g)
    models = {"GPT-2": gpt2(), **encoder_decoders()}
    print(f"{n_prompts} prompts (1-24 tokens) alone vs in left-padded batches of {batch}, "
          f"{new} new tokens each, float32")
    print(f"{'model':<8}{'continuations differing':>26}{'tokens differing':>20}"
          f"{'max |logit diff|, 1st step':>30}")
    for name, model in models.items():
        pad = model.config.pad_token_id if model.config.is_encoder_decoder else 0
        alone, first = [], []
        for p, s in zip(prompts, seeds):
            alone.append(generate(model, p[None], max_new_tokens=new,
                                  seed=s[None]).sequences[0, -new:])
        order = torch.randperm(n_prompts, generator=g)
        together = [None] * n_prompts
        for start in range(0, n_prompts, batch):
            rows = order[start:start + batch].tolist()
            ids, mask = _padded([prompts[r] for r in rows], pad)
            out = generate(model, ids, mask, max_new_tokens=new, seed=seeds[rows]).sequences
            for i, r in enumerate(rows):
                together[r] = out[i, -new:]
            first.append(_first_logits_gap(model, ids, mask, [prompts[r] for r in rows]))
        rows_diff = sum(not torch.equal(a, b) for a, b in zip(alone, together))
        tokens_diff = sum(int((a != b).sum()) for a, b in zip(alone, together))
        print(f"{name:<8}{f'{rows_diff} / {n_prompts}':>26}"
              f"{f'{tokens_diff} / {n_prompts * new}':>20}{max(first):>30.2e}")


@torch.no_grad()
def _first_logits_gap(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                      prompts: list[torch.Tensor]) -> float:
    """The largest difference between a prompt's first-step logits in the batch and alone."""
    def last_logits(i: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        if model.config.is_encoder_decoder:
            start = model.generation_config.decoder_start_token_id
            dec = torch.full((i.shape[0], 1), start, dtype=torch.int64)
            return model(input_ids=i, attention_mask=m, decoder_input_ids=dec).logits[:, -1]
        pos = (m.cumsum(-1) - 1).clamp(min=0)
        return model(input_ids=i, attention_mask=m, position_ids=pos).logits[:, -1]

    batched = last_logits(ids, mask)
    return max(float((batched[r] - last_logits(p[None], torch.ones_like(p[None]))[0])
                     .abs().max()) for r, p in enumerate(prompts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--invariance", action="store_true",
                        help="also count the tokens that differ alone and in a padded batch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    speed(args.repeats)
    if args.invariance:
        print()
        invariance()


if __name__ == "__main__":
    main()
