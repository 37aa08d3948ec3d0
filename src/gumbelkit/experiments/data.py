"""Data sets behind the experiments; nothing is ever downloaded.

The embedded default is scikit-learn's 8x8 handwritten digits (1,797 images,
pixel values 0..16), binarized at ``pixel > 7`` and split 1,437 / 360 by a
fixed permutation.
"""

from __future__ import annotations

import numpy as np
import torch

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 360


def load_digits_binary() -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) float32 tensors of shape [N, 64] with values in {0, 1}."""
    from sklearn.datasets import load_digits

    images = load_digits().data
    binary = (images > 7).astype(np.float32)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(binary))
    test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    return torch.from_numpy(binary[train]), torch.from_numpy(binary[test])
