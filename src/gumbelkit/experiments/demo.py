"""A short, honest demonstration of Gumbel-max and Gumbel-Softmax.

Draws 200,000 Gumbel-max samples and prints their frequencies beside the exact
softmax probabilities, then shows one Gumbel-Softmax sample at falling
temperatures (same noise, so only tau changes).

Example:
    gumbelkit demo --seed 0
"""

from __future__ import annotations

import argparse

import torch

import gumbelkit

from .preflight import fits_in_memory, offset_seed, seed_value
from .vae import positive_int

# Peak bytes per Gumbel-max draw of the 6-category row (measured: 8 with the fused
# kernel, whose only output is the int64 index; about 660 on the pure-PyTorch path,
# whose Philox words and noise are tensors).
BYTES_PER_DRAW = {"fused-cpu": 16}
BYTES_PER_DRAW_REFERENCE = 800


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=seed_value, default=0,
                        help="noise seed in [0, 2**64) (default 0)")
    parser.add_argument("--draws", type=positive_int, default=200_000,
                        help="Gumbel-max draws for the frequency table, >= 1 and as many as "
                        "fit in memory (default 200000)")


def run(args: argparse.Namespace) -> int:
    per_draw = BYTES_PER_DRAW.get(gumbelkit.backend(), BYTES_PER_DRAW_REFERENCE)
    fits_in_memory("--draws", args.draws, args.draws * per_draw, per_draw, "draws")
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, float("-inf")])
    probs = torch.softmax(logits, -1)
    draws = gumbelkit.gumbel_max(logits.expand(args.draws, -1), seed=args.seed)
    freq = torch.bincount(draws, minlength=logits.numel()).double() / args.draws
    print(f"Gumbel-max: argmax(logits + G) over {args.draws} draws (backend: "
          f"{gumbelkit.backend()})")
    print(f"{'category':>8} {'logit':>7} {'softmax p':>10} {'frequency':>10} {'std err':>8}")
    for i, (lg, p, f) in enumerate(zip(logits.tolist(), probs.tolist(), freq.tolist())):
        se = (p * (1 - p) / args.draws) ** 0.5
        print(f"{i:>8} {lg:>7.2f} {p:>10.5f} {f:>10.5f} {se:>8.5f}")
    print("\nGumbel-Softmax: softmax((logits + G) / tau), one noise draw, falling tau")
    print(f"{'tau':>6}  sample" + " " * 40 + "max   entropy")
    for tau in (5.0, 2.0, 1.0, 0.5, 0.1, 0.01):
        y = gumbelkit.gumbel_softmax(logits, tau=tau, seed=offset_seed(args.seed, 1))
        entropy = -(y * torch.log(y.clamp_min(1e-30))).sum()
        cells = " ".join(f"{v:.3f}" for v in y.tolist())
        print(f"{tau:>6.2f}  [{cells}]  {y.max():.3f}  {entropy:.3f}")
    hard = gumbelkit.gumbel_softmax(logits, tau=0.5, hard=True,
                                  seed=offset_seed(args.seed, 1))
    print(f"\nhard=True (straight-through) forward is the exact one-hot: {hard.tolist()}")
    return 0
