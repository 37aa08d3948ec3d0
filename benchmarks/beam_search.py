"""Stochastic beam search against transformers' deterministic beam search.

The same GPT-2 model (GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64),
random weights, CPU) decodes the same prompts with 8 beams:

* ``generate(num_beams=8, do_sample=False)``: Hugging Face's beam search;
* ``gumbelkit.integrations.transformers.stochastic_beam_search(k=8)``: 8 sequences
  without replacement, with the threshold for the estimator.

Both run ``max_new_tokens`` steps (no EOS is reachable: the config's EOS id lies
outside the 64-token vocabulary) on the model's KV cache. The runs alternate,
and the ratio is of the medians, measured side by side in this process.

    PYTHONPATH=src python benchmarks/beam_search.py [--batch 4] [--prompt 16]
        [--new 32] [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="prompts")
    parser.add_argument("--prompt", type=int, default=16, help="prompt length")
    parser.add_argument("--new", type=int, default=32, help="max_new_tokens")
    parser.add_argument("--k", type=int, default=8, help="beams")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of each")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (the model's matrices are tiny: one is fastest)")
    args = parser.parse_args(argv)
    for name in ("batch", "prompt", "new", "k", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")

    import transformers

    from gumbelkit.integrations.transformers import stochastic_beam_search

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64)).eval()
    ids = torch.randint(0, 64, (args.batch, args.prompt),
                        generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    seeds = torch.arange(args.batch)

    def hf() -> None:
        with torch.no_grad():
            model.generate(ids, attention_mask=mask, num_beams=args.k, do_sample=False,
                           num_return_sequences=args.k, max_new_tokens=args.new,
                           min_new_tokens=args.new, pad_token_id=0)

    def sbs() -> None:
        stochastic_beam_search(model, ids, mask, k=args.k, max_new_tokens=args.new, seed=seeds)

    methods = {"transformers generate(num_beams, do_sample=False)": hf,
               "gumbelkit stochastic_beam_search": sbs}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for fn in methods.values():  # warm-up: imports, kernels, allocator
        fn()
    for _ in range(args.repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    print(f"beam search, GPT-2 (2 layers, 32 dims, vocab 64), {args.batch} prompts of "
          f"{args.prompt} tokens, {args.new} new tokens, k={args.k} beams, "
          f"{args.threads} threads, median of {args.repeats}")
    for name, ms in medians.items():
        print(f"{name:52s} {ms:9.2f} ms")
    hf_ms, sbs_ms = medians.values()
    print(f"ratio stochastic / deterministic: {sbs_ms / hf_ms:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
