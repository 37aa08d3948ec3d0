"""Where torch.distributions' relaxed distributions fail and gumbelkit's do not.

Prints, for the same logits and temperatures, the fraction of each
distribution's own samples whose log_prob is not finite (and the fraction of
torch's RelaxedBernoulli samples it clamps to [tiny, 1 - eps] to stay finite),
the fraction of own samples validate_args rejects, and the log_prob shape with
a per-row temperature. Run: PYTHONPATH=src python benchmarks/distributions_vs_torch.py
"""

from __future__ import annotations

import warnings

import torch

from gumbelkit.distributions import BinaryConcrete, Concrete


def _nonfinite(dist, n: int, **kwargs) -> float:
    y = dist.sample((n,), **kwargs)
    return (~dist.log_prob(y).isfinite()).float().mean().item()


def _clamped(dist, n: int) -> float:
    """Fraction of samples torch silently clamped to [tiny, 1 - eps] (a moved sample)."""
    y = dist.sample((n,))
    info = torch.finfo(y.dtype)
    return ((y == info.tiny) | (y == 1 - info.eps)).float().mean().item()


def _rejected(dist, n: int, **kwargs) -> float:
    """Fraction of own samples that the support check (validate_args) rejects."""
    return 1 - dist.support.check(dist.sample((n,), **kwargs)).float().mean().item()


def _log_prob_shape(dist, n: int, **kwargs) -> str:
    try:
        return str(tuple(dist.log_prob(dist.sample((n,), **kwargs)).shape))
    except RuntimeError as error:
        return f"RuntimeError ({str(error).split(' at ')[0]})"


def main() -> None:
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    n = 20_000
    print("non-finite log_prob of own float32 samples (K = 5, logits ~ N(0, 1), 20,000 samples)")
    print(f"{'tau':>6} {'torch Relaxed1HotCat':>22} {'gumbelkit Concrete':>20} "
          f"{'torch RelaxedBernoulli':>24} {'  clamped':>10} {'gumbelkit BinaryConcrete':>26}")
    logits = torch.randn(5)
    for tau in (0.01, 0.1, 1.0, 5.0):
        t = torch.tensor(tau)
        ours = _nonfinite(Concrete(tau, logits=logits, validate_args=False), n, seed=1)
        theirs = _nonfinite(torch.distributions.RelaxedOneHotCategorical(
            t, logits=logits, validate_args=False), n)
        ours_b = _nonfinite(BinaryConcrete(tau, logits=logits, validate_args=False), n, seed=1)
        bernoulli = torch.distributions.RelaxedBernoulli(t, logits=logits, validate_args=False)
        theirs_b = _nonfinite(bernoulli, n)
        clamped = _clamped(bernoulli, n)
        print(f"{tau:>6} {theirs:>22.4f} {ours:>20.4f} {theirs_b:>24.4f} {clamped:>10.4f} "
              f"{ours_b:>26.4f}")
    print("own samples rejected by validate_args (tau = 0.01, logits ~ N(0, 1), 1,000 samples)")
    for k in (1_000, 10_000):
        wide = torch.randn(k)
        theirs = _rejected(torch.distributions.RelaxedOneHotCategorical(
            torch.tensor(0.01), logits=wide), 1_000)
        ours = _rejected(Concrete(0.01, logits=wide), 1_000, seed=1)
        print(f"  K = {k:>6}: torch {theirs:.3f}  gumbelkit {ours:.3f}")
    batch = torch.randn(3, 4)
    per_row = torch.tensor([0.5, 1.0, 2.0])
    print("log_prob shape with a per-row temperature (batch 3, K = 4, 7 samples; expected (7, 3))")
    for shape in ((3,), (3, 1)):
        theirs = torch.distributions.RelaxedOneHotCategorical(per_row.reshape(shape),
                                                              logits=batch)
        print(f"  torch, temperature shape {shape}: {_log_prob_shape(theirs, 7)}")
    print(f"  gumbelkit, temperature shape (3,): "
          f"{_log_prob_shape(Concrete(per_row, logits=batch), 7, seed=1)}")


if __name__ == "__main__":
    main()
