"""RELAX (Grathwohl, Choi, Wu, Roeder & Duvenaud 2018)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import _rng
from ._common import evaluate, joint_log_prob, relaxed_pair, tempered_softmax, working


def relax(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, *, n_samples: int,
          tau: float | torch.Tensor, seed: _rng.Seed,
          control: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """RELAX: REINFORCE with a learned, reparameterised control variate ``c``.

    With ``z = logits + G``, ``b = argmax z``, ``z~ ~ z | b`` and
    ``s(z) = softmax(z / tau)``:
    ``g = [f(b) - c(s(z~))] grad log p(b) + grad c(s(z)) - grad c(s(z~))``
    (Grathwohl et al. 2018, "Backpropagation through the void", eq. 8 for
    discrete variables). Unbiased for every ``c``; ``c = eta f`` is REBAR.
    Train ``c`` to minimise the estimator's variance with
    :func:`relax_variance_loss`. The coefficient keeps its dependence on
    ``c``'s parameters (it multiplies a term whose value is 0), so the
    gradient estimate is differentiable in them.

    Options:
        control: required callable ``c``: relaxed samples of shape
            ``(m, *logits.shape)`` -> values of shape ``(m, *batch)``, like ``f``.
    """
    if control is None:
        raise ValueError("relax needs a control variate: pass control=callable mapping relaxed "
                         "samples (m, *logits.shape) to values (m, *batch), e.g. a small network")
    if not callable(control):
        raise TypeError(f"control must be callable, got {type(control).__name__}")
    work = working(logits)
    index, sample, z, z_tilde = relaxed_pair(work, n_samples, seed)
    values = evaluate(f, sample, logits)
    relaxed = torch.cat([tempered_softmax(z, logits, tau, -1),
                         tempered_softmax(z_tilde, logits, tau, -1)])
    c_z, c_tilde = evaluate(control, relaxed, logits).chunk(2, 0)
    if c_z.shape != values.shape:
        raise ValueError(f"control returned values of shape {tuple(c_z.shape)} per group, "
                         f"f returned {tuple(values.shape)}; they must match")
    log_prob = joint_log_prob(work, index, values.dim() - 1)
    coefficient = values.detach() - c_tilde
    cv = c_z - c_tilde
    return (values + coefficient * (log_prob - log_prob.detach()) + cv - cv.detach()).mean(0)


def relax_variance_loss(value: torch.Tensor, logits: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g, ||g||^2)``: the gradient estimate and the loss that trains RELAX's control.

    ``g = d value.sum() / d logits`` is computed with ``create_graph=True``;
    since ``E[g]`` does not depend on the control's parameters,
    ``grad ||g||^2`` is an unbiased gradient of the estimator's variance
    (Grathwohl et al. 2018, section 3.3). Use ``g`` (detached) as the logits'
    gradient and back-propagate the loss into the control's parameters only.

    Example:
        >>> logits = torch.zeros(2, 3, requires_grad=True)        # 2 variables, K=3
        >>> f = lambda z: (z * torch.arange(3.0)).sum((-1, -2))
        >>> net = torch.nn.Linear(3, 1)
        >>> control = lambda y: net(y).squeeze(-1).sum(-1)        # (m, 2, 3) -> (m,)
        >>> value = gumbelkit.estimate(f, logits, "relax", n_samples=4, seed=0, control=control)
        >>> g, loss = relax_variance_loss(value, logits)
        >>> logits.grad = g.detach()                              # the estimator's gradient
        >>> [p.shape for p in torch.autograd.grad(loss, list(net.parameters()))]
        [torch.Size([1, 3]), torch.Size([1])]
    """
    (grad,) = torch.autograd.grad(value.sum(), logits, create_graph=True)
    return grad, grad.pow(2).sum()


__all__ = ["relax", "relax_variance_loss"]
