"""Argument checks shared by every public function.

Every check raises ``ValueError`` (or ``TypeError`` for a wrong kind of
object) with the value that was given and the range that was expected. Nothing
is clamped silently. Checks of tensor contents go through :func:`fail_if`, the
one place where they meet the host (and ``torch.compile``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real

import torch

Temperature = float | torch.Tensor


def checks_deferred(t: torch.Tensor) -> bool:
    """True where a check of ``t`` must not read it back to the host: while
    ``torch.compile`` traces, and while a CUDA graph captures ``t``'s stream
    (a read there would end the capture)."""
    return torch.compiler.is_compiling() or (t.is_cuda and torch.cuda.is_current_stream_capturing())


def fail_if(bad: torch.Tensor, message: Callable[[], str], summary: str) -> None:
    """Raise ``ValueError(message())`` if any entry of the bool tensor ``bad`` is True.

    In eager mode this reads ``bad.any()`` back to the host and forms the
    message (which may name the first bad row) only on failure. Where a read
    is not allowed (:func:`checks_deferred`: under ``torch.compile``, or while
    a CUDA graph captures) it is ``torch._assert_async(~bad.any(), summary)``
    instead: it stays on the device, in the graph, and fails with ``summary``
    where the graph runs (eager mode names the row; a graph cannot). Inside
    ``torch.func.vmap`` the whole batch is read, and the error says ``summary``.
    """
    if checks_deferred(bad):
        torch._assert_async(~bad.any(), summary)
        return
    functorch = torch._C._functorch
    batched = False
    while functorch.is_functorch_wrapped_tensor(bad):  # unwrap every transform's layer
        batched |= functorch.is_batchedtensor(bad)
        bad = functorch.get_unwrapped(bad)
    if not bool(bad.any()):
        return
    if batched:  # inside vmap the whole batch was read; its rows are not this call's
        raise ValueError(f"{summary} (in a vmapped call; call it without vmap to see the row)")
    raise ValueError(message())


def first_index(mask: torch.Tensor) -> tuple[int, ...]:
    """The index of the first True entry of ``mask`` (row-major order)."""
    return tuple(int(i) for i in mask.nonzero()[0])


def check_dim_type(dim: object) -> int:
    """``dim`` as an axis index: a Python ``int`` (not a bool, float, str or tensor)."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {dim!r} of type {type(dim).__name__}")
    return dim


def check_dim(x: torch.Tensor, dim: int) -> int:
    """Return ``dim`` (an int, see :func:`check_dim_type`) as a non-negative axis of ``x``."""
    check_dim_type(dim)
    if x.dim() == 0:
        raise ValueError("logits must have at least one axis (the category axis), got a scalar")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim must lie in [{-x.dim()}, {x.dim() - 1}] for a tensor of "
                         f"shape {tuple(x.shape)}, got {dim}")
    return dim % x.dim()


def check_floating(x: torch.Tensor, name: str = "logits") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must have a floating dtype, got {x.dtype}")


def _row_name(index: int, batch_shape: tuple[int, ...]) -> str:
    if len(batch_shape) == 0:
        return "the only row"
    if len(batch_shape) == 1:
        return f"row {index}"
    return f"row {tuple(int(i) for i in torch.unravel_index(torch.tensor(index), batch_shape))}"


def bad_logits_message(kind: str, row: int, batch_shape: tuple[int, ...], dim: int) -> str:
    """The error of :func:`check_logits` for flat row ``row``: ``kind`` is "nan"
    (NaN or +inf in the row) or "empty" (every entry -inf)."""
    if kind == "nan":
        return (f"logits contain NaN or +inf in {_row_name(row, batch_shape)} "
                f"(along dim={dim}); logits must be finite or -inf (masked)")
    return (f"every logit is -inf in {_row_name(row, batch_shape)} "
            f"(along dim={dim}): no category can be sampled")


def raise_bad_logits_row(kind: str, row: int, batch_shape: tuple[int, ...], dim: int) -> None:
    """Raise the error of :func:`check_logits` for flat row ``row``; the fused
    kernels validate while they sample and report through this."""
    raise ValueError(bad_logits_message(kind, row, batch_shape, dim))


def check_logits(logits: torch.Tensor, dim: int = -1, *, masked_ok: bool = True,
                 scan: bool = True) -> int:
    """Categorical logits along ``dim``: no NaN, no +inf, not every entry -inf.

    ``-inf`` entries are masked categories (allowed when ``masked_ok``).
    ``scan=False`` checks type and ``dim`` only (for callers whose kernel
    scans the values and reports through :func:`raise_bad_logits_row`).
    Returns the normalised ``dim``.
    """
    check_floating(logits)
    dim = check_dim(logits, dim)
    if logits.shape[dim] == 0:
        raise ValueError(f"the category axis dim={dim} of logits of shape "
                         f"{tuple(logits.shape)} is empty; it needs at least one category")
    if logits.numel() == 0 or not scan:
        return dim
    moved = logits.detach().movedim(dim, -1)
    check_logit_rows(moved.reshape(-1, moved.shape[-1]), tuple(moved.shape[:-1]), dim,
                     masked_ok=masked_ok)
    return dim


def check_logit_rows(flat: torch.Tensor, batch_shape: tuple[int, ...], dim: int, *,
                     masked_ok: bool = True) -> None:
    """The value checks of :func:`check_logits` on ``[rows, categories]`` logits whose
    rows are the flattened ``batch_shape`` and whose categories lie along ``dim`` of
    the caller's tensor (which the messages name): NaN or +inf first, then a row of
    -inf only (with ``masked_ok``; without it any -inf), as the C kernels report them."""
    bad = torch.isnan(flat).any(-1) | (flat == math.inf).any(-1)
    fail_if(bad, lambda: bad_logits_message("nan", first_index(bad)[0], batch_shape, dim),
            "logits contain NaN or +inf")
    masked = flat == -math.inf
    if masked_ok:
        empty = masked.all(-1)
        fail_if(empty, lambda: bad_logits_message("empty", first_index(empty)[0], batch_shape,
                                                  dim), "a row of logits is all -inf")
    else:
        rows = masked.any(-1)
        fail_if(rows, lambda: f"logits contain -inf in "
                f"{_row_name(first_index(rows)[0], batch_shape)}; this function needs finite "
                f"logits", "logits contain -inf")


def check_binary_logits(logits: torch.Tensor) -> None:
    """Bernoulli logits: any value but NaN (+-inf are the certain outcomes)."""
    check_floating(logits)
    nan = torch.isnan(logits.detach())
    fail_if(nan, lambda: f"logits contain NaN at index {first_index(nan)}", "logits contain NaN")


def check_positive_real(value: float, name: str) -> float:
    """A Python number that is > 0 and finite."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be > 0 and finite, got {value}")
    return value


def check_temperature(tau: Temperature, logits: torch.Tensor | None = None,
                      dim: int | None = None, name: str = "tau", *,
                      scan: bool = True) -> Temperature:
    """A temperature: a float > 0 and finite, or a tensor of such values.

    A tensor must broadcast against ``logits`` and have size 1 along ``dim``
    (one temperature per row). ``scan=False`` skips the check of a tensor's
    values (the fused path checks them inside a custom op, so that
    ``torch.compile`` traces it).
    """
    if not isinstance(tau, torch.Tensor):
        return check_positive_real(tau, name)
    if not tau.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating tensor, got dtype {tau.dtype}")
    detached = tau.detach()
    if scan:
        bad = ~(torch.isfinite(detached) & (detached > 0))
        fail_if(bad, lambda: f"{name} must be > 0 and finite everywhere, got "
                f"{float(detached[first_index(bad)])} at index {first_index(bad)}",
                f"{name} must be > 0 and finite")
    if logits is not None:
        try:
            shape = torch.broadcast_shapes(tau.shape, logits.shape)
        except RuntimeError:
            raise ValueError(f"{name} of shape {tuple(tau.shape)} does not broadcast against "
                             f"logits of shape {tuple(logits.shape)}") from None
        if shape != logits.shape:
            raise ValueError(f"{name} of shape {tuple(tau.shape)} would enlarge logits of shape "
                             f"{tuple(logits.shape)}; give one temperature per row")
        if dim is not None:
            axis = dim - logits.dim() + tau.dim()
            if 0 <= axis < tau.dim() and tau.shape[axis] != 1:
                raise ValueError(f"{name} must have size 1 along the category axis dim={dim} "
                                 f"(one temperature per row), got shape {tuple(tau.shape)}")
    return tau


def check_stretch(gamma: float, zeta: float) -> tuple[float, float]:
    """Hard Concrete stretch interval: gamma < 0 and zeta > 1, both finite."""
    if isinstance(gamma, bool) or not isinstance(gamma, Real) or not math.isfinite(gamma) \
            or not gamma < 0:
        raise ValueError(f"gamma must be a finite number < 0, got {gamma}")
    if isinstance(zeta, bool) or not isinstance(zeta, Real) or not math.isfinite(zeta) \
            or not zeta > 1:
        raise ValueError(f"zeta must be a finite number > 1, got {zeta}")
    return float(gamma), float(zeta)


def check_int_range(value: int, name: str, low: int, high: int | None = None) -> int:
    """An int in [low, high] (high=None: no upper bound)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        upper = "inf)" if high is None else f"{high}]"
        raise ValueError(f"{name} must lie in [{low}, {upper}, got {value}")
    return value


def check_finite(x: torch.Tensor, name: str) -> None:
    """A floating tensor with every entry finite (no NaN, no +-inf)."""
    check_floating(x, name)
    bad = ~torch.isfinite(x.detach())
    fail_if(bad, lambda: f"{name} must be finite everywhere, got "
            f"{float(x.detach()[first_index(bad)])} at index {first_index(bad)}",
            f"{name} must be finite")


def check_probs(probs: torch.Tensor, dim: int = -1) -> int:
    """Categorical probabilities along ``dim``: finite, >= 0, a positive entry in every row.

    Rows need not sum to 1 (they are normalised by the caller); zeros are
    masked categories. Returns the normalised ``dim``.
    """
    check_floating(probs, "probs")
    dim = check_dim(probs, dim)
    detached = probs.detach()
    bad = ~(torch.isfinite(detached) & (detached >= 0))
    fail_if(bad, lambda: f"probs must be finite and >= 0, got "
            f"{float(detached[first_index(bad)])} at index {first_index(bad)}",
            "probs must be finite and >= 0")
    moved = detached.movedim(dim, -1)
    empty = (moved == 0).all(-1).reshape(-1)
    fail_if(empty, lambda: f"every probability is 0 in "
            f"{_row_name(first_index(empty)[0], tuple(moved.shape[:-1]))} (along dim={dim}): "
            f"no category can be sampled", "a row of probs is all 0")
    return dim


def check_unit_interval(x: torch.Tensor, name: str, closed: bool = False) -> None:
    """A floating tensor with every entry inside (0, 1), or [0, 1] when ``closed``."""
    check_floating(x, name)
    detached = x.detach()
    inside = (detached >= 0) & (detached <= 1) if closed else (detached > 0) & (detached < 1)
    bad = ~inside
    interval = "[0, 1]" if closed else "(0, 1)"
    fail_if(bad, lambda: f"{name} must lie in {interval}, got "
            f"{float(detached[first_index(bad)])} at index {first_index(bad)}",
            f"{name} must lie in {interval}")


def check_broadcasts_to(shape: torch.Size | tuple[int, ...], target: tuple[int, ...],
                        name: str, hint: str = "") -> None:
    """``shape`` broadcasts to ``target`` without enlarging it."""
    try:
        ok = torch.broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} of shape {tuple(shape)} does not broadcast to the batch shape "
                         f"{tuple(target)}{hint}")


def check_k_unmasked(logits: torch.Tensor, k: int, dim: int) -> None:
    """Every row of ``logits`` (categories along ``dim``) has at least ``k``
    unmasked (finite) categories; else a ``ValueError`` naming the first short row."""
    unmasked = torch.isfinite(logits.detach()).sum(dim)
    short = unmasked < k
    fail_if(short, lambda: f"k={k} exceeds the {int(unmasked[first_index(short)])} unmasked "
            f"categories of row {first_index(short)}", f"k={k} exceeds a row's unmasked categories")


def check_rows(values: torch.Tensor, ok: torch.Tensor, name: str, allowed: str) -> None:
    """Per-row values: raise naming the first row where ``ok`` is False."""
    fail_if(~ok, lambda: f"{name} must be {allowed}, got {values[first_index(~ok)].item()} "
            f"in row {first_index(~ok)[0]}", f"{name} must be {allowed}")


# The smallest positive value of each compute dtype (a subnormal): a temperature
# that rounds below it becomes 0 there.
_SMALLEST_POSITIVE = {torch.float32: 2.0 ** -149, torch.float64: 2.0 ** -1074}
_FLOAT32_ROUNDS_TO_ZERO = 2.0 ** -150
_FLOAT32_ROUNDS_TO_INF = 2.0 ** 128 * (1 - 2.0 ** -25)


def check_temperature_range(tau: Temperature, dtype: torch.dtype, name: str = "tau") -> None:
    """A temperature (already checked > 0 and finite) that stays > 0 and finite
    when rounded to ``dtype``, the dtype the op computes in (float32 for
    float32/bfloat16/float16 inputs): ``tau = 1e39`` would become ``inf`` in
    float32 and ``1e-46`` would become 0."""
    if isinstance(tau, torch.Tensor):
        rounded = tau.detach().to(dtype)
        bad = ~(torch.isfinite(rounded) & (rounded > 0))
        fail_if(bad, lambda: _range_message(name, dtype, float(tau.detach()[first_index(bad)]),
                                            f" at index {first_index(bad)}"),
                f"{name} must be > 0 and finite in {dtype_name(dtype)}")
        return
    if dtype == torch.float64:
        return
    # a float rounds to a positive, finite float32 exactly when it lies strictly between
    # 2**-150 (half the smallest subnormal, which rounds to 0) and 2**128 (1 - 2**-25)
    # (the midpoint between the largest float32 and 2**128, which rounds to infinity)
    if not _FLOAT32_ROUNDS_TO_ZERO < tau < _FLOAT32_ROUNDS_TO_INF:
        raise ValueError(_range_message(name, dtype, tau, ""))


def _range_message(name: str, dtype: torch.dtype, value: float, where: str) -> str:
    low, high = _SMALLEST_POSITIVE[dtype], torch.finfo(dtype).max
    return (f"{name} must be > 0 and finite in {dtype_name(dtype)}, the dtype the op "
            f"computes in: it must lie in [{low:.6g}, {high:.6g}], got {value:g}{where}")


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` for ``torch.float32``: a dtype as error messages name it."""
    return str(dtype).removeprefix("torch.")


def overflow_message(row: int, batch_shape: tuple[int, ...], dim: int, largest: float,
                     tau: float, dtype: torch.dtype) -> str:
    """The error for a row whose largest ``(logits + G) / tau`` is not finite in
    ``dtype`` (the softmax would be NaN); ``largest`` is the row's largest logit."""
    high = torch.finfo(dtype).max
    return (f"logits / temperature overflow in {_row_name(row, batch_shape)} "
            f"(along dim={dim}): its largest logit {largest:g} divided by tau={tau:g} "
            f"is beyond the range of {dtype_name(dtype)}; |logits / tau| must stay "
            f"below {high:.6g} (rescale the logits or raise tau)")


def raise_overflow_row(row: int, batch_shape: tuple[int, ...], dim: int, largest: float,
                       tau: float, dtype: torch.dtype) -> None:
    """Raise :func:`overflow_message`'s error (the fused kernels report through this)."""
    raise ValueError(overflow_message(row, batch_shape, dim, largest, tau, dtype))
