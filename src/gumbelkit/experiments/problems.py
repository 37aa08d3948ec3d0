"""Problems with a computable exact gradient, on which estimators are measured.

Each factory returns a :class:`Problem`: ``logits`` of shape
``(*batch, *variables, K)`` (float64), an objective ``f`` mapping one-hot or
relaxed samples ``(m, *logits.shape)`` to values ``(m, *batch)``, and the
exact value and gradient of ``sum_batch E[f(z)]`` with respect to ``logits``
(in closed form, or by exact enumeration).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..estimators.exact import exact as _exact_estimator


@dataclass(frozen=True)
class Problem:
    """An objective with its exact expected value and gradient."""

    name: str
    logits: torch.Tensor
    f: Callable[[torch.Tensor], torch.Tensor]
    exact_value: float
    exact_gradient: torch.Tensor
    enumerable: bool
    description: str


def _by_enumeration(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor,
                    batch_ndim: int) -> tuple[float, torch.Tensor]:
    leaf = logits.detach().clone().requires_grad_()
    value = _exact_estimator(f, leaf, n_samples=1, tau=1.0, seed=None,
                             batch_ndim=batch_ndim).sum()
    (grad,) = torch.autograd.grad(value, leaf)
    return float(value.detach()), grad


def _binary_logits(alpha: torch.Tensor) -> torch.Tensor:
    """K=2 logits ``[0, alpha]``: category 1 ("on") has probability sigmoid(alpha)."""
    return torch.stack([torch.zeros_like(alpha), alpha], -1)


def _binary_gradient(alpha: torch.Tensor, d_value_d_prob: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. ``[0, alpha]`` logits from dE/dp per variable."""
    p = torch.sigmoid(alpha)
    d_alpha = d_value_d_prob * p * (1 - p)
    return torch.stack([-d_alpha, d_alpha], -1)


def bernoulli_toy(t: float = 0.45) -> Problem:
    """``E[sum_v (b_v - t)**2]`` over 4 Bernoulli units, ``p = sigmoid([-1, -0.3, 0.3, 1])``.

    The classic toy of REBAR/RELAX/ARM/DisARM: ``dE/dp_v = 1 - 2 t`` per unit
    of probability, tiny next to the spread of ``f`` when ``t`` is near 1/2
    (t = 0.499 is the hard case).
    """
    alpha = torch.tensor([-1.0, -0.3, 0.3, 1.0], dtype=torch.float64)
    logits = _binary_logits(alpha)
    p = torch.sigmoid(alpha)

    def f(z: torch.Tensor) -> torch.Tensor:
        return ((z[..., 1] - t) ** 2).sum(-1)

    value = float((p * (1 - t) ** 2 + (1 - p) * t ** 2).sum())
    grad = _binary_gradient(alpha, torch.full_like(alpha, 1 - 2 * t))
    return Problem(f"bernoulli_toy(t={t})", logits, f, value, grad, True,
                   f"E[sum_v (b_v - {t})^2], 4 Bernoulli units")


def poly(p: float = 2.0, n_variables: int = 128, c: float = 0.45,
         logit_scale: float = 1.0, seed: int = 0) -> Problem:
    """Polynomial programming of the ReinMax paper: ``E[mean_i |z_i - c|**p]``.

    Liu et al. 2023, section 6.1: ``n_variables`` binary variables (K=2,
    ``z_i`` = the indicator of category 1). The optimum (every ``z_i = 0``)
    has expected loss ``c**p`` (0.2025 for p=2, c=0.45); ``p_i = 1/2`` gives
    ``(c**p + (1-c)**p) / 2`` (0.2525). Logits are ``logit_scale`` times a
    fixed standard normal draw (``seed``); ``logit_scale=0`` starts at 1/2.
    Relaxed samples give ``z_i`` in [0, 1].
    """
    g = torch.Generator().manual_seed(seed)
    alpha = logit_scale * torch.randn(n_variables, generator=g, dtype=torch.float64)
    logits = _binary_logits(alpha)
    prob = torch.sigmoid(alpha)

    def f(z: torch.Tensor) -> torch.Tensor:
        return ((z[..., 1] - c).abs() ** p).mean(-1)

    on, off = abs(1 - c) ** p, abs(c) ** p
    value = float((prob * on + (1 - prob) * off).mean())
    grad = _binary_gradient(alpha, torch.full_like(alpha, (on - off) / n_variables))
    return Problem(f"poly(p={p})", logits, f, value, grad, False,
                   f"E[mean_i |z_i - {c}|^{p}], {n_variables} binary variables")


def simplex_qp(logits: tuple[float, ...] = (0.4, -0.2, 0.1),
               target: tuple[float, ...] = (0.2, 0.3, 0.5)) -> Problem:
    """A quadratic on the simplex with n=3 categories: ``E[||D - c||**2]``.

    After Paulus et al. 2021 (section 5.2), where Gumbel-Rao is compared with
    straight-through Gumbel-Softmax on a quadratic over one categorical
    variable of n=3 categories; ``c`` is a fixed point inside the simplex.
    """
    theta = torch.tensor(logits, dtype=torch.float64)
    c = torch.tensor(target, dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return ((z - c) ** 2).sum(-1)

    value, grad = _by_enumeration(f, theta, 0)
    return Problem("simplex_qp", theta, f, value, grad, True,
                   "E[||D - c||^2], one variable, n=3 categories")


def categorical_toy(n_variables: int = 3, n_categories: int = 5, seed: int = 0) -> Problem:
    """A random quadratic in ``n_variables`` categorical variables of ``n_categories``.

    ``f(z) = (w . z - 1)**2 + u . z`` with fixed normal ``w``, ``u`` and
    logits (``seed``): couples the variables, so single-variable tricks do not
    make it easy. Exact by enumeration (K**V = 125 configurations by default).
    """
    g = torch.Generator().manual_seed(seed)
    shape = (n_variables, n_categories)
    theta = torch.randn(shape, generator=g, dtype=torch.float64)
    w = torch.randn(shape, generator=g, dtype=torch.float64) / n_variables ** 0.5
    u = torch.randn(shape, generator=g, dtype=torch.float64) / n_variables ** 0.5

    def f(z: torch.Tensor) -> torch.Tensor:
        return ((z * w).sum((-1, -2)) - 1) ** 2 + (z * u).sum((-1, -2))

    value, grad = _by_enumeration(f, theta, 0)
    return Problem("categorical_toy", theta, f, value, grad, True,
                   f"random quadratic, {n_variables} variables x {n_categories} categories")


@functools.lru_cache(maxsize=4)
def _vae_weights(n_images: int, n_variables: int, n_categories: int, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from .data import load_digits_binary

    _, test = load_digits_binary()
    x = test[:n_images].double()
    g = torch.Generator().manual_seed(seed)
    latent = n_variables * n_categories
    encoder = torch.randn(64, latent, generator=g, dtype=torch.float64) / 8.0
    decoder = torch.randn(latent, 64, generator=g, dtype=torch.float64)
    mean = test.double().mean(0).clamp(0.02, 0.98)
    bias = torch.log(mean) - torch.log1p(-mean)
    logits = (2 * x - 1) @ encoder
    return x, logits.reshape(n_images, n_variables, n_categories), decoder, bias


def small_vae(n_images: int = 8, n_variables: int = 4, n_categories: int = 8,
              seed: int = 0) -> Problem:
    """The reconstruction term of a categorical VAE on the bundled digits.

    ``n_images`` binarized 8x8 test digits (``experiments.data``) are encoded
    by a fixed random linear encoder into ``n_variables`` categorical
    variables of ``n_categories`` classes; a fixed random linear decoder
    (bias: the pixel log-odds) gives Bernoulli pixel logits, and
    ``f(z) = -log p(x | z)`` (summed over the 64 pixels) per image. The batch
    axis is the image; 8**4 = 4,096 configurations per image are enumerated
    for the exact gradient with respect to the encoder's logits.
    """
    x, logits, decoder, bias = _vae_weights(n_images, n_variables, n_categories, seed)

    def f(z: torch.Tensor) -> torch.Tensor:
        pixel_logits = z.flatten(-2) @ decoder + bias
        return torch.nn.functional.binary_cross_entropy_with_logits(
            pixel_logits, x.expand_as(pixel_logits), reduction="none").sum(-1)

    value, grad = _by_enumeration(f, logits, 1)
    return Problem("small_vae", logits, f, value, grad, True,
                   f"-log p(x|z) of a categorical VAE, {n_images} digits, "
                   f"{n_variables} x {n_categories} latent")


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "bernoulli_toy": bernoulli_toy,
    "poly": poly,
    "simplex_qp": simplex_qp,
    "categorical_toy": categorical_toy,
    "small_vae": small_vae,
}


def make_problem(name: str, **params: object) -> Problem:
    """The problem ``name`` of :data:`PROBLEMS`, built with ``params``."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; valid problems: {', '.join(PROBLEMS)}")
    return PROBLEMS[name](**params)
