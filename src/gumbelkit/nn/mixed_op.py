"""Architecture search by sampling: one candidate operation per forward (GDAS)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from .._rng import check_seed_source
from ..schedules import Schedule
from ._dispatch import groups
from .gumbel_softmax import GumbelSoftmax
from .temperature import LearnableTemperature


class Zero(nn.Module):
    """The "no connection" candidate of a search space: an output of zeros.

    Its output has the input's shape, or ``[..., out_features]`` when
    ``out_features`` is given (for a :class:`MixedOp` whose other candidates
    change the last dimension). It has no parameters and no graph; inside a
    :class:`MixedOp` the architecture logits get no gradient on a step that
    samples it (``dL/dw = <dL/dy, 0> = 0``).

    Args:
        out_features: the size of the output's last dimension, >= 1, or
            ``None`` for the input's shape.

    Example:
        >>> gumbelkit.nn.Zero(out_features=2)(torch.ones(3, 5))
        tensor([[0., 0.],
                [0., 0.],
                [0., 0.]])
    """

    def __init__(self, out_features: int | None = None) -> None:
        super().__init__()
        if out_features is not None and (isinstance(out_features, bool)
                                         or not isinstance(out_features, int)
                                         or out_features < 1):
            raise ValueError(f"out_features must be an int >= 1 or None, got {out_features!r}")
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zeros of ``x``'s dtype and device, shaped as the class docstring says."""
        if self.out_features is None:
            return x.new_zeros(x.shape)
        if x.dim() == 0:
            raise ValueError("Zero(out_features=...) needs an input with at least one dimension")
        return x.new_zeros((*x.shape[:-1], self.out_features))

    def extra_repr(self) -> str:
        return "" if self.out_features is None else f"out_features={self.out_features}"


def _candidate_dict(candidates: Sequence[nn.Module] | Mapping[str, nn.Module]) -> nn.ModuleDict:
    if isinstance(candidates, nn.Module) or isinstance(candidates, (str, bytes)):
        raise TypeError("candidates must be a sequence or a mapping of nn.Module, "
                        f"got a {type(candidates).__name__}")
    if isinstance(candidates, Mapping):
        items = list(candidates.items())
    elif isinstance(candidates, Sequence):
        items = [(str(i), module) for i, module in enumerate(candidates)]
    else:
        raise TypeError("candidates must be a sequence or a mapping of nn.Module, "
                        f"got a {type(candidates).__name__}")
    if not items:
        raise ValueError("candidates must hold at least one module, got 0")
    for name, module in items:
        if not isinstance(name, str):
            raise TypeError(f"candidate names must be str, got {name!r}")
        if not name or "." in name:  # nn.ModuleDict would raise a KeyError for these
            raise ValueError(f"candidate names must be non-empty and hold no '.', got {name!r}")
        if not isinstance(module, nn.Module):
            raise TypeError(f"candidate {name!r} must be an nn.Module, "
                            f"got {type(module).__name__}")
    return nn.ModuleDict(items)


class MixedOp(nn.Module):
    """One of ``K`` candidate modules, sampled per forward from architecture logits (GDAS).

    Dong & Yang 2019, "Searching for a Robust Neural Architecture in Four GPU
    Hours" (CVPR; GDAS), its differentiable architecture sampler: the edge's
    output is ``sum_k h_k O_k(x)`` with ``h`` the hard Gumbel-Softmax sample
    of the architecture logits ``alpha`` (one-hot forward,
    ``softmax((alpha + G) / tau)`` backward), so only the sampled operation
    ``O_i`` is computed:

        ``y = w_i O_i(x)``, ``i = argmax(alpha + G)``, ``w = gumbel_softmax(alpha, tau, hard=True)``

    ``w_i`` is exactly 1 in the forward pass and carries the gradient of the
    soft sample ``s = softmax((alpha + G) / tau)``, so
    ``dL/dalpha = <dL/dy, O_i(x)> ds_i/dalpha``, and of the candidates' parameters
    only ``O_i``'s get a gradient. The other candidates are never called.

    In training the module samples once per forward (``per_example=False``:
    one candidate for the whole batch, ``i`` is :func:`gumbelkit.gumbel_max`
    of ``alpha`` with the same seed) or once per example along dim 0
    (``per_example=True``: each candidate runs only on the rows that drew it,
    gathered with ``index_select`` and scattered back with ``index_add``, so a
    step costs one candidate per example; with a scalar seed row ``r`` is
    keyed by ``r``, as in :func:`gumbelkit.gumbel_softmax`; an empty batch
    runs the most likely candidate on no rows, for the output's shape).
    Choosing which module to run reads the sample back to the host once per
    forward. In eval the most likely candidate ``argmax(alpha)`` runs (ties:
    the first), with no noise; :meth:`derive` returns it.

    Every candidate must map an input to outputs of one shape; two candidates
    seen to disagree on the same input shape are a ``ValueError`` naming both
    (for a shape-changing edge give :class:`Zero` its ``out_features``). The
    temperature is fixed, scheduled or learned exactly as in
    :class:`GumbelSoftmax` (the paper anneals it linearly from 10 to 0.1:
    ``gumbelkit.schedules.Linear(10.0, 0.1, steps)``), held by the child
    module ``sampler`` and advanced by :meth:`step`; the step counter and the
    logits travel in ``state_dict``.

    Args:
        candidates: a non-empty sequence of modules (named "0", "1", ...) or a
            mapping from names (non-empty str, no ".") to modules.
        tau: float > 0, a schedule, a schedule spec string or a
            :class:`LearnableTemperature` (see :class:`GumbelSoftmax`).
        per_example: sample a candidate per example (dim 0) instead of per batch.

    Example:
        >>> op = gumbelkit.nn.MixedOp({"relu": torch.nn.ReLU(), "zero": gumbelkit.nn.Zero()})
        >>> op(torch.randn(4, 3), seed=0).shape
        torch.Size([4, 3])
        >>> with torch.no_grad():
        ...     op.logits[1] = 2.0
        >>> op.eval()(torch.ones(2, 3)), op.names[op.derive_index()]
        (tensor([[0., 0., 0.],
                [0., 0., 0.]]), 'zero')
    """

    def __init__(self, candidates: Sequence[nn.Module] | Mapping[str, nn.Module],
                 tau: float | str | Schedule | LearnableTemperature = 1.0,
                 per_example: bool = False) -> None:
        super().__init__()
        self.candidates = _candidate_dict(candidates)
        if not isinstance(per_example, bool):
            raise TypeError(f"per_example must be a bool, got {type(per_example).__name__}")
        self.sampler = GumbelSoftmax(tau, hard=True)
        self.per_example = per_example
        self.logits = nn.Parameter(torch.zeros(len(self.candidates)))
        # candidate index -> (input shape, output shape) of its last call, to name two
        # candidates whose outputs cannot stand in for each other.
        self._shapes: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    @property
    def names(self) -> list[str]:
        """The candidates' names, in the order of ``logits``."""
        return list(self.candidates.keys())

    @property
    def tau(self) -> float | torch.Tensor:
        """The temperature now (see :attr:`GumbelSoftmax.tau`)."""
        return self.sampler.tau

    def step(self) -> float | torch.Tensor:
        """Advance the temperature's step counter by one; returns the new temperature."""
        return self.sampler.step()

    def derive_index(self) -> int:
        """Index of the most likely candidate, ``argmax(logits)`` (ties: the first)."""
        return int(self.logits.detach().argmax())

    def derive(self) -> nn.Module:
        """The most likely candidate module (the one eval runs), with its trained weights."""
        return self.candidates[self.names[self.derive_index()]]

    def _run(self, index: int, x: torch.Tensor, shape_key: tuple[int, ...],
             rows: int | None = None) -> torch.Tensor:
        out = self.candidates[self.names[index]](x)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"candidate {self.names[index]!r} must return a tensor, "
                            f"got {type(out).__name__}")
        if rows is not None:
            if out.dim() == 0 or out.shape[0] != rows:
                raise ValueError(f"with per_example=True every candidate must keep dim 0 (the "
                                 f"examples), but {self.names[index]!r} turned {rows} rows into "
                                 f"an output of shape {tuple(out.shape)}")
            out_key = (-1, *out.shape[1:])
        else:
            out_key = tuple(out.shape)
        for other, (seen_in, seen_out) in self._shapes.items():
            if other != index and seen_in == shape_key and seen_out != out_key:
                raise ValueError(
                    f"candidates {self.names[other]!r} and {self.names[index]!r} give outputs "
                    f"of different shapes {_shown(seen_out)} and {_shown(out_key)} for inputs "
                    f"of shape {_shown(shape_key)}; every candidate of a MixedOp must give "
                    f"one output shape (Zero takes out_features= for that)")
        self._shapes[index] = (shape_key, out_key)
        return out

    def forward(self, x: torch.Tensor, *, seed: int | torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """``w_i O_i(x)`` for the sampled ``i`` (training) or ``O_argmax(logits)(x)`` (eval)."""
        check_seed_source(seed, generator)
        if not self.training:
            return self._run(self.derive_index(), x, tuple(x.shape))
        if not self.per_example:
            weights = self.sampler(self.logits, seed=seed, generator=generator)
            index = int(weights.detach().argmax())
            out = self._run(index, x, tuple(x.shape))
            return out * weights[index].to(out.dtype)
        if x.dim() == 0:
            raise ValueError("per_example=True needs an input with a batch dimension (dim 0), "
                             "got a 0-dim tensor")
        n = x.shape[0]
        if n == 0:
            return self._run(self.derive_index(), x, (-1, *x.shape[1:]), rows=0)
        weights = self.sampler(self.logits.expand(n, -1), seed=seed, generator=generator)
        index = weights.detach().argmax(-1)
        output = None
        for k, rows in groups(index, len(self.candidates)):
            out = self._run(k, x.index_select(0, rows), (-1, *x.shape[1:]), rows=len(rows))
            weight = weights[rows, k].to(out.dtype).reshape(-1, *([1] * (out.dim() - 1)))
            if output is None:
                output = out.new_zeros((n, *out.shape[1:]))
            output = output.index_add(0, rows, out * weight)
        return output

    def extra_repr(self) -> str:
        return f"candidates={self.names}, per_example={self.per_example}"


def _shown(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("N" if d == -1 else str(d) for d in shape) + "]"


def mixed_ops(model: nn.Module) -> Iterator[tuple[str, MixedOp]]:
    """``(qualified name, module)`` for every :class:`MixedOp` in ``model``, in module order.

    Example:
        >>> net = torch.nn.Sequential(gumbelkit.nn.MixedOp([torch.nn.ReLU(), torch.nn.Tanh()]))
        >>> [name for name, _ in gumbelkit.nn.mixed_op.mixed_ops(net)]
        ['0']
    """
    for name, module in model.named_modules():
        if isinstance(module, MixedOp):
            yield name, module


def derive_architecture(model: nn.Module) -> dict[str, str]:
    """The name of each :class:`MixedOp`'s most likely candidate, by the MixedOp's qualified name.

    This is the discrete architecture a search found (DARTS, GDAS: the
    ``argmax`` of each edge's logits); rebuild a network from it to retrain
    from scratch.

    Example:
        >>> op = gumbelkit.nn.MixedOp({"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh()})
        >>> with torch.no_grad():
        ...     op.logits[1] = 1.0
        >>> gumbelkit.nn.mixed_op.derive_architecture(torch.nn.Sequential(op, op))
        {'0': 'tanh'}
    """
    return {name: op.names[op.derive_index()] for name, op in mixed_ops(model)}


def architecture_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The architecture logits of every :class:`MixedOp` in ``model`` (each parameter once).

    For the alternating optimisation of DARTS and GDAS: these go to the
    architecture optimizer (validation loss), every other parameter to the
    weight optimizer (training loss). A learned temperature is not included.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3),
        ...                           gumbelkit.nn.MixedOp([torch.nn.ReLU(), torch.nn.Tanh()]))
        >>> [p.shape for p in gumbelkit.nn.mixed_op.architecture_parameters(net)]
        [torch.Size([2])]
    """
    found: dict[int, nn.Parameter] = {}
    for _, op in mixed_ops(model):
        found.setdefault(id(op.logits), op.logits)
    return list(found.values())
