"""A codebook bottleneck that picks its codes with a Gumbel-Softmax (DALL-E's dVAE)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from .._rng import check_seed_source
from .._validate import check_dim, check_dim_type, check_int_range, check_logits
from ..schedules import Schedule
from .gumbel_softmax import GumbelSoftmax
from .temperature import LearnableTemperature


class QuantizerOutput(NamedTuple):
    """What :class:`GumbelQuantizer` returns.

    ``quantized``: the features' shape with ``code_dim`` channels, each
    position ``sum_k y_k e_k`` (one codebook row for hard samples and in
    eval); ``indices``: int64, the chosen code per position (the channel axis
    removed); ``kl_loss``: 0-dim, ``kl_weight`` times the mean over positions
    of ``KL(softmax(logits) || uniform)``; ``logits``: the code logits, codes
    along the channel axis.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    kl_loss: torch.Tensor
    logits: torch.Tensor


class CodebookUsage(NamedTuple):
    """How evenly a batch of code indices uses the codebook.

    ``counts``: [num_codes] int64; ``perplexity``: ``exp(H(f))`` of the code
    frequencies ``f`` (``num_codes`` when every code is used equally, 1 when
    one code takes every position); ``dead_codes``: the number of codes never
    chosen.
    """

    counts: torch.Tensor
    perplexity: float
    dead_codes: int


def codebook_usage(indices: torch.Tensor, num_codes: int) -> CodebookUsage:
    """Counts, perplexity ``exp(-sum_k f_k log f_k)`` and dead codes of ``indices``.

    Args:
        indices: integer code indices of any shape, each in ``[0, num_codes)``.
        num_codes: the codebook size, >= 1.

    Example:
        >>> usage = gumbelkit.nn.codebook_usage(torch.tensor([0, 0, 1, 1]), num_codes=4)
        >>> usage.perplexity, usage.dead_codes
        (2.0, 2)
    """
    check_int_range(num_codes, "num_codes", 1)
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
    flat = indices.reshape(-1)
    if flat.numel() == 0:
        raise ValueError("indices is empty: the usage of no positions is undefined")
    low, high = int(flat.min()), int(flat.max())
    if low < 0 or high >= num_codes:
        bad = low if low < 0 else high
        raise ValueError(f"indices must lie in [0, {num_codes}), got {bad}")
    counts = torch.bincount(flat, minlength=num_codes)
    freq = counts.double() / flat.numel()
    entropy = -torch.where(freq > 0, freq * freq.log(), 0.0).sum()
    return CodebookUsage(counts, math.exp(entropy.item()), int((counts == 0).sum()))


class GumbelQuantizer(nn.Module):
    """Features -> code logits -> Gumbel-Softmax -> weighted codebook rows.

    The discrete bottleneck of DALL-E's dVAE (Ramesh et al. 2021, "Zero-Shot
    Text-to-Image Generation", sec. 2.1) and taming-transformers'
    ``GumbelQuantize``: at every position a linear map (a 1x1 convolution on
    image features) gives ``logits`` over ``num_codes`` codes; in training

        y = gumbel_softmax(logits, tau, hard),    quantized = sum_k y_k e_k,

    with ``e_k`` the rows of a learned ``[num_codes, code_dim]`` codebook, so
    gradients reach the encoder through ``y`` and the codebook through the
    rows ``y`` weights (every row for soft samples; the chosen row, with the
    soft sample's gradient for the logits, for ``hard=True``). The loss term
    that keeps the code distribution spread out is the KL to a uniform prior,

        kl_loss = kl_weight * mean_positions sum_k q_k log(q_k num_codes),
        q = softmax(logits),

    (Ramesh et al. weight it by beta, 6.6 after annealing; taming uses 5e-4
    with a per-pixel sum). In eval the code is ``argmax(logits)``, no noise,
    and ``quantized`` is exactly its codebook row.

    Args:
        in_channels: channels of the features, >= 1.
        num_codes: codebook size, >= 2.
        code_dim: channels of the quantized features, >= 1.
        tau: temperature: a float > 0, a :class:`gumbelkit.schedules.Schedule`
            or schedule string, or a :class:`gumbelkit.nn.LearnableTemperature`
            (as :class:`gumbelkit.nn.GumbelSoftmax`; :meth:`step` advances a
            schedule).
        hard: straight-through: one codebook row per position, soft gradient.
        kl_weight: >= 0, the weight of the KL term (0 turns it off).
        channel_dim: the channel axis of the features: 1 for ``[B, C, H, W]``
            (the default, as convolutions), -1 for ``[B, T, C]``.

    Example:
        >>> q = gumbelkit.nn.GumbelQuantizer(in_channels=8, num_codes=16, code_dim=4)
        >>> out = q(torch.randn(2, 8, 3, 3), seed=0)
        >>> out.quantized.shape, out.indices.shape
        (torch.Size([2, 4, 3, 3]), torch.Size([2, 3, 3]))
        >>> q_seq = gumbelkit.nn.GumbelQuantizer(8, 16, 4, hard=True, channel_dim=-1)
        >>> q_seq(torch.randn(2, 5, 8), seed=0).quantized.shape
        torch.Size([2, 5, 4])
    """

    def __init__(self, in_channels: int, num_codes: int, code_dim: int,
                 tau: float | str | Schedule | LearnableTemperature = 1.0, hard: bool = False,
                 kl_weight: float = 5e-4, channel_dim: int = 1) -> None:
        super().__init__()
        self.in_channels = check_int_range(in_channels, "in_channels", 1)
        self.num_codes = check_int_range(num_codes, "num_codes", 2)
        self.code_dim = check_int_range(code_dim, "code_dim", 1)
        if isinstance(kl_weight, bool) or not isinstance(kl_weight, (int, float)) \
                or not math.isfinite(kl_weight) or kl_weight < 0:
            raise ValueError(f"kl_weight must be a finite number >= 0, got {kl_weight!r}")
        self.kl_weight = float(kl_weight)
        self.channel_dim = check_dim_type(channel_dim)
        self.gumbel = GumbelSoftmax(tau, hard=hard, dim=-1)
        self.proj = nn.Linear(in_channels, num_codes)
        self.codebook = nn.Embedding(num_codes, code_dim)

    @property
    def tau(self) -> float | torch.Tensor:
        """The temperature now (see :attr:`gumbelkit.nn.GumbelSoftmax.tau`)."""
        return self.gumbel.tau

    def step(self) -> float | torch.Tensor:
        """Advance the temperature schedule by one step; returns the new temperature."""
        return self.gumbel.step()

    def forward(self, features: torch.Tensor, *, seed: int | torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> QuantizerOutput:
        """Quantize ``features`` (``in_channels`` along ``channel_dim``)."""
        check_seed_source(seed, generator)
        if not isinstance(features, torch.Tensor) or not features.dtype.is_floating_point:
            raise TypeError(f"features must be a floating-point tensor, got "
                            f"{getattr(features, 'dtype', type(features).__name__)}")
        if features.dim() < 2:
            raise ValueError(f"features must have a batch and a channel axis, got shape "
                             f"{tuple(features.shape)}")
        axis = check_dim(features, self.channel_dim)
        if features.shape[axis] != self.in_channels:
            raise ValueError(f"features must have in_channels={self.in_channels} channels "
                             f"along dim {self.channel_dim}, got shape {tuple(features.shape)}")
        logits = self.proj(features.movedim(axis, -1))
        if self.training:
            y = self.gumbel(logits, seed=seed, generator=generator)
            indices = y.argmax(-1)
        else:
            check_logits(logits)  # as the training path's sampler does: no NaN code or KL
            indices = logits.argmax(-1)
            y = None
        quantized = self.codebook(indices) if y is None else y @ self.codebook.weight
        log_q = torch.log_softmax(logits, -1)
        positions = max(logits.numel() // self.num_codes, 1)  # an empty batch has KL 0
        kl = (log_q.exp() * (log_q + math.log(self.num_codes))).sum() / positions
        return QuantizerOutput(quantized.movedim(-1, axis), indices, self.kl_weight * kl,
                               logits.movedim(-1, axis))

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, num_codes={self.num_codes}, "
                f"code_dim={self.code_dim}, kl_weight={self.kl_weight}, "
                f"channel_dim={self.channel_dim}")
