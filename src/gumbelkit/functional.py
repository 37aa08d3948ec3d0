"""Functional ops: Gumbel-max, Gumbel-top-k, Gumbel-Softmax, straight-through,
Binary Concrete and Hard Concrete.

All noise comes from :mod:`gumbelkit._rng` (counter-based Philox), so every op
is reproducible with ``seed=`` and batch-invariant with a per-row seed tensor.
Internal math is float32, or float64 for float64 inputs; outputs have the
input's dtype.
"""

from __future__ import annotations

import math

import torch

from . import _rng
from ._autograd import divide_by_temperature, forward_as
from ._rng import SeedLike
from ._validate import (
    Temperature,
    check_binary_logits,
    check_floating,
    check_int_range,
    check_k_unmasked,
    check_logits,
    check_stretch,
    check_temperature,
    check_temperature_range,
    fail_if,
    first_index,
    overflow_message,
)
from .kernels import _lib, ops

__all__ = [
    "gumbel_noise",
    "gumbel_max",
    "gumbel_topk",
    "gumbel_softmax",
    "straight_through",
    "binary_concrete",
    "hard_concrete",
    "hard_concrete_prob_nonzero",
    "hard_concrete_deterministic_gate",
]



# ------------------------------------------------------------------ dispatch
# float32/float64/bfloat16/float16 tensors on CPU (with the C kernels built) or
# on CUDA (with Triton installed) go to the fused kernels (kernels/ops.py:
# custom ops, so torch.compile traces them); everything else to the
# pure-PyTorch path below, which has identical semantics and bit-identical noise.


def _fused(x: torch.Tensor, dim: int = -1) -> bool:
    """Whether ``x`` (categories along ``dim``) runs on the fused kernels.

    Inside a ``torch.func`` differentiation transform (``grad``, ``jacrev``,
    ``jacfwd``, ``vjp``, ``jvp``; not a bare ``vmap``), whichever argument it
    differentiates, the PyTorch path runs instead: the autograd that
    ``torch.library`` registers on the fused ops does not support those
    transforms, and the PyTorch path draws the same noise.
    """
    if x.device.type not in ("cpu", "cuda") or x.numel() == 0:
        return False
    if _under_differentiation_transform():
        return False
    if x.device.type == "cuda":
        if not ops.TRITON_INSTALLED:
            return False
    elif _lib.library() is None:
        _lib.warn_if_missing()
        return False
    return x.dtype in ops.DTYPE_CODES and (x.dim() == 0 or x.shape[dim] < 2**31)


def _functorch_wrapped(x: torch.Tensor) -> bool:
    """Whether ``x`` is a ``torch.func`` transform's wrapper (never under torch.compile,
    whose dynamo sees plain tensors and cannot call these checks)."""
    return (not torch.compiler.is_compiling()
            and torch._C._functorch.is_functorch_wrapped_tensor(x))


def _under_differentiation_transform() -> bool:
    """Whether a ``torch.func`` differentiation transform (``grad``, ``vjp``, ``jvp``
    and what is built from them) is active, whatever it differentiates."""
    if torch.compiler.is_compiling() or torch._C._functorch.peek_interpreter_stack() is None:
        return False
    from torch._C._functorch import TransformType
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    return any(i.key() in (TransformType.Grad, TransformType.Jvp)
               for i in retrieve_all_functorch_interpreters())


def _rows(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``x`` as ``[rows, categories]`` (a view where the layout allows) and its batch shape."""
    if x.dim() == 2 and dim == 1:
        return x, (x.shape[0],)
    moved = x.movedim(dim, -1)
    return moved.reshape(-1, moved.shape[-1]), tuple(moved.shape[:-1])


def _unrows(y: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    """The inverse of :func:`_rows`: ``[rows, categories]`` back to ``like``'s layout."""
    if like.dim() == 2 and dim == 1:
        return y
    return y.reshape(like.movedim(dim, -1).shape).movedim(-1, dim)


# The kernels' compact forms of the same seeds and keys (kernels/ops.py): one
# seed for every row, and no keys, which keys row r by r.
_ROW_INDEX_KEYS = torch.empty(0, dtype=torch.int64, device="cpu")


def _kernel_seeds(batch_shape: tuple[int, ...], seed: SeedLike,
                  generator: torch.Generator | None,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row 64-bit seeds and row keys as ``_rng.noise`` derives them, for the row
    kernels on ``device``; a single seed stays one value with no keys (row r keyed
    by r), so small batches pay for no per-row tensors."""
    resolved = _rng.resolve_seed(seed, generator)
    if resolved.per_row is not None:
        return _rng.row_keys_and_seeds(resolved, batch_shape, device)
    seeds = torch.full((1,), _rng.as_int64(resolved.scalar), dtype=torch.int64, device=device)
    if device.type == "cpu":
        return seeds, _ROW_INDEX_KEYS
    return seeds, torch.empty(0, dtype=torch.int64, device=device)


def _fused_temperature(tau: Temperature, logits: torch.Tensor,
                       dim: int | None = None) -> Temperature:
    """check_temperature and check_temperature_range, with a tensor's values
    checked inside a custom op."""
    tau = check_temperature(tau, logits, dim, scan=False)
    dtype = ops.compute_dtype(logits.dtype)
    if isinstance(tau, torch.Tensor):
        return torch.ops.gumbelkit.checked_temperature(tau, "tau", dtype)
    check_temperature_range(tau, dtype)
    return tau


def _wants_grad(*tensors: object) -> bool:
    return torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def _category_noise(logits: torch.Tensor, dim: int, kind: str, seed: SeedLike,
                    generator: torch.Generator | None, stream: int = 0) -> torch.Tensor:
    """Noise shaped like ``logits`` whose columns run along ``dim`` (noise dtype)."""
    moved_shape = logits.movedim(dim, -1).shape
    g = ops.draw_noise(kind, tuple(moved_shape[:-1]), moved_shape[-1],
                       _rng.resolve_seed(seed, generator), _rng.noise_dtype(logits.dtype),
                       logits.device, stream=stream)
    return g.movedim(-1, dim)


def _perturbed(logits: torch.Tensor, dim: int, seed: SeedLike,
               generator: torch.Generator | None) -> torch.Tensor:
    """logits + Gumbel noise, in the noise dtype (masked entries stay -inf),
    formed in the noise's buffer (no second tensor of the logits' size)."""
    g = _category_noise(logits, dim, "gumbel", seed, generator)
    if _functorch_wrapped(logits):  # vmap/grad: the noise may be unbatched, logits not
        return logits.to(g.dtype) + g
    return g.add_(logits)


def _scaled_temperature(tau: Temperature, dtype: torch.dtype) -> Temperature:
    return tau.to(dtype) if isinstance(tau, torch.Tensor) else tau


def gumbel_noise(shape: tuple[int, ...] | torch.Size | list[int], *,
                 seed: int | torch.Tensor | None = None,
                 generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Standard Gumbel noise ``G = -log(-log U)``, counter-based and reproducible.

    The last axis is the column axis; the leading axes are rows. Element
    ``(row, col)`` is a pure function of ``(seed, row key, col)`` (see
    docs/concepts.md, the noise contract): with an ``int`` seed the row key is
    the flat row index; a per-row seed tensor must broadcast to ``shape[:-1]``
    and then a row's noise depends on its own seed only. Values are finite,
    in about [-3.1, 22.87].

    Args:
        shape: output shape, at least one axis.
        seed: ``int`` in [-2**63, 2**64), or integer tensor of per-row seeds.
        generator: a seed is drawn from it; with neither ``seed`` nor
            ``generator``, from the global torch RNG. Giving both is a
            ``ValueError``.
        dtype: float32 or float64 (float16/bfloat16 are computed in float32
            and rounded).
        device: output device.

    Example:
        >>> g = gumbelkit.gumbel_noise((2, 5), seed=0)
        >>> torch.equal(g, gumbelkit.gumbel_noise((2, 5), seed=0))
        True
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0 or any(s < 0 for s in shape):
        raise ValueError(f"shape must have at least one axis and no negative sizes, got {shape}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    out = ops.draw_noise("gumbel", shape[:-1], shape[-1], _rng.resolve_seed(seed, generator),
                         _rng.noise_dtype(dtype), device)
    return out.to(dtype)


def gumbel_max(logits: torch.Tensor, dim: int = -1, *, seed: SeedLike = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Exact categorical sample: ``argmax_i (logits_i + G_i)``, ``G_i ~ Gumbel(0, 1)``.

    ``P(index = i) = softmax(logits)_i`` (Gumbel 1954; Maddison et al. 2014).
    Logits need not be normalised; ``-inf`` entries are never chosen.

    Args:
        logits: floating tensor, categories along ``dim``; finite or ``-inf``,
            at least one finite entry per row.
        dim: the category axis.
        seed, generator: see :func:`gumbelkit.gumbel_noise`.

    Returns:
        int64 tensor of the logits' shape without ``dim``.

    Example:
        >>> gumbelkit.gumbel_max(torch.tensor([[0.0, 1.0, 2.0]]), seed=0)
        tensor([2])
    """
    check_floating(logits)
    dim = check_logits(logits, dim, scan=False)
    if _fused(logits, dim):
        x, batch_shape = _rows(logits.detach(), dim)
        seeds, keys = _kernel_seeds(batch_shape, seed, generator, logits.device)
        index = torch.ops.gumbelkit.gumbel_max(x, seeds, keys, list(batch_shape), dim)
        return index.reshape(batch_shape)
    return _gumbel_max_reference(logits, dim, seed, generator)


def _gumbel_max_reference(logits: torch.Tensor, dim: int, seed: SeedLike,
                          generator: torch.Generator | None) -> torch.Tensor:
    dim = check_logits(logits, dim)
    return _perturbed(logits.detach(), dim, seed, generator).argmax(dim)


def gumbel_topk(logits: torch.Tensor, k: int, dim: int = -1, *, seed: SeedLike = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``k`` distinct categories without replacement, in sampling order.

    The indices of the ``k`` largest ``logits_i + G_i`` are an ordered sample of
    the Plackett-Luce model: ``P(i1, ..., ik) = prod_j p_ij / (1 - sum_{l<j}
    p_il)`` (Vieira 2014; Kool et al. 2019).

    Args:
        logits: as in :func:`gumbel_max`; every row needs at least ``k``
            finite entries.
        k: number of categories, 1 <= k <= K.

    Returns:
        int64 tensor: the logits' shape with ``dim`` of size ``k``.

    Example:
        >>> gumbelkit.gumbel_topk(torch.zeros(4), k=2, seed=1).shape
        torch.Size([2])
    """
    dim = check_logits(logits, dim)
    n_categories = logits.shape[dim]
    check_int_range(k, "k", 1, n_categories)
    check_k_unmasked(logits, k, dim)
    return _perturbed(logits.detach(), dim, seed, generator).topk(k, dim).indices


def _one_hot_like(scores: torch.Tensor, index: torch.Tensor, dim: int,
                  dtype: torch.dtype) -> torch.Tensor:
    hard = torch.zeros(scores.shape, dtype=dtype, device=scores.device)
    return hard.scatter_(dim, index.unsqueeze(dim), 1.0)


def straight_through(soft: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """One-hot of ``argmax(soft)`` forward, identity gradient backward.

    The forward value is exactly one-hot (unlike ``hard - soft.detach() + soft``,
    whose rounding can leave 1 - 1e-8 or 1e-9 off the zeros); the backward
    passes the incoming gradient to ``soft`` as if the op were the identity
    (Bengio et al. 2013). Ties go to the lowest index.

    Example:
        >>> y = gumbelkit.straight_through(torch.tensor([0.2, 0.7, 0.1], requires_grad=True))
        >>> y
        tensor([0., 1., 0.], grad_fn=<_StraightThroughBackward>)
    """
    check_floating(soft, "soft")
    dim = check_logits(soft, dim)
    hard = _one_hot_like(soft, soft.detach().argmax(dim), dim, soft.dtype)
    return forward_as(hard, soft)


def gumbel_softmax(logits: torch.Tensor, tau: Temperature = 1.0, hard: bool = False,
                   dim: int = -1, *, seed: SeedLike = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel-Softmax (Concrete) sample: ``y = softmax((logits + G) / tau)``.

    Jang et al. 2017; Maddison et al. 2017. Low ``tau`` gives nearly one-hot
    samples with high-variance gradients; high ``tau`` gives smooth, biased
    ones. With ``hard=True`` the forward value is the exact one-hot of
    ``argmax(logits + G)`` (the same category :func:`gumbel_max` draws with the
    same seed) and the gradient is that of the soft sample (straight-through
    Gumbel-Softmax). A drop-in for ``torch.nn.functional.gumbel_softmax``
    (same order of ``logits, tau, hard``), but seedable, and ``tau <= 0``
    raises instead of returning NaN.

    Args:
        logits: floating tensor, categories along ``dim``; finite or ``-inf``
            (masked: probability and gradient exactly 0).
        tau: temperature > 0 and finite: a float, or a tensor broadcasting
            against ``logits`` with size 1 along ``dim`` (one per row); it
            must stay > 0 and finite in the compute dtype (float32 unless the
            logits are float64), and a row whose largest ``(logits + G) / tau``
            overflows that dtype is a ``ValueError`` (its softmax would be
            NaN; see docs/concepts.md).
        hard: straight-through one-hot forward.
        dim: the category axis.
        seed, generator: see :func:`gumbelkit.gumbel_noise`.

    Example:
        >>> y = gumbelkit.gumbel_softmax(torch.zeros(2, 3), tau=0.5, seed=0)
        >>> torch.allclose(y.sum(-1), torch.ones(2))
        True
    """
    check_floating(logits)
    dim = check_logits(logits, dim, scan=False)
    if not _fused(logits, dim):
        return _gumbel_softmax_reference(logits, tau, hard, dim, seed, generator)
    tau = _fused_temperature(tau, logits, dim)
    dtype = ops.compute_dtype(logits.dtype)
    x, batch_shape = _rows(logits, dim)
    if isinstance(tau, torch.Tensor):
        # a 0-d CPU tau may come with CUDA logits (torch mixes them): the kernel reads
        # it on the logits' device
        tau_rows = tau.to(logits.device, dtype).broadcast_to(logits.shape).movedim(dim, -1)
        tau_rows = tau_rows[..., 0]
        tau_rows = tau_rows.reshape(-1).contiguous()
    else:
        tau_rows = torch.full((1,), tau, dtype=dtype, device=logits.device)
    seeds, keys = _kernel_seeds(batch_shape, seed, generator, logits.device)
    y, _ = torch.ops.gumbelkit.gumbel_softmax(x, tau_rows, seeds, keys, hard,
                                              _wants_grad(logits, tau), list(batch_shape), dim)
    return _unrows(y, logits, dim).to(logits.dtype)


def _gumbel_softmax_reference(logits: torch.Tensor, tau: Temperature, hard: bool, dim: int,
                              seed: SeedLike,
                              generator: torch.Generator | None) -> torch.Tensor:
    dim = check_logits(logits, dim)
    tau = check_temperature(tau, logits, dim)
    check_temperature_range(tau, _rng.noise_dtype(logits.dtype))
    perturbed = _perturbed(logits, dim, seed, generator)
    # the index before dividing: z / tau can round two different z to one value
    index = perturbed.detach().argmax(dim) if hard else None
    if isinstance(tau, torch.Tensor):
        scaled = divide_by_temperature(perturbed, tau.to(perturbed.dtype), dim)
    else:  # perturbed is this call's own buffer: divide in place
        scaled = perturbed.div_(tau)
    _check_overflow(scaled, logits, tau, dim)
    soft = torch.softmax(scaled, dim)
    if not hard:
        return soft.to(logits.dtype)
    one_hot = _one_hot_like(soft, index, dim, soft.dtype)
    return forward_as(one_hot, soft).to(logits.dtype)


def _check_overflow(scaled: torch.Tensor, logits: torch.Tensor, tau: Temperature,
                    dim: int, report_dim: int | None = None) -> None:
    """Raise when a row's largest ``scaled = z / tau`` (z: logits, perturbed or
    not, broadcasting against ``scaled``) is infinite: its softmax along ``dim``
    would be NaN. The error names the row, its largest logit and its tau, as the
    fused kernel's report does, and the category axis as ``report_dim`` (default
    ``dim``) for callers that moved it."""
    moved = scaled.detach().movedim(dim, -1)
    overflow = torch.isinf(moved.amax(-1)).reshape(-1)
    cols = moved.shape[-1]

    def message() -> str:
        row = first_index(overflow)[0]

        def row_of(t: torch.Tensor) -> torch.Tensor:
            return t.detach().broadcast_to(scaled.shape).movedim(dim, -1).reshape(-1, cols)[row]

        # tau as the op computes with it (the fused kernels receive it in scaled's dtype)
        t = float(row_of(tau.to(scaled.dtype))[0] if isinstance(tau, torch.Tensor)
                  else torch.tensor(tau, dtype=scaled.dtype))
        return overflow_message(row, tuple(moved.shape[:-1]),
                                dim if report_dim is None else report_dim,
                                float(row_of(logits).max()), t, scaled.dtype)

    fail_if(overflow, message, "logits / temperature overflow")


def _bernoulli_relaxation(logits: torch.Tensor, tau: Temperature, seed: SeedLike,
                          generator: torch.Generator | None) -> torch.Tensor:
    """sigmoid((logits + L) / tau) in the noise dtype, L ~ Logistic(0, 1)."""
    shape = logits.shape if logits.dim() > 0 else (1,)
    resolved = _rng.resolve_seed(seed, generator)
    noise = ops.draw_noise("logistic", tuple(shape[:-1]), shape[-1], resolved,
                           _rng.noise_dtype(logits.dtype), logits.device).reshape(logits.shape)
    perturbed = logits.to(noise.dtype) + noise
    return torch.sigmoid(divide_by_temperature(perturbed, _scaled_temperature(tau, noise.dtype)))


def binary_concrete(logits: torch.Tensor, tau: Temperature = 1.0, hard: bool = False, *,
                    seed: SeedLike = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary Concrete (relaxed Bernoulli): ``y = sigmoid((logits + L) / tau)``.

    ``L = log U - log(1 - U)`` is standard logistic noise (Maddison et al.
    2017, Jang et al. 2017). ``P(y > 1/2) = sigmoid(logits)`` at every ``tau``.
    ``hard=True`` returns the exact {0, 1} value ``y > 1/2`` forward with the
    soft gradient (straight-through). Each element is one independent choice;
    the last axis counts as columns and the leading axes as rows for seeding.

    Args:
        logits: floating tensor of Bernoulli logits (``-inf``/``+inf`` give
            exact 0/1 with zero gradient; NaN raises).
        tau: temperature > 0 and finite (also in the compute dtype, float32
            unless the logits are float64): a float or a tensor broadcasting
            against ``logits`` without enlarging it. An overflowing
            ``(logits + L) / tau`` gives exactly 0 or 1 with zero gradient.
        hard: straight-through {0, 1} forward.

    Example:
        >>> gumbelkit.binary_concrete(torch.tensor([-1.0, 0.0, 3.0]), tau=0.5, seed=0).shape
        torch.Size([3])
    """
    check_floating(logits)
    if _fused(logits):
        tau = _fused_temperature(tau, logits)
        return _concrete_fused(logits, tau, 1 if hard else 0, 0.0, 1.0, seed, generator)
    return _binary_concrete_reference(logits, tau, hard, seed, generator)


def _concrete_fused(logits: torch.Tensor, tau: Temperature, mode: int, gamma: float,
                    span: float, seed: SeedLike,
                    generator: torch.Generator | None) -> torch.Tensor:
    """Binary Concrete (mode 0 soft, 1 hard) or Hard Concrete (mode 2) on the kernels."""
    dtype = ops.compute_dtype(logits.dtype)
    shape = tuple(logits.shape) if logits.dim() > 0 else (1,)
    x = logits.reshape(-1, shape[-1])
    tau_t = (tau.to(logits.device, dtype) if isinstance(tau, torch.Tensor)
             else torch.full((), tau, dtype=dtype, device=logits.device))
    tau_2d = tau_t.broadcast_to(logits.shape).reshape(x.shape)
    seeds, keys = _kernel_seeds(shape[:-1], seed, generator, logits.device)
    y, _ = torch.ops.gumbelkit.concrete(x, tau_2d, seeds, keys, mode, _wants_grad(logits, tau),
                                        gamma, span, list(shape))
    return y.reshape(logits.shape).to(logits.dtype)


def _binary_concrete_reference(logits: torch.Tensor, tau: Temperature, hard: bool,
                               seed: SeedLike,
                               generator: torch.Generator | None) -> torch.Tensor:
    check_binary_logits(logits)
    tau = check_temperature(tau, logits)
    check_temperature_range(tau, _rng.noise_dtype(logits.dtype))
    soft = _bernoulli_relaxation(logits, tau, seed, generator)
    if hard:
        soft = forward_as((soft > 0.5).to(soft.dtype), soft)
    return soft.to(logits.dtype)


def hard_concrete(logits: torch.Tensor, tau: Temperature = 2.0 / 3.0, gamma: float = -0.1,
                  zeta: float = 1.1, *, seed: SeedLike = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Hard Concrete gate: ``z = clamp(sigmoid((logits + L)/tau) (zeta - gamma) + gamma, 0, 1)``.

    Louizos, Welling & Kingma 2018, "Learning Sparse Neural Networks through
    L0 Regularization". The Binary Concrete sample is stretched to
    ``(gamma, zeta)`` and clamped, so ``z`` is exactly 0 with probability
    ``sigmoid(tau log(-gamma/zeta) - logits)`` and exactly 1 with probability
    ``sigmoid(logits - tau log((1 - gamma)/(zeta - 1)))``; in between the
    gradient is pathwise, at the endpoints it is 0.

    Args:
        logits: ``log alpha``, floating, no NaN.
        tau: temperature > 0 (default 2/3, the paper's beta).
        gamma: lower stretch limit, < 0 (default -0.1).
        zeta: upper stretch limit, > 1 (default 1.1).

    Example:
        >>> z = gumbelkit.hard_concrete(torch.zeros(1000), seed=0)
        >>> bool(((z == 0) | (z == 1)).any())
        True
    """
    check_floating(logits)
    if _fused(logits):
        tau = _fused_temperature(tau, logits)
        gamma, zeta = check_stretch(gamma, zeta)
        return _concrete_fused(logits, tau, 2, gamma, zeta - gamma, seed, generator)
    return _hard_concrete_reference(logits, tau, gamma, zeta, seed, generator)


def _hard_concrete_reference(logits: torch.Tensor, tau: Temperature, gamma: float,
                             zeta: float, seed: SeedLike,
                             generator: torch.Generator | None) -> torch.Tensor:
    check_binary_logits(logits)
    tau = check_temperature(tau, logits)
    check_temperature_range(tau, _rng.noise_dtype(logits.dtype))
    gamma, zeta = check_stretch(gamma, zeta)
    soft = _bernoulli_relaxation(logits, tau, seed, generator)
    return torch.clamp(soft * (zeta - gamma) + gamma, 0.0, 1.0).to(logits.dtype)


def hard_concrete_prob_nonzero(logits: torch.Tensor, tau: Temperature = 2.0 / 3.0,
                               gamma: float = -0.1, zeta: float = 1.1) -> torch.Tensor:
    """Closed-form expected L0: ``P(z != 0) = sigmoid(logits - tau log(-gamma / zeta))``.

    Louizos et al. 2018, eq. 12: summed over gates this is the differentiable
    expected number of non-zero gates.

    Example:
        >>> gumbelkit.hard_concrete_prob_nonzero(torch.zeros(1))
        tensor([0.8318])
    """
    check_binary_logits(logits)
    tau = check_temperature(tau, logits)
    gamma, zeta = check_stretch(gamma, zeta)
    return torch.sigmoid(logits - tau * math.log(-gamma / zeta))


def hard_concrete_deterministic_gate(logits: torch.Tensor, gamma: float = -0.1,
                                     zeta: float = 1.1) -> torch.Tensor:
    """Test-time gate ``min(1, max(0, sigmoid(logits) (zeta - gamma) + gamma))``.

    Louizos et al. 2018, eq. 13.

    Example:
        >>> gumbelkit.hard_concrete_deterministic_gate(torch.tensor([-5.0, 0.0, 5.0]))
        tensor([0.0000, 0.5000, 1.0000])
    """
    check_binary_logits(logits)
    gamma, zeta = check_stretch(gamma, zeta)
    return torch.clamp(torch.sigmoid(logits) * (zeta - gamma) + gamma, 0.0, 1.0)
