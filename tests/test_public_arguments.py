"""Arguments every public function shares: ``seed=`` with ``generator=``, and ``dim``.

Giving both ``seed=`` and ``generator=`` is a ``ValueError`` naming both (the
generator would be ignored); a ``dim`` that is not an ``int`` (bools
included) is a ``TypeError`` naming the value and its type. Both lists of
functions are checked against the public API, so a new public function that
takes these arguments must be added here.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

import pytest
import torch

import gumbelkit
from gumbelkit import distributions as D
from gumbelkit import estimators as E
from gumbelkit import nn, sampling
from gumbelkit.sparse import sparse_to_dense

X = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
B = torch.randn(5, generator=torch.Generator().manual_seed(1))


def _objective(z: torch.Tensor) -> torch.Tensor:
    return (z * torch.arange(4.0)).sum((-1, -2))


def _binary_objective(z: torch.Tensor) -> torch.Tensor:
    return (z * torch.arange(2.0)).sum((-1, -2))


def _module(module: torch.nn.Module, training: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return module.train(training)


def _distribution_cases() -> dict[str, Callable[..., object]]:
    dists = {
        "Concrete": lambda: D.Concrete(0.5, logits=X),
        "RelaxedOneHotCategorical": lambda: D.RelaxedOneHotCategorical(0.5, logits=X),
        "ExpConcrete": lambda: D.ExpConcrete(0.5, logits=X),
        "BinaryConcrete": lambda: D.BinaryConcrete(0.5, logits=B),
        "LogitBinaryConcrete": lambda: D.LogitBinaryConcrete(0.5, logits=B),
        "HardConcrete": lambda: D.HardConcrete(logits=B),
        "StraightThrough": lambda: D.StraightThrough(D.Concrete(0.5, logits=X)),
        "GumbelTopK": lambda: D.GumbelTopK(X, k=2),
    }
    cases = {}
    for name, build in dists.items():
        for method in ("sample", "rsample"):
            if method == "rsample" and not build().has_rsample:
                continue
            cases[f"distributions.{name}.{method}"] = (
                lambda kw, b=build, m=method: getattr(b(), m)((2,), **kw))
    return cases


SEEDED: dict[str, Callable[[dict], object]] = {
    "gumbel_noise": lambda kw: gumbelkit.gumbel_noise((2, 3), **kw),
    "gumbel_max": lambda kw: gumbelkit.gumbel_max(X, **kw),
    "gumbel_topk": lambda kw: gumbelkit.gumbel_topk(X, 2, **kw),
    "gumbel_softmax": lambda kw: gumbelkit.gumbel_softmax(X, 0.5, **kw),
    "binary_concrete": lambda kw: gumbelkit.binary_concrete(B, 0.5, **kw),
    "hard_concrete": lambda kw: gumbelkit.hard_concrete(B, **kw),
    "sparse_gumbel_softmax": lambda kw: gumbelkit.sparse_gumbel_softmax(X, 2, **kw),
    "gumbel_sinkhorn": lambda kw: gumbelkit.gumbel_sinkhorn(X[:, :3], 0.5, hard=True, **kw),
    **{f"estimators.{name}": (lambda kw, f=fn: f(X, **kw))
       for name, fn in E.SAMPLE_ESTIMATORS.items()},
    **{f"estimate.{method}": (
        lambda kw, m=method: gumbelkit.estimate(
            _binary_objective if m in ("arm", "disarm") else _objective,
            X[:, :2] if m in ("arm", "disarm") else X, m, n_samples=2,
            **(dict(control=_objective) if m == "relax" else {}), **kw))
       for method in E.METHODS},
    "nn.GumbelSoftmax": lambda kw: _module(nn.GumbelSoftmax(0.5), True)(X, **kw),
    "nn.GumbelSoftmax.eval": lambda kw: _module(nn.GumbelSoftmax(0.5), False)(X, **kw),
    "nn.GumbelRouter": lambda kw: _module(nn.GumbelRouter(4, 3, k=2), True)(X, **kw),
    "nn.GumbelRouter.eval": lambda kw: _module(nn.GumbelRouter(4, 3, k=2), False)(X, **kw),
    "nn.MoE": lambda kw: _module(nn.MoE(4, 8, 3), True)(X, **kw),
    "nn.MoE.eval": lambda kw: _module(nn.MoE(4, 8, 3), False)(X, **kw),
    "nn.HardConcreteGate": lambda kw: _module(nn.HardConcreteGate(5), True)(**kw),
    "nn.HardConcreteGate.eval": lambda kw: _module(nn.HardConcreteGate(5), False)(**kw),
    "nn.L0Linear": lambda kw: _module(nn.L0Linear(4, 2), True)(X, **kw),
    "nn.L0Linear.eval": lambda kw: _module(nn.L0Linear(4, 2), False)(X, **kw),
    "nn.GumbelQuantizer": lambda kw: _module(nn.GumbelQuantizer(4, 3, 2, channel_dim=-1),
                                             True)(X, **kw),
    "nn.GumbelQuantizer.eval": lambda kw: _module(nn.GumbelQuantizer(4, 3, 2, channel_dim=-1),
                                                  False)(X, **kw),
    "nn.MixedOp": lambda kw: _module(nn.MixedOp([torch.nn.ReLU(), nn.Zero()]), True)(X, **kw),
    "nn.MixedOp.per_example": lambda kw: _module(
        nn.MixedOp([torch.nn.ReLU(), nn.Zero()], per_example=True), True)(X, **kw),
    "nn.MixedOp.eval": lambda kw: _module(nn.MixedOp([torch.nn.ReLU(), nn.Zero()]), False)(
        X, **kw),
    "sampling.sample": lambda kw: sampling.sample(X, **kw),
    "sampling.sample_without_replacement":
        lambda kw: sampling.sample_without_replacement(X, 2, **kw),
    "sampling.stochastic_beam_search": lambda kw: sampling.stochastic_beam_search(
        lambda tokens, parents: X[tokens[:, -1] % 3], torch.zeros(2, 1, dtype=torch.int64), 2,
        2, **kw),
    **_distribution_cases(),
}

DIMMED: dict[str, Callable[[object], object]] = {
    "gumbel_max": lambda dim: gumbelkit.gumbel_max(X, dim=dim, seed=0),
    "gumbel_topk": lambda dim: gumbelkit.gumbel_topk(X, 2, dim=dim, seed=0),
    "gumbel_softmax": lambda dim: gumbelkit.gumbel_softmax(X, 0.5, dim=dim, seed=0),
    "straight_through": lambda dim: gumbelkit.straight_through(X.softmax(-1), dim=dim),
    "sparse_gumbel_softmax": lambda dim: gumbelkit.sparse_gumbel_softmax(X, 2, dim=dim, seed=0),
    "sparse.sparse_to_dense": lambda dim: sparse_to_dense(
        torch.tensor([[0, 2]]), torch.tensor([[0.5, 0.5]]), 4, dim=dim),
    **{f"estimators.{name}": (lambda dim, f=fn: f(X, dim=dim, seed=0))
       for name, fn in E.SAMPLE_ESTIMATORS.items()},
    "nn.GumbelSoftmax": lambda dim: nn.GumbelSoftmax(0.5, dim=dim),
}


def _public_callables() -> dict[str, Callable]:
    """Every public function and method, by the name the lists above use."""
    found = {}
    modules = {"": gumbelkit, "distributions.": D, "estimators.": E, "nn.": nn,
               "sampling.": sampling, "sparse.": gumbelkit.sparse}
    for prefix, module in modules.items():
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj):
                for method in ("__init__", "forward", "sample", "rsample"):
                    fn = getattr(obj, method, None)
                    if inspect.isfunction(fn) and fn.__module__.startswith("gumbelkit"):
                        found[f"{prefix}{name}.{method}"] = fn
            elif inspect.isfunction(obj):
                found[f"{prefix}{name}"] = obj
    return found


def _covered(name: str, cases: dict) -> bool:
    short = name.removesuffix(".forward").removesuffix(".__init__")
    bare = short.split(".", 1)[-1]
    return any(c in (short, bare) or c.startswith((short + ".", bare + ".")) for c in cases)


def test_every_public_function_with_seed_and_generator_is_listed():
    missing = [name for name, fn in _public_callables().items()
               if {"seed", "generator"} <= set(inspect.signature(fn).parameters)
               and not _covered(name, SEEDED)]
    assert missing == []


def test_every_public_function_with_dim_is_listed():
    missing = [name for name, fn in _public_callables().items()
               if "dim" in inspect.signature(fn).parameters and not _covered(name, DIMMED)]
    assert missing == []


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_seed_and_generator_together_raise(name):
    call = SEEDED[name]
    call(dict(seed=3))
    call(dict(generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match=r"seed= and generator= are both given \(seed=3, "
                                         r"generator=<torch._C.Generator"):
        call(dict(seed=3, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("name", ["gumbel_noise", "gumbel_max", "gumbel_softmax",
                                  "sampling.sample"])
def test_seed_tensor_and_generator_together_raise(name):
    seeds = torch.arange(3) if name != "gumbel_noise" else torch.arange(2)
    with pytest.raises(ValueError, match=r"both given \(seed=a tensor of shape \((2|3),\)"):
        SEEDED[name](dict(seed=seeds, generator=torch.Generator()))


def test_sampler_seed_list_takes_a_generator_for_its_none_rows():
    """A seed list with None entries draws those rows' seed from the generator."""
    out = [sampling.sample(X, seed=[5, None, None], generator=torch.Generator().manual_seed(g))
           for g in (1, 1, 2)]
    assert torch.equal(out[0].tokens, out[1].tokens)
    own = sampling.sample(X, seed=[5, 6, 7], generator=torch.Generator()).tokens
    assert own[0] == out[0].tokens[0] == out[2].tokens[0]


@pytest.mark.parametrize("name", sorted(DIMMED))
@pytest.mark.parametrize("dim, shown", [(1.0, "1.0 of type float"), ("1", "'1' of type str"),
                                        (torch.tensor(1), "tensor(1) of type Tensor"),
                                        (True, "True of type bool"),
                                        (None, "None of type NoneType")])
def test_non_integer_dim_is_a_type_error(name, dim, shown):
    DIMMED[name](1)
    DIMMED[name](-1)
    with pytest.raises(TypeError, match=re.escape(f"dim must be an int, got {shown}")):
        DIMMED[name](dim)
