"""REBAR (Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein 2017)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import _rng
from ._common import (
    evaluate,
    joint_log_prob,
    relaxed_pair,
    score_surrogate,
    tempered_softmax,
    working,
)


def rebar(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, *, n_samples: int,
          tau: float | torch.Tensor, seed: _rng.Seed, eta: float = 1.0) -> torch.Tensor:
    """REBAR: REINFORCE with the relaxed ``f`` as a reparameterised control variate.

    With ``z = logits + G``, ``b = argmax z``, ``z~ ~ z | b`` and
    ``s(z) = softmax(z / tau)``:
    ``g = [f(b) - eta f(s(z~))] grad log p(b) + eta grad f(s(z)) - eta grad f(s(z~))``,
    unbiased for every ``eta`` and ``tau`` (Tucker et al. 2017, "REBAR:
    low-variance, unbiased gradient estimates for discrete latent variable
    models", eq. 4 with the categorical conditional of their appendix).
    ``f`` must accept relaxed samples (points of the simplex) as well as
    one-hot ones; it is called once on ``3 n`` stacked samples.

    Options:
        eta: scale of the control variate (any real; default 1).
    """
    eta = float(eta)
    work = working(logits)
    index, sample, z, z_tilde = relaxed_pair(work, n_samples, seed)
    stacked = torch.cat([sample, tempered_softmax(z, logits, tau, -1),
                         tempered_softmax(z_tilde, logits, tau, -1)])
    values, relaxed, relaxed_tilde = evaluate(f, stacked, logits).chunk(3, 0)
    log_prob = joint_log_prob(work, index, values.dim() - 1)
    coefficient = (values - eta * relaxed_tilde).detach()
    control = eta * (relaxed - relaxed_tilde)
    return (score_surrogate(values, coefficient, log_prob) + control - control.detach()).mean(0)
