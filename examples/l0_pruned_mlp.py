"""L0-pruned MLP on the bundled digits: which input pixels does a classifier need?

Two MLPs 64 -> 100 -> 10 (ReLU) are trained the same way on scikit-learn's
8x8 digits (raw pixels 0..16 scaled to [0, 1]; fixed 1,437 / 360 split): a
plain one, and one whose first layer is ``gumbelkit.nn.L0Linear`` -- a Hard
Concrete gate per input pixel with the expected-L0 penalty of Louizos et al.
2018 added to the loss as ``lam * penalty() / N``. The pruned network is then
exported with ``to_linear()`` to plain ``torch.nn`` layers over the surviving
pixels and evaluated again.

    PYTHONPATH=src python examples/l0_pruned_mlp.py [--epochs 40] [--lam 0.5]
"""

from __future__ import annotations

import sys
import time

import torch
from digits_data import accuracy, load_digits_labelled, training_parser
from torch import nn

from gumbelkit.nn import L0Linear


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int,
          penalty=None, lam: float = 0.0) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for rows in torch.randperm(len(x)).split(batch):
            loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
            if penalty is not None:
                loss = loss + lam * penalty() / len(x)
            opt.zero_grad()
            loss.backward()
            opt.step()


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0])
    parser.add_argument("--lam", type=float, default=0.5,
                        help="weight of the expected-L0 penalty (per training example)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_digits_labelled()

    torch.manual_seed(args.seed)
    plain = nn.Sequential(nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10))
    train(plain, x_train, y_train, args.epochs, args.batch)
    plain.eval()

    torch.manual_seed(args.seed)
    gated = L0Linear(64, 100, droprate_init=0.2)
    pruned = nn.Sequential(gated, nn.ReLU(), nn.Linear(100, 10))
    train(pruned, x_train, y_train, args.epochs, args.batch, gated.penalty, args.lam)
    pruned.eval()

    linear, kept = gated.to_linear()
    exported = nn.Sequential(linear, nn.ReLU(), pruned[2])
    with torch.no_grad():
        acc_plain = accuracy(plain(x_test), y_test)
        acc_pruned = accuracy(pruned(x_test), y_test)
        acc_exported = accuracy(exported(x_test[:, kept]), y_test)
    mask = torch.zeros(64, dtype=torch.bool)
    mask[kept] = True

    print(f"digits (pixels/16), {len(x_train)} train / {len(x_test)} test, MLP 64-100-10, "
          f"{args.epochs} epochs, lam={args.lam}")
    print(f"{'model':<34}{'test accuracy':>14}{'input pixels':>14}")
    print(f"{'plain MLP':<34}{acc_plain:>14.4f}{64:>14}")
    print(f"{'L0Linear MLP (eval gates)':<34}{acc_pruned:>14.4f}{kept.numel():>14}")
    print(f"{'exported nn.Linear over kept':<34}{acc_exported:>14.4f}{kept.numel():>14}")
    print(f"pixels pruned: {gated.gate.sparsity():.4f} ({64 - kept.numel()} of 64); "
          f"kept pixels (8x8, # = kept):")
    for r in range(8):
        print("  " + "".join("#" if mask[8 * r + c] else "." for c in range(8)))
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
