"""Learning to sort numbers with Gumbel-Sinkhorn: how often a learned matching errs.

The number-sorting experiment of Mena et al. 2018 ("Learning Latent
Permutations with Gumbel-Sinkhorn Networks", section 5.1), at the sizes of
their Table 1 (N = 5, 10, 15, 80, 100). Each of N numbers drawn from U(0, 1)
goes through the same small network (1 -> 32, ReLU, -> N; the architecture
of the paper's released code), whose outputs are the rows of an N x N score
matrix ``log_alpha`` (row: number, column: position). Training never sees the
sorting permutation: the loss is the squared error between the sorted numbers
and the numbers moved by relaxed samples ``P = gumbel_sinkhorn(log_alpha)``
(``P^T x``; ``--samples`` draws per sequence share one call). Adam at the
released code's rate 0.1 with a cosine decay to 0, temperature 1 and 10
Sinkhorn iterations (the released code's defaults); one sample per sequence
and 300 steps for every N (the released code draws 5 and trains longer) keep
the whole run within two minutes on two CPU cores. At test time the
permutation is the exact matching of the scores without noise
(``gumbelkit.matching``, the Hungarian algorithm), and the table gives the
proportion of test sequences with any misplaced number and of misplaced
numbers. The paper's own Table 1 is not quoted: its figures could not be
checked against the paper here.

    PYTHONPATH=src python examples/sort_numbers.py [--sizes 5,10,15,80,100] [--steps 300]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

import gumbelkit


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be integers separated by commas, "
                                         f"got {text!r}") from None
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError(f"every size must be >= 2, got {text!r}")
    return sizes


class Scorer(nn.Module):
    """Each number alone -> one row of scores over the N positions."""

    def __init__(self, n: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N] -> [B, N, N]
        return self.net(x.unsqueeze(-1))


def train(n: int, args: argparse.Namespace) -> Scorer:
    torch.manual_seed(args.seed)
    model = Scorer(n, args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    # a decaying step lets the last updates settle the fine order of close numbers
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    data = torch.Generator().manual_seed(args.seed + n)
    noise = torch.Generator().manual_seed(args.seed + 7 * n)
    for _ in range(args.steps):
        x = torch.rand(args.batch, n, generator=data)
        target = x.sort(-1).values
        p = gumbelkit.gumbel_sinkhorn(model(x), args.tau, args.n_iters,
                                      n_samples=args.samples, generator=noise)
        moved = (p.transpose(-1, -2) @ x.unsqueeze(-1)).squeeze(-1)  # [S, B, N]
        loss = ((moved - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    return model


@torch.no_grad()
def evaluate(model: Scorer, n: int, args: argparse.Namespace) -> tuple[float, float]:
    x = torch.rand(args.test, n, generator=torch.Generator().manual_seed(args.seed + 10_000 + n))
    position = gumbelkit.matching(model(x)).argmax(-1)
    rank = x.argsort(-1).argsort(-1)
    wrong = position != rank
    return float(wrong.any(-1).float().mean()), float(wrong.float().mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[5, 10, 15, 80, 100],
                        help="sequence lengths N, comma separated (default 5,10,15,80,100)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per N")
    parser.add_argument("--batch", type=int, default=10, help="sequences per step")
    parser.add_argument("--samples", type=int, default=1,
                        help="Gumbel-Sinkhorn samples per sequence")
    parser.add_argument("--tau", type=float, default=1.0, help="temperature")
    parser.add_argument("--n-iters", type=int, default=10, help="Sinkhorn iterations")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units")
    parser.add_argument("--lr", type=float, default=0.1,
                        help="Adam's initial learning rate (cosine decay to 0)")
    parser.add_argument("--test", type=int, default=1000, help="test sequences per N")
    # the matrices are small: a second thread saves little, and on a loaded
    # machine its synchronisation costs more than it saves
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("steps", "batch", "samples", "n_iters", "hidden", "test", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.tau > 0 or not args.lr > 0:
        parser.error(f"--tau and --lr must be > 0, got {args.tau} and {args.lr}")
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    results = []
    for n in args.sizes:
        t0 = time.perf_counter()
        model = train(n, args)
        results.append((*evaluate(model, n, args), time.perf_counter() - t0))

    print(f"sorting N numbers from U(0, 1): per-number network 1-{args.hidden}-N, "
          f"{args.steps} steps of {args.batch} sequences, {args.samples} sample(s) each, "
          f"tau={args.tau:g}, {args.n_iters} Sinkhorn iterations, Adam lr={args.lr:g} "
          f"(cosine decay); "
          f"tested on {args.test} new sequences per N with the exact matching")
    width = 9
    print(f"{'N':<28}" + "".join(f"{n:>{width}}" for n in args.sizes))
    print(f"{'prop. any wrong':<28}" + "".join(f"{r[0]:>{width}.3f}" for r in results))
    print(f"{'prop. wrong':<28}" + "".join(f"{r[1]:>{width}.5f}" for r in results))
    print(f"{'seconds (train + test)':<28}" + "".join(f"{r[2]:>{width}.1f}" for r in results))
    print("the paper's Table 1 is not reproduced here (its figures could not be checked)")
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
