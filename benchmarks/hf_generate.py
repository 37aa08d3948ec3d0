"""gumbelkit's Hugging Face ``generate`` against ``model.generate``, and how often the
model's own logits make a continuation depend on its batch.

Speed: the test GPT-2 config (2 layers, 2 heads, width 32, vocabulary 64), batch 16,
prompts of 8 tokens, 64 new tokens (no end-of-sequence token, so both run every
step), timed side by side in one process: median of interleaved runs; the last
row times the sampler's 64 calls alone, on logits of the same shape.

Invariance (``--invariance``): every prompt (lengths 1 to 24) is generated alone
and inside padded batches of 16 prompts with the same per-request seed (padded
on the side each model expects: left for GPT-2, right for the encoder-decoders,
whose encoders give tokens absolute positions; and, to show why, Marian and BART
left-padded too);
the table counts the continuations and tokens that differ. The sampler adds no
dependence (its noise is keyed by seed and step only), so every difference comes
from the model's logits changing with padding and matrix shapes.

Run: ``python benchmarks/hf_generate.py [--threads 2] [--repeats 7] [--invariance] [--no-speed]``.
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
from gumbelkit.sampling import sample

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

    logits = torch.randn(batch, VOCAB, generator=torch.Generator().manual_seed(1))

    def sampler_alone() -> None:  # the sampler's share of ours: its calls without the model
        for step in range(new):
            sample(logits, top_k=50, top_p=0.9, seed=seeds, positions=step)

    methods = {"model.generate(do_sample=True, top_k=50, top_p=0.9)": theirs,
               "gumbelkit generate(top_k=50, top_p=0.9, seed=[16])": ours,
               f"  of which: {new} sample() calls on [{batch}, {VOCAB}] logits": sampler_alone}
    for method in (theirs, ours):  # both make batch x (8 + 64) tokens
        assert method().shape == (batch, 8 + new)
    sampler_alone()
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
    (theirs_name, theirs_ms), (ours_name, ours_ms), (alone_name, alone_ms) = medians.items()
    for name, ms in ((theirs_name, theirs_ms), (ours_name, ours_ms)):
        print(f"{name:<56}{ms:>10.1f}{batch * new / ms * 1e3:>10.0f}{base / ms:>9.2f}x")
    print(f"{alone_name:<56}{alone_ms:>10.1f}   ({alone_ms / ours_ms:.0%} of gumbelkit generate)")


def _padded(prompts: list[torch.Tensor], pad: int, left: bool
            ) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.int64)
    mask = torch.zeros(len(prompts), width, dtype=torch.int64)
    for row, p in enumerate(prompts):
        start = width - len(p) if left else 0
        ids[row, start:start + len(p)] = p
        mask[row, start:start + len(p)] = 1
    return ids, mask


def invariance(n_prompts: int = 256, batch: int = 16, new: int = 32) -> None:
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(2, VOCAB - 1, (int(n),), generator=g)
               for n in torch.randint(1, 25, (n_prompts,), generator=g)]
    seeds = torch.randint(0, 2**62, (n_prompts,), generator=g)
    seq2seq = encoder_decoders()
    cases = [("GPT-2", gpt2(), True)] + [(name, m, False) for name, m in seq2seq.items()] + \
        [(name, seq2seq[name], True) for name in ("Marian", "BART")]
    print(f"{n_prompts} prompts (1-24 tokens) alone vs in padded batches of {batch}, "
          f"{new} new tokens each, float32")
    print(f"{'model':<8}{'padding':>8}{'continuations differing':>26}{'tokens differing':>20}"
          f"{'max |logit diff|, 1st step':>30}")
    for name, model, left in cases:
        pad = model.config.pad_token_id if model.config.is_encoder_decoder else 0
        alone, first = [], []
        for p, s in zip(prompts, seeds):
            alone.append(generate(model, p[None], max_new_tokens=new,
                                  seed=s[None]).sequences[0, -new:])
        order = torch.randperm(n_prompts, generator=g)
        together = [None] * n_prompts
        for start in range(0, n_prompts, batch):
            rows = order[start:start + batch].tolist()
            ids, mask = _padded([prompts[r] for r in rows], pad, left)
            out = generate(model, ids, mask, max_new_tokens=new, seed=seeds[rows]).sequences
            for i, r in enumerate(rows):
                together[r] = out[i, -new:]
            first.append(_first_logits_gap(model, ids, mask, [prompts[r] for r in rows]))
        rows_diff = sum(not torch.equal(a, b) for a, b in zip(alone, together))
        tokens_diff = sum(int((a != b).sum()) for a, b in zip(alone, together))
        print(f"{name:<8}{'left' if left else 'right':>8}{f'{rows_diff} / {n_prompts}':>26}"
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
    parser.add_argument("--no-speed", dest="speed", action="store_false",
                        help="skip the timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.speed:
        speed(args.repeats)
    if args.invariance:
        if args.speed:
            print()
        invariance()


if __name__ == "__main__":
    main()
