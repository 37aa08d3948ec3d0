"""A small discrete VAE on the bundled digits: Gumbel codebook vs nearest-neighbour VQ.

What it shows: the same convolutional autoencoder with a grid of discrete
codes (``--grid`` x ``--grid`` codes per image, ``--codes`` codebook entries)
trained three ways on scikit-learn's 8x8 digits (raw pixels 0..16 scaled to
[0, 1]; the fixed 1,437 / 360 split):

* ``gumbel soft``: ``gumbelkit.nn.GumbelQuantizer`` with the soft relaxation
  and the temperature annealed exponentially from 1 to 1/16, as DALL-E's dVAE
  (Ramesh et al. 2021), plus its KL to a uniform prior;
* ``gumbel straight-through``: the same with ``hard=True`` (one codebook row
  forward, the relaxation's gradient backward);
* ``VQ (nearest)``: a VQ-VAE bottleneck (van den Oord et al. 2017): nearest
  codebook row, straight-through copy of the gradient, codebook loss plus
  commitment loss with beta = 0.25.

Every model decodes *hard* codes at test time (the Gumbel ones take
``argmax(logits)``, no noise), so the printed test reconstruction error
(mean squared error per pixel, pixels in [0, 1]) is that of a discrete code.
Codebook usage on the test set: the perplexity of the code frequencies
(``--codes`` is the most, 1 the least) and the number of dead codes (never
chosen). docs/layers.md shows a run and what it does and does not show.

    PYTHONPATH=src python examples/dvae_digits.py [--epochs 30] [--grid 4] [--codes 64]
                                                  [--kl-weight 0.01]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from digits_data import load_digits_labelled, training_parser
from torch import nn

from gumbelkit.nn import GumbelQuantizer, codebook_usage
from gumbelkit.schedules import Exponential

CODE_DIM = 16
HIDDEN = 32


def encoder(grid: int) -> nn.Sequential:
    """[B, 1, 8, 8] -> [B, HIDDEN, grid, grid]."""
    downs = {4: 1, 2: 2}[grid]
    layers: list[nn.Module] = [nn.Conv2d(1, HIDDEN, 3, padding=1), nn.ReLU()]
    for _ in range(downs):
        layers += [nn.Conv2d(HIDDEN, HIDDEN, 4, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(HIDDEN, HIDDEN, 1))


def decoder(grid: int) -> nn.Sequential:
    """[B, CODE_DIM, grid, grid] -> pixel logits [B, 1, 8, 8]."""
    ups = {4: 1, 2: 2}[grid]
    layers: list[nn.Module] = [nn.Conv2d(CODE_DIM, HIDDEN, 3, padding=1), nn.ReLU()]
    for _ in range(ups):
        layers += [nn.ConvTranspose2d(HIDDEN, HIDDEN, 4, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(HIDDEN, 1, 3, padding=1))


class NearestVQ(nn.Module):
    """VQ-VAE's bottleneck: nearest row, straight-through, codebook + commitment loss."""

    def __init__(self, in_channels: int, num_codes: int, beta: float = 0.25) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, CODE_DIM, 1)
        self.codebook = nn.Embedding(num_codes, CODE_DIM)
        self.codebook.weight.data.uniform_(-1 / num_codes, 1 / num_codes)
        self.beta = beta

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.proj(h).movedim(1, -1)
        indices = torch.cdist(z.reshape(-1, CODE_DIM), self.codebook.weight).argmin(-1)
        indices = indices.reshape(z.shape[:-1])
        zq = self.codebook(indices)
        loss = (zq - z.detach()).square().mean() + self.beta * (z - zq.detach()).square().mean()
        return (z + (zq - z).detach()).movedim(-1, 1), indices, loss


class DiscreteAutoencoder(nn.Module):
    def __init__(self, method: str, grid: int, codes: int, steps: int,
                 kl_weight: float) -> None:
        super().__init__()
        self.encode, self.decode = encoder(grid), decoder(grid)
        if method == "vq":
            self.bottleneck: nn.Module = NearestVQ(HIDDEN, codes)
        else:
            self.bottleneck = GumbelQuantizer(HIDDEN, codes, CODE_DIM,
                                              tau=Exponential(1.0, 1 / 16, steps),
                                              hard=method == "gumbel-st", kl_weight=kl_weight)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encode(x.reshape(-1, 1, 8, 8))
        if isinstance(self.bottleneck, NearestVQ):
            q, indices, extra = self.bottleneck(h)
        else:
            q, indices, extra, _ = self.bottleneck(h)
        return self.decode(q).reshape(-1, 64), indices, extra


METHODS = {"gumbel-soft": "gumbel soft", "gumbel-st": "gumbel straight-through",
           "vq": "VQ (nearest)"}


def run(args: argparse.Namespace, method: str, data) -> tuple[float, float, int, float]:
    x_train, _, x_test, _ = data
    torch.manual_seed(args.seed)
    batches = -(-len(x_train) // args.batch)
    model = DiscreteAutoencoder(method, args.grid, args.codes, args.epochs * batches,
                                args.kl_weight)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    start = time.perf_counter()
    for _ in range(args.epochs):
        for idx in torch.randperm(len(x_train)).split(args.batch):
            x = x_train[idx]
            logits, _, extra = model(x)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, x) + extra
            opt.zero_grad()
            loss.backward()
            opt.step()
            if method != "vq":
                model.bottleneck.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        logits, indices, _ = model(x_test)
    mse = (torch.sigmoid(logits) - x_test).square().mean().item()
    usage = codebook_usage(indices, args.codes)
    return mse, usage.perplexity, usage.dead_codes, seconds


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0])
    parser.set_defaults(epochs=30, batch=64)
    parser.add_argument("--grid", type=int, choices=(2, 4), default=4,
                        help="codes per image side (default 4: 16 codes per image)")
    parser.add_argument("--codes", type=int, default=64, help="codebook size (default 64)")
    parser.add_argument("--kl-weight", type=float, default=0.01,
                        help="weight of the Gumbel quantizer's KL to uniform (default 0.01)")
    args = parser.parse_args(argv)
    if args.codes < 2:
        parser.error(f"--codes must be >= 2, got {args.codes}")
    if not args.kl_weight >= 0:
        parser.error(f"--kl-weight must be >= 0, got {args.kl_weight}")
    torch.set_num_threads(args.threads)
    data = load_digits_labelled()
    print(f"digits dVAE: {args.grid}x{args.grid} codes per image, codebook {args.codes} x "
          f"{CODE_DIM}, {args.epochs} epochs, batch {args.batch}, Gumbel KL weight "
          f"{args.kl_weight}, seed {args.seed}")
    print(f"{'bottleneck':<26}{'test MSE':>10}{'perplexity':>12}{'dead codes':>12}{'train s':>9}")
    for method, label in METHODS.items():
        mse, perplexity, dead, seconds = run(args, method, data)
        print(f"{label:<26}{mse:>10.4f}{perplexity:>12.1f}{dead:>12d}{seconds:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
