"""Labelled digits for the examples: scikit-learn's 8x8 images (bundled, never
downloaded), raw pixels 0..16 scaled to [0, 1], and the same fixed 1,437 / 360
train/test split as ``gumbelkit.experiments.data.load_digits_binary``."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from gumbelkit.experiments.data import DIGITS_SPLIT_SEED, DIGITS_TEST_SIZE


def load_digits_labelled() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train [1437, 64], y_train, x_test [360, 64], y_test); pixels / 16."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.data / 16.0).astype(np.float32))
    y = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(x)))
    test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    return x[train], y[train], x[test], y[test]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(-1) == labels).double().mean().item()


def training_parser(description: str) -> argparse.ArgumentParser:
    """The options every digits example shares: epochs, batch size, seed, threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: these matrices are too small to share)")
    return parser
