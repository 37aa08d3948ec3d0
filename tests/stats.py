"""Statistical test helpers.

Every statistical test uses a fixed seed and rejects at significance
``ALPHA = 1e-4``: with a correct implementation a test fails by chance about
once in 10,000 runs (and, with the fixed seeds, deterministically never once it
has passed). Sample sizes come from the tolerance: to resolve a probability
difference ``delta`` at about 4 standard errors one needs
``n >= 16 p (1 - p) / delta**2`` draws (:func:`draws_for`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

ALPHA = 1e-4
Z = 4.0  # about 6e-5 two-sided false-failure rate for one normal comparison


def draws_for(p: float, delta: float, z: float = Z) -> int:
    """Draws needed so that z standard errors of a frequency near p equal delta."""
    return math.ceil(z * z * p * (1 - p) / (delta * delta))


def chisquare_pvalue(counts, probs, min_expected: float = 5.0) -> float:
    """Pearson chi-square goodness-of-fit p-value of observed counts vs probabilities.

    Cells with expected count below ``min_expected`` are pooled into one cell
    (the usual validity condition). Cells with probability exactly 0 must have
    count 0, else the p-value is 0.
    """
    counts = np.asarray(counts, dtype=np.float64).ravel()
    probs = np.asarray(probs, dtype=np.float64).ravel()
    if counts.shape != probs.shape:
        raise ValueError(f"counts {counts.shape} and probs {probs.shape} differ in shape")
    if np.any((probs == 0) & (counts > 0)):
        return 0.0
    keep = probs > 0
    counts, probs = counts[keep], probs[keep] / probs[keep].sum()
    n = counts.sum()
    expected = n * probs
    small = expected < min_expected
    if small.any():
        counts = np.append(counts[~small], counts[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    if counts.size < 2:
        return 1.0
    return float(sps.chisquare(counts, expected).pvalue)


def assert_chisquare(counts, probs, alpha: float = ALPHA) -> None:
    p = chisquare_pvalue(counts, probs)
    assert p > alpha, f"chi-square p-value {p:.3g} <= {alpha}: counts {np.asarray(counts)} " \
                      f"do not match probabilities {np.asarray(probs)}"


def assert_ks(samples, cdf, alpha: float = ALPHA) -> None:
    """Kolmogorov-Smirnov test of continuous samples against a cdf callable."""
    p = float(sps.kstest(np.asarray(samples, dtype=np.float64).ravel(), cdf).pvalue)
    assert p > alpha, f"Kolmogorov-Smirnov p-value {p:.3g} <= {alpha}"


def assert_close_z(estimate: float, truth: float, std_err: float, z: float = Z) -> None:
    """|estimate - truth| <= z standard errors."""
    assert abs(estimate - truth) <= z * std_err + 1e-12, (
        f"estimate {estimate:.6g} differs from {truth:.6g} by "
        f"{abs(estimate - truth) / max(std_err, 1e-300):.2f} standard errors (limit {z})")
