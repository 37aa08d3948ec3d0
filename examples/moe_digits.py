"""A small mixture-of-experts classifier on the bundled digits, routed by Gumbel noise.

Model: ``x (64 pixels/16) -> Linear(64, 32) -> h + MoE(h) -> Linear(32, 10)``
with ``gumbelkit.nn.MoE(d_model=32, d_hidden=32, n_experts=4, k)``; the router
draws each token's experts by Gumbel-top-k and passes gradients through the
straight-through Gumbel-Softmax estimator. It is trained twice, with and
without the Switch-Transformer balance loss (coefficient ``--coef``, default
0.1, vs 0; the paper's 0.01 is too weak to stop this one-layer router from
collapsing onto one expert), on
scikit-learn's 8x8 digits (raw pixels 0..16 scaled to [0, 1]; fixed 1,437 /
360 split). Printed: test accuracy with deterministic (eval) routing, and the
load of each expert on the test set (fraction of the token-to-expert
assignments; 1/n_experts each is perfect balance), with its coefficient of
variation (std / mean: 0 is perfect balance).

    PYTHONPATH=src python examples/moe_digits.py [--epochs 40] [--k 1] [--coef 0.1]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from digits_data import accuracy, load_digits_labelled, training_parser
from torch import nn

from gumbelkit.nn import MoE


class MoEClassifier(nn.Module):
    def __init__(self, n_experts: int, k: int, estimator: str) -> None:
        super().__init__()
        self.embed = nn.Linear(64, 32)
        self.moe = MoE(32, 32, n_experts, k=k, estimator=estimator)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = torch.relu(self.embed(x))
        mixed = self.moe(h)
        return self.head(h + mixed.output), mixed.balance_loss, mixed.router.indices


def run(args: argparse.Namespace, balance_coef: float, data) -> tuple[float, torch.Tensor]:
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(args.seed)
    model = MoEClassifier(args.experts, args.k, args.estimator)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(args.epochs):
        for rows in torch.randperm(len(x_train)).split(args.batch):
            logits, balance, _ = model(x_train[rows])
            loss = nn.functional.cross_entropy(logits, y_train[rows]) + balance_coef * balance
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits, _, indices = model(x_test)
    load = torch.bincount(indices.reshape(-1), minlength=args.experts).double()
    return accuracy(logits, y_test), load / load.sum()


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--estimator", default="st_gumbel")
    parser.add_argument("--coef", type=float, default=0.1,
                        help="weight of the balance loss in the balanced run (default 0.1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_digits_labelled()
    print(f"digits (pixels/16), MoE with {args.experts} experts, k={args.k}, "
          f"estimator={args.estimator}, {args.epochs} epochs")
    header = "".join(f"{'expert ' + str(e):>10}" for e in range(args.experts))
    print(f"{'balance coef':<14}{'test acc':>10}{header}{'load CV':>10}")
    for coef in (args.coef, 0.0):
        acc, load = run(args, coef, data)
        cv = (load.std(unbiased=False) / load.mean()).item()
        cells = "".join(f"{v:>10.3f}" for v in load.tolist())
        print(f"{coef:<14}{acc:>10.4f}{cells}{cv:>10.3f}")
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
