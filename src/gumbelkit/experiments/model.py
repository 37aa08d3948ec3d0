"""The categorical VAE of Jang et al. 2017 (Section 4.2), sized by its arguments.

``N`` latent variables with ``K`` classes each; an MLP encoder gives
``q(z | x) = prod_n Cat(z_n; softmax(logits_n))``, an MLP decoder gives
Bernoulli pixel probabilities ``p(x | z)``, and the prior is uniform,
``p(z_n = k) = 1/K``. The negative ELBO is

    -ELBO(x) = E_q[-log p(x | z)] + KL(q(z | x) || p(z)),
    KL = sum_n sum_k q_nk log q_nk + N log K   (in closed form),

and the reconstruction term's gradient with respect to the encoder comes from
whichever estimator ``gumbelkit.estimate`` is asked for.

Example:
    >>> vae = CategoricalVAE(n_pixels=64, n_latent=8, n_classes=10, hidden=64)
    >>> loss = vae(torch.rand(5, 64).round(), "gumbel_softmax", tau=1.0, seed=0)
    >>> loss.backward()
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

import gumbelkit

from .._validate import check_int_range

# Bytes of tensors one call of CategoricalVAE.bounds may hold; large --iw-samples are
# evaluated in several calls. 256 MiB keeps the default 100 samples in one call for
# models far wider than the defaults (a 1024-wide MNIST model needs 2.4 MB per sample).
BOUNDS_CALL_BYTES = 2**28
_SEED_STRIDE = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: consecutive calls' seeds spread apart


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CategoricalVAE(nn.Module):
    """Categorical VAE: MLP encoder and decoder with widths ``[hidden, hidden // 2]``.

    Args:
        n_pixels: size of a flattened binary image (>= 1).
        n_latent: number of categorical latent variables N (>= 1).
        n_classes: classes per latent K (>= 2).
        hidden: width of the first hidden layer (>= 2); the second has half.
    """

    def __init__(self, n_pixels: int, n_latent: int, n_classes: int, hidden: int) -> None:
        super().__init__()
        self.n_pixels = check_int_range(n_pixels, "n_pixels", 1)
        self.n_latent = check_int_range(n_latent, "n_latent", 1)
        self.n_classes = check_int_range(n_classes, "n_classes", 2)
        self.hidden = check_int_range(hidden, "hidden", 2)
        code = n_latent * n_classes
        self.encoder = _mlp([n_pixels, hidden, hidden // 2, code])
        self.decoder = _mlp([code, hidden // 2, hidden, n_pixels])

    def extra_repr(self) -> str:
        return (f"n_pixels={self.n_pixels}, n_latent={self.n_latent}, "
                f"n_classes={self.n_classes}, hidden={self.hidden}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(z | x), shape ``[*batch, N, K]``."""
        return self.encoder(x).unflatten(-1, (self.n_latent, self.n_classes))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli pixel logits ``[*batch, n_pixels]`` for codes ``z`` ``[*batch, N, K]``."""
        return self.decoder(z.flatten(-2))

    def reconstruction_nll(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``-log p(x | z)`` summed over pixels: ``z [*s, *batch, N, K]`` -> ``[*s, *batch]``."""
        pixel_logits = self.decode(z)
        target = x.expand_as(pixel_logits)
        return nn.functional.binary_cross_entropy_with_logits(
            pixel_logits, target, reduction="none").sum(-1)

    def kl_to_uniform(self, logits: torch.Tensor) -> torch.Tensor:
        """``KL(q || Uniform) = sum_n sum_k q log q + N log K``, shape ``[*batch]``."""
        log_q = torch.log_softmax(logits, -1)
        return (log_q.exp() * log_q).sum((-2, -1)) + self.n_latent * math.log(self.n_classes)

    def forward(self, x: torch.Tensor, estimator: str, *, tau: float = 1.0, n_samples: int = 1,
                seed: int | None = None, **options: Any) -> torch.Tensor:
        """Training loss: the batch mean of the estimated negative ELBO.

        Its value is the Monte Carlo -ELBO at the estimator's samples (relaxed
        ones for Gumbel-Softmax); its gradient is the named estimator's.
        """
        logits = self.encode(x)
        reconstruction = gumbelkit.estimate(
            lambda z: self.reconstruction_nll(z, x), logits, estimator,
            n_samples=n_samples, tau=tau, seed=seed, **options)
        return (reconstruction + self.kl_to_uniform(logits)).mean()

    def samples_per_call(self, batch: int) -> int:
        """Samples of q that :meth:`bounds` draws at once for ``batch`` images: as many
        as keep one call's tensors (codes, one-hots, both decoder layers, pixel
        logits and losses) under ``BOUNDS_CALL_BYTES``, and at least one."""
        code = self.n_latent * self.n_classes
        per_sample = batch * (12 * code + 8 * self.n_latent + 8 * (self.hidden + self.hidden // 2)
                              + 12 * self.n_pixels)
        return max(1, BOUNDS_CALL_BYTES // per_sample)

    def _log_weights(self, x: torch.Tensor, logits: torch.Tensor, n_samples: int,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``-log p(x|z_s)`` and ``log p(x|z_s) p(z_s) / q(z_s|x)``, each ``[n_samples, batch]``."""
        log_q = torch.log_softmax(logits, -1)
        index = gumbelkit.gumbel_max(logits.expand(n_samples, *logits.shape), seed=seed)
        z = nn.functional.one_hot(index, self.n_classes).to(logits.dtype)
        nll = self.reconstruction_nll(z, x)
        log_q_z = (z * log_q).sum((-2, -1))
        log_p_z = -self.n_latent * math.log(self.n_classes)
        return nll, -nll + log_p_z - log_q_z

    @torch.no_grad()
    def bounds(self, x: torch.Tensor, n_samples: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example ``(-ELBO, -IWAE bound)`` from ``n_samples`` exact discrete samples of q.

        ``-ELBO ~ mean_s [-log p(x|z_s)] + KL`` and the importance-weighted
        bound (Burda et al. 2016) ``-log (1/S) sum_s p(x|z_s) p(z_s) / q(z_s|x)``,
        which is tighter (smaller) and tends to ``-log p(x)`` as S grows.

        Memory is bounded for any ``n_samples``: beyond :meth:`samples_per_call`
        the samples are drawn in calls of that many, call ``j`` seeded with
        ``seed + j * 0x9E3779B97F4A7C15 (mod 2**64)``, and the sums are
        accumulated (the log-sum-exp with ``logaddexp``).
        """
        logits = self.encode(x)
        per_call = self.samples_per_call(len(x))
        if n_samples <= per_call:
            nll, log_w = self._log_weights(x, logits, n_samples, seed)
            neg_elbo = nll.mean(0) + self.kl_to_uniform(logits)
            return neg_elbo, -(torch.logsumexp(log_w, 0) - math.log(n_samples))
        nll_sum = torch.zeros(logits.shape[:-2], dtype=logits.dtype, device=logits.device)
        log_sum = torch.full_like(nll_sum, -math.inf)
        for j, start in enumerate(range(0, n_samples, per_call)):
            call_seed = (seed + j * _SEED_STRIDE) % 2**64
            nll, log_w = self._log_weights(x, logits, min(per_call, n_samples - start), call_seed)
            nll_sum += nll.sum(0)
            log_sum = torch.logaddexp(log_sum, torch.logsumexp(log_w, 0))
        neg_elbo = nll_sum / n_samples + self.kl_to_uniform(logits)
        return neg_elbo, -(log_sum - math.log(n_samples))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities decoded from the most likely code of q(z | x)."""
        logits = self.encode(x)
        z = nn.functional.one_hot(logits.argmax(-1), self.n_classes).to(logits.dtype)
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def sample_prior(self, n: int, seed: int) -> torch.Tensor:
        """Pixel probabilities decoded from ``n`` codes drawn from the uniform prior."""
        flat = torch.zeros(n, self.n_latent, self.n_classes,
                           device=next(self.parameters()).device)
        index = gumbelkit.gumbel_max(flat, seed=seed)
        return torch.sigmoid(self.decode(nn.functional.one_hot(index, self.n_classes).to(flat)))
