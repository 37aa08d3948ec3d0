"""The one straight-through of the library: a value forward, another tensor's gradient backward.

Every straight-through estimator in gumbelkit (``straight_through``, hard
Gumbel-Softmax on the PyTorch path, hard Binary Concrete, the ST-type
estimators, hard samples of the distributions) is :func:`forward_as`.
"""

from __future__ import annotations

import torch


class _StraightThrough(torch.autograd.Function):
    """Forward: ``value``; backward: the incoming gradient goes to ``surrogate`` unchanged.

    Written with ``setup_context`` and a generated vmap rule so that the
    ``torch.func`` transforms (``grad``, ``jacrev``, ``vmap``) work through it;
    its backward (and forward-mode derivative) is the identity, so double
    backward and Hessians work too.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
        return value

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, grad

    @staticmethod
    def jvp(ctx, value_tangent: torch.Tensor | None,
            surrogate_tangent: torch.Tensor) -> torch.Tensor:
        return surrogate_tangent


def forward_as(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """Exactly ``value`` (in ``surrogate``'s dtype) forward; ``surrogate``'s gradient backward.

    ``y = value`` with ``dy/d surrogate = I``: the straight-through estimator
    (Bengio, Leonard & Courville 2013). Unlike ``value + (surrogate -
    surrogate.detach())`` it leaves no rounding on the forward value (``1 - 0.3
    + 0.3`` is not always 1 in float32) and no NaN where ``surrogate`` is
    infinite. ``value`` gets no gradient; both tensors have the same shape.

    Example:
        >>> soft = torch.tensor([0.2, 0.7, 0.1], requires_grad=True)
        >>> y = forward_as(torch.tensor([0.0, 1.0, 0.0]), soft)
        >>> (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
        >>> y.tolist(), soft.grad.tolist()
        ([0.0, 1.0, 0.0], [1.0, 2.0, 3.0])
    """
    return _StraightThrough.apply(value.detach().to(surrogate.dtype), surrogate)
