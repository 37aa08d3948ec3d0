"""Two autograd pieces every layer shares: the straight-through and the division by a temperature.

Every straight-through estimator in gumbelkit (``straight_through``, hard
Gumbel-Softmax on the PyTorch path, hard Binary Concrete, the ST-type
estimators, hard samples of the distributions) is :func:`forward_as`; every
``z / tau`` in front of a softmax or a sigmoid on the PyTorch path is
:func:`divide_by_temperature`. Both are written with ``setup_context`` and a
generated vmap rule, so the ``torch.func`` transforms work through them.
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


class _DivideByTemperature(torch.autograd.Function):
    """``q = z / tau`` with the gradients of :func:`divide_by_temperature`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z: torch.Tensor, tau: torch.Tensor, dim: int | None) -> torch.Tensor:
        return z / tau

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        z, tau, dim = inputs
        ctx.save_for_backward(z, tau, output)
        ctx.save_for_forward(tau, output)
        ctx.dim = dim

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None,
                                                   None]:
        z, tau, q = ctx.saved_tensors
        live = torch.isfinite(q)
        grad = torch.where(live, grad, 0.0)
        grad_z = grad_tau = None
        if ctx.needs_input_grad[0]:
            grad_z = (grad / tau).sum_to_size(z.shape)
        if ctx.needs_input_grad[1]:
            if ctx.dim is None:
                shifted = q
            else:
                top = torch.where(torch.isfinite(z), z, -torch.inf).amax(ctx.dim, keepdim=True)
                shifted = (z - top) / tau
            moment = (grad * torch.where(live & torch.isfinite(shifted), shifted, 0.0))
            grad_tau = -moment.sum_to_size(tau.shape) / tau
        return grad_z, grad_tau, None

    @staticmethod
    def jvp(ctx, z_tangent: torch.Tensor | None, tau_tangent: torch.Tensor | None,
            dim_tangent: None) -> torch.Tensor:
        """``dq = dz / tau - q dtau / tau``, 0 where ``q`` is infinite (as the backward)."""
        tau, q = ctx.saved_tensors
        dq = torch.zeros_like(q)
        if z_tangent is not None:
            dq = dq + z_tangent / tau
        if tau_tangent is not None:
            dq = dq - torch.where(torch.isfinite(q), q, 0.0) * tau_tangent / tau
        return torch.where(torch.isfinite(q), dq, 0.0)


def divide_by_temperature(z: torch.Tensor, tau: float | torch.Tensor,
                          dim: int | None = None) -> torch.Tensor:
    """``z / tau`` for a softmax (along ``dim``) or a sigmoid (``dim=None``) to follow.

    The forward value is ``z / tau`` (``-inf`` stays ``-inf``). The gradients
    are those of ``z / tau`` except where they would be NaN or lose accuracy:

    * where ``z / tau`` is infinite (a masked ``z = -inf``, or a quotient beyond
      the dtype's range, where the softmax or sigmoid downstream is saturated)
      nothing flows back, not ``0 * inf``;
    * ``d/dtau = -sum_i g_i q_i / tau`` with ``q = z / tau``, never ``tau * tau``,
      which underflows at a small ``tau``;
    * with ``dim``, ``q_i`` is replaced by ``(z_i - max_j z_j) / tau``: the
      softmax's backward ``g`` sums to 0 along ``dim``, so the shift changes
      nothing exactly, but stops ``|z|`` of 1e20 from multiplying the rounding
      left in that sum (the fused kernel's ``-sum_i gx_i log y_i`` is the same
      quantity). Only valid in front of a softmax along ``dim``.

    A float ``tau`` is a plain division (it has no gradient).

    Example:
        >>> z = torch.tensor([1.0, -torch.inf, 3.0], requires_grad=True)
        >>> tau = torch.tensor(0.5, requires_grad=True)
        >>> torch.softmax(divide_by_temperature(z, tau, dim=0), 0)[0].backward()
        >>> z.grad.tolist()[1], bool(torch.isfinite(tau.grad))
        (0.0, True)
    """
    if not isinstance(tau, torch.Tensor):
        return z / tau
    return _DivideByTemperature.apply(z, tau, dim)
