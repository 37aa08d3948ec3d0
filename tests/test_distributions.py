"""Registry-driven tests shared by every distribution in gumbelkit.distributions.

Adding a distribution means adding one ``Example`` to ``REGISTRY``: it then gets
shape and ``expand`` semantics, gradcheck of ``log_prob`` and ``rsample`` in
float64, finite ``log_prob`` on its own samples (with ``validate_args=True``)
over tau in {0.01, 0.1, 1, 5} and K up to 10,000, reproducibility under
``seed=``/``generator=``, per-row temperatures and bad-parameter errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch

import gumbelkit
from gumbelkit.distributions import (
    BinaryConcrete,
    Concrete,
    ExpConcrete,
    GumbelTopK,
    HardConcrete,
    LogitBinaryConcrete,
    StraightThrough,
)

TAUS = (0.01, 0.1, 1.0, 5.0)
TOPK = 2


@dataclass(frozen=True)
class Example:
    """One distribution family.

    ``build(temperature, logits, validate_args)`` makes the distribution;
    ``logits`` has shape ``batch + (K,)``; for elementwise families (event shape
    ``()``) the last axis is one more batch axis.
    """

    name: str
    build: Callable[..., torch.distributions.Distribution]
    event: Callable[[int], tuple[int, ...]]
    pathwise: bool = True          # rsample's gradient is the derivative of its value
    temperature: bool = True       # has a temperature parameter
    per_row_seed: bool = True      # rows of the batch are rows of the noise grid
    finite_samples: int = 100_000  # own samples per temperature in the finiteness test
    functional: Callable[..., torch.Tensor] | None = None
    bad: tuple[tuple[Callable[[], object], str], ...] = field(default=())


def categorical(k: int) -> tuple[int, ...]:
    return (k,)


def elementwise(k: int) -> tuple[int, ...]:
    return ()


def _topk_event(k: int) -> tuple[int, ...]:
    return (TOPK,)


L3 = torch.tensor([0.3, -1.0, 2.0])
NAN3 = torch.tensor([0.3, math.nan, 2.0])

CATEGORICAL_BAD = (
    (0.0, "temperature must be > 0"),
    (-1.0, "temperature must be > 0"),
    (math.inf, "temperature must be > 0"),
)


def _bad_for(cls, binary: bool = False):
    cases = [(lambda c=cls, t=t: c(t, logits=L3), msg) for t, msg in CATEGORICAL_BAD]
    cases += [
        (lambda c=cls: c(torch.tensor([1.0, -0.5, 1.0]), logits=L3), "temperature must be > 0"),
        (lambda c=cls: c(0.5, logits=NAN3), "(?i)nan"),
        (lambda c=cls: c(0.5, logits=L3, probs=L3.softmax(-1)), "exactly one of probs or logits"),
        (lambda c=cls: c(0.5), "exactly one of probs or logits"),
    ]
    if binary:
        cases += [(lambda c=cls: c(0.5, logits=torch.tensor([0.0, math.inf])), "finite"),
                  (lambda c=cls: c(0.5, probs=torch.tensor([0.5, 1.0])),
                   r"probs must lie in \(0, 1\)")]
    else:
        cases += [(lambda c=cls: c(torch.ones(3, 1), logits=torch.zeros(3, 4)),
                   "does not broadcast to the batch shape"),
                  (lambda c=cls: c(0.5, probs=torch.tensor([0.5, -0.1, 0.6])), "probs must be")]
    return tuple(cases)


def _hard_concrete_bad():
    return (
        (lambda: HardConcrete(0.0, logits=L3), "temperature must be > 0"),
        (lambda: HardConcrete(logits=NAN3), "finite everywhere, got nan"),
        (lambda: HardConcrete(logits=L3, gamma=0.0), "gamma must be a finite number < 0"),
        (lambda: HardConcrete(logits=L3, gamma=0.1), "gamma must be a finite number < 0"),
        (lambda: HardConcrete(logits=L3, zeta=1.0), "zeta must be a finite number > 1"),
        (lambda: HardConcrete(logits=L3, zeta=math.nan), "zeta must be a finite number > 1"),
        (lambda: HardConcrete(L3), "give exactly one of probs or logits"),
        (lambda: HardConcrete(probs=torch.tensor([0.5, 1.0, 0.2])), "probs must lie in"),
    )


def _topk_bad():
    return (
        (lambda: GumbelTopK(L3, k=4), r"k must lie in \[1, 3\], got 4"),
        (lambda: GumbelTopK(L3, k=0), r"k must lie in \[1, 3\], got 0"),
        (lambda: GumbelTopK(NAN3, k=1), "NaN"),
        (lambda: GumbelTopK(torch.tensor([0.0, -math.inf, 1.0]), k=3), "exceeds the 2 unmasked"),
    )


def _expanded(tau, logits):
    if isinstance(tau, torch.Tensor):
        return tau.expand(logits.shape[:-1]).unsqueeze(-1)
    return tau


REGISTRY = (
    Example("Concrete", lambda t, l, v=None: Concrete(t, logits=l, validate_args=v), categorical,
            functional=lambda t, l, seed: gumbelkit.gumbel_softmax(l, _expanded(t, l), seed=seed),
            bad=_bad_for(Concrete)),
    Example("ExpConcrete", lambda t, l, v=None: ExpConcrete(t, logits=l, validate_args=v),
            categorical,
            functional=lambda t, l, seed: gumbelkit.gumbel_softmax(
                l, _expanded(t, l), seed=seed).log(),
            bad=_bad_for(ExpConcrete)),
    Example("BinaryConcrete", lambda t, l, v=None: BinaryConcrete(t, logits=l, validate_args=v),
            elementwise, per_row_seed=False,
            functional=lambda t, l, seed: gumbelkit.binary_concrete(l, t, seed=seed),
            bad=_bad_for(BinaryConcrete, binary=True)),
    Example("LogitBinaryConcrete",
            lambda t, l, v=None: LogitBinaryConcrete(t, logits=l, validate_args=v),
            elementwise, per_row_seed=False,
            functional=lambda t, l, seed: torch.logit(gumbelkit.binary_concrete(l, t, seed=seed)),
            bad=_bad_for(LogitBinaryConcrete, binary=True)),
    Example("HardConcrete",
            lambda t, l, v=None: HardConcrete(t, logits=l, validate_args=v),
            elementwise, per_row_seed=False,
            functional=lambda t, l, seed: gumbelkit.hard_concrete(l, t, seed=seed),
            bad=_hard_concrete_bad()),
    Example("StraightThrough(Concrete)",
            lambda t, l, v=None: StraightThrough(Concrete(t, logits=l), validate_args=v),
            categorical, pathwise=False, finite_samples=20_000,
            functional=lambda t, l, seed: gumbelkit.gumbel_softmax(l, _expanded(t, l), hard=True,
                                                                   seed=seed)),
    Example("StraightThrough(BinaryConcrete)",
            lambda t, l, v=None: StraightThrough(BinaryConcrete(t, logits=l), validate_args=v),
            elementwise, pathwise=False, per_row_seed=False, finite_samples=20_000,
            functional=lambda t, l, seed: gumbelkit.binary_concrete(l, t, hard=True, seed=seed)),
    Example("GumbelTopK", lambda t, l, v=None: GumbelTopK(l, k=TOPK, validate_args=v),
            _topk_event, pathwise=False, temperature=False, finite_samples=20_000,
            functional=lambda t, l, seed: gumbelkit.gumbel_topk(l, TOPK, seed=seed),
            bad=_topk_bad()),
)
IDS = [e.name for e in REGISTRY]


def logits_for(shape, dtype=torch.float32, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def batch_of(example: Example, logits: torch.Tensor) -> tuple[int, ...]:
    return tuple(logits.shape[:-1]) if example.event(1) else tuple(logits.shape)


@pytest.mark.parametrize("example", REGISTRY, ids=IDS)
@pytest.mark.parametrize("sample_shape", [(), (5,), (2, 3)])
def test_shapes(example, sample_shape):
    logits = logits_for((2, 3, 4))
    d = example.build(0.7, logits)
    batch = batch_of(example, logits)
    event = example.event(4)
    assert d.batch_shape == batch and d.event_shape == event
    s = d.sample(sample_shape, seed=0)
    assert s.shape == sample_shape + batch + event
    assert d.log_prob(s).shape == sample_shape + batch
    if d.has_rsample:
        r = d.rsample(sample_shape, seed=0)
        assert r.shape == s.shape and torch.equal(r, s)


@pytest.mark.parametrize("example", REGISTRY, ids=IDS)
def test_expand(example):
    logits = logits_for((3, 4))
    d = example.build(0.7, logits)
    e = d.expand((5,) + d.batch_shape)
    assert type(e) is type(d) and e.batch_shape == (5,) + d.batch_shape
    s = e.sample(seed=1)
    assert s.shape == (5,) + d.batch_shape + d.event_shape
    assert e.log_prob(s).shape == (5,) + d.batch_shape
    # an expanded batch is keyed like a sample_shape: the same rows, the same noise
    assert torch.equal(s, d.sample((5,), seed=1))
    assert type(d).__name__.split("(")[0] in repr(e)


@pytest.mark.parametrize("example", REGISTRY, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(example, dtype):
    """Samples and log_prob keep the logits' dtype (noise and math in float32 or wider)."""
    d = example.build(0.1, logits_for((3, 4), dtype))
    s = d.sample((5,), seed=0)
    assert s.dtype == (dtype if d.has_rsample else torch.int64)
    log_p = d.log_prob(s)
    assert log_p.dtype == dtype and bool(log_p.isfinite().all())


@pytest.mark.parametrize("example", REGISTRY, ids=IDS)
def test_reproducible(example):
    d = example.build(0.5, logits_for((3, 4)))
    a = d.sample((4,), seed=7)
    assert torch.equal(a, d.sample((4,), seed=7))
    assert not torch.equal(a, d.sample((4,), seed=8))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(d.sample((4,), generator=g1), d.sample((4,), generator=g2))
    torch.manual_seed(11)
    b = d.sample((4,))
    torch.manual_seed(11)
    assert torch.equal(b, d.sample((4,)))


@pytest.mark.parametrize("example", REGISTRY, ids=IDS)
def test_matches_functional_op(example):
    """Sampling goes through the noise core: the same seed gives the functional op's draw."""
    logits = logits_for((3, 4))
    tau = torch.tensor([0.4, 1.0, 2.5]) if example.event(1) else torch.full((3, 4), 0.6)
    d = example.build(tau, logits)
    s = d.sample((2,), seed=5)
    expanded = logits.expand((2,) + logits.shape)
    expected = example.functional(tau, expanded, 5)
    if s.dtype.is_floating_point:
        torch.testing.assert_close(s, expected, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(s, expected)


@pytest.mark.parametrize("example", REGISTRY, ids=IDS)
def test_gradcheck_log_prob(example):
    logits = logits_for((2, 3), torch.float64, seed=1).requires_grad_()
    tau = torch.tensor([0.7, 1.9], dtype=torch.float64) if example.event(1) \
        else torch.full((2, 3), 0.8, dtype=torch.float64)
    tau.requires_grad_(example.temperature)
    reference = example.build(tau.detach(), logits.detach())
    value = reference.sample((2,), seed=2)
    if isinstance(reference, HardConcrete):
        value[0, 0, :2] = torch.tensor([0.0, 1.0], dtype=value.dtype)

    def log_prob(l, t):
        d = example.build(t, l)
        if isinstance(d, StraightThrough):
            return d.log_prob(d.rsample((2,), seed=2))
        return d.log_prob(value)

    assert torch.autograd.gradcheck(log_prob, (logits, tau))


@pytest.mark.parametrize("example", [e for e in REGISTRY if e.pathwise], ids=lambda e: e.name)
def test_gradcheck_rsample(example):
    logits = logits_for((2, 3), torch.float64, seed=3).requires_grad_()
    tau = (torch.tensor([0.7, 1.9], dtype=torch.float64) if example.event(1)
           else torch.full((2, 3), 0.8, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda l, t: example.build(t, l).rsample((2,), seed=4),
                                    (logits, tau))


@pytest.mark.slow
@pytest.mark.parametrize("example", REGISTRY, ids=IDS)
@pytest.mark.parametrize("many, n_categories", [(True, 2), (False, 10_000)])
def test_log_prob_finite_on_own_samples(example, many, n_categories):
    """One distribution per temperature row: tau in {0.01, 0.1, 1, 5} as a per-row tensor.

    ``example.finite_samples`` samples of every row (100,000; 20,000 for the
    wrappers whose log_prob is their base's and for the temperature-free
    GumbelTopK) at K = 2, and 5 samples of every row at K = 10,000; elementwise
    families draw the same number of gates per temperature as 1/4 as many
    samples of 4 gates, and 5 samples of 10,000 gates. All with
    ``validate_args=True``, so the support check must accept them.
    """
    n_samples = example.finite_samples if many else 5
    tau = torch.tensor(TAUS)
    width = n_categories
    if not example.event(1) and many:  # 4 gates per row: a quarter of the draws, same count
        width, n_samples = 4, n_samples // 4
    logits = logits_for((len(TAUS), width), scale=3.0)
    if not example.event(1):
        tau = tau.unsqueeze(-1).expand(logits.shape)
    d = example.build(tau, logits, True)
    s = d.sample((n_samples,), seed=12)
    log_p = d.log_prob(s)
    assert log_p.shape == (n_samples,) + d.batch_shape
    assert bool(log_p.isfinite().all()), f"{int((~log_p.isfinite()).sum())} non-finite"


@pytest.mark.parametrize("example", [e for e in REGISTRY if e.temperature], ids=lambda e: e.name)
def test_per_row_temperature(example):
    """A batch with per-row temperatures scores like one distribution per row."""
    taus = (0.3, 1.0, 2.0)
    logits = logits_for((3, 4), torch.float64, seed=5)
    tau = torch.tensor(taus, dtype=torch.float64)
    if not example.event(1):
        tau = tau.unsqueeze(-1).expand(3, 4)
    d = example.build(tau, logits)
    if isinstance(d, StraightThrough):
        value = d.rsample((6,), seed=9)
        soft = d.base_dist.rsample((6,), seed=9)
        log_p = d.log_prob(value)
        d = d.base_dist
        value = soft
        torch.testing.assert_close(log_p, d.log_prob(soft))
    else:
        value = d.sample((6,), seed=9)
        log_p = d.log_prob(value)
    assert log_p.shape == (6,) + d.batch_shape
    for i, t in enumerate(taus):
        row = example.build(t, logits[i])
        base = row.base_dist if isinstance(row, StraightThrough) else row
        torch.testing.assert_close(log_p[:, i], base.log_prob(value[:, i]))


@pytest.mark.parametrize("example", [e for e in REGISTRY if e.per_row_seed], ids=lambda e: e.name)
def test_per_row_seed_batch_invariance(example):
    """With one seed per row, a row's sample depends on its own seed only."""
    logits = logits_for((3, 5))
    tau = torch.tensor([0.3, 1.0, 2.0])
    seeds = torch.tensor([101, 202, 303])
    batch = example.build(tau, logits).sample(seed=seeds)
    for i in range(3):
        alone = example.build(float(tau[i]), logits[i]).sample(seed=seeds[i])
        assert torch.equal(batch[i], alone)


@pytest.mark.parametrize("example", REGISTRY, ids=IDS)
def test_bad_parameters(example):
    for make, message in example.bad:
        with pytest.raises(ValueError, match=message):
            make()


# --------------------------------------------------------------------------- the kept sample
# log_prob of a value must differentiate exactly as for a new instance that never sampled,
# whatever the value is: the kept unrounded sample may supply accuracy, never a gradient path.

def _draw(d, graph: bool, seed: int = 2):
    """A sample with (``rsample``) or without (``sample``) a graph to the parameters."""
    return d.rsample((3,), seed=seed) if graph and d.has_rsample else d.sample((3,), seed=seed)


VALUE_KINDS = {
    # name: (draws with a graph, makes a gradient leaf, value from the draw)
    "sample": (False, False, lambda y: y),
    "sample_requires_grad": (False, True, lambda y: y.requires_grad_()),
    "detached": (True, False, lambda y: y.detach()),
    "cloned": (True, False, lambda y: y.detach().clone()),
    "view_as": (True, False, lambda y: y.detach().view_as(y)),
    "indexed": (True, False, lambda y: y.detach()[...]),
    "requires_grad": (True, True, lambda y: y.detach().requires_grad_()),
    "rsample": (True, False, lambda y: y),
    "rsample_view_as": (True, False, lambda y: y.view_as(y)),
}


def _params(example):
    logits = logits_for((2, 3), torch.float64, seed=6).requires_grad_()
    tau = torch.tensor([0.7, 1.3], dtype=torch.float64) if example.event(1) \
        else torch.full((2, 3), 0.8, dtype=torch.float64)
    return logits, tau.requires_grad_(example.temperature)


def _grads(log_p, params, leaf):
    weights = torch.linspace(0.5, 1.5, log_p.numel(), dtype=log_p.dtype).reshape(log_p.shape)
    inputs = [p for p in params if p.requires_grad] + ([leaf] if leaf is not None else [])
    return torch.autograd.grad((log_p * weights).sum(), inputs, allow_unused=True,
                               retain_graph=True)


def _assert_same_grads(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert (g is None) == (e is None), (g, e)
        if g is not None:
            torch.testing.assert_close(g, e, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("kind", list(VALUE_KINDS))
@pytest.mark.parametrize("example", REGISTRY, ids=IDS)
def test_log_prob_gradient_equals_a_new_instance(example, kind):
    """d log_prob(v) / d(logits, temperature, v) is that of an instance that never sampled.

    StraightThrough scores the soft sample behind a hard one with the hard value
    standing in for it, so its reference is a new base distribution scoring the
    soft sample prepared the same way (the same draw, detached, viewed, ...).
    """
    graph, leaf_kind, prepare = VALUE_KINDS[kind]
    logits, tau = _params(example)
    d = example.build(tau, logits)
    y = _draw(d, graph)
    if leaf_kind and not y.dtype.is_floating_point:
        pytest.skip("integer samples cannot require grad")
    value = prepare(y)
    leaf = value if leaf_kind else None
    if isinstance(d, StraightThrough) and kind == "cloned":
        with pytest.raises(ValueError, match="most recent rsample"):
            d.log_prob(value)  # a copy of a hard sample has no soft sample behind it
        return
    log_p = d.log_prob(value)
    if isinstance(d, StraightThrough):
        soft = _draw(example.build(tau, logits).base_dist, graph)
        ref_value = prepare(soft)
        ref_leaf = ref_value if leaf_kind else None
        reference = example.build(tau, logits).base_dist.log_prob(ref_value)
    else:
        ref_leaf = leaf
        reference = example.build(tau, logits).log_prob(value)
    torch.testing.assert_close(log_p, reference, rtol=1e-12, atol=1e-12)
    assert log_p.requires_grad == reference.requires_grad
    _assert_same_grads(_grads(log_p, (logits, tau), leaf),
                       _grads(reference, (logits, tau), ref_leaf))


TORCH_EQUIVALENT = {
    "Concrete": lambda t, l: torch.distributions.RelaxedOneHotCategorical(t, logits=l),
    "BinaryConcrete": lambda t, l: torch.distributions.RelaxedBernoulli(t, logits=l),
    "ExpConcrete":
        lambda t, l: torch.distributions.relaxed_categorical.ExpRelaxedCategorical(t, logits=l),
    "LogitBinaryConcrete":
        lambda t, l: torch.distributions.relaxed_bernoulli.LogitRelaxedBernoulli(t, logits=l),
}


@pytest.mark.parametrize("kind", ["sample", "sample_requires_grad", "detached", "view_as",
                                  "requires_grad", "rsample"])
@pytest.mark.parametrize("example", [e for e in REGISTRY if e.name in TORCH_EQUIVALENT],
                         ids=lambda e: e.name)
def test_log_prob_gradient_equals_torch(example, kind):
    """At a moderate temperature torch's relaxations score the same values with the same
    gradients (torch's own temperature is one scalar, so it is one here too)."""
    graph, leaf_kind, prepare = VALUE_KINDS[kind]
    logits = logits_for((2, 3), torch.float64, seed=7).requires_grad_()
    tau = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    d = example.build(tau, logits)
    value = prepare(_draw(d, graph))
    leaf = value if leaf_kind else None
    log_p = d.log_prob(value)
    reference = TORCH_EQUIVALENT[example.name](tau, logits).log_prob(value)
    torch.testing.assert_close(log_p, reference, rtol=1e-9, atol=1e-9)
    _assert_same_grads(_grads(log_p, (logits, tau), leaf), _grads(reference, (logits, tau), leaf))


# --------------------------------------------------------------------------- Python numbers

@pytest.mark.parametrize("example", REGISTRY, ids=IDS)
def test_python_number_parameters(example):
    """Numbers are accepted where torch.distributions accepts them (``broadcast_all``: a
    tensor of the default dtype): an int temperature everywhere, number logits for the
    elementwise families; a categorical family needs a category axis, as torch's does."""
    logits = logits_for((2, 3))
    if example.temperature:
        a, b = example.build(2, logits), example.build(2.0, logits)
        assert torch.equal(a.sample((4,), seed=1), b.sample((4,), seed=1))
    if example.event(1):
        with pytest.raises(TypeError, match="must be a torch.Tensor"):
            example.build(0.5, 0.3)
        return
    for number in (0.3, -2):
        d = example.build(0.5, number, True)
        reference = example.build(0.5, torch.tensor(float(number)), True)
        s, r = d.sample((6,), seed=3), reference.sample((6,), seed=3)
        assert d.batch_shape == () and s.dtype == torch.get_default_dtype()
        assert torch.equal(s, r)
        torch.testing.assert_close(d.log_prob(s), reference.log_prob(r), rtol=0, atol=0)


@pytest.mark.parametrize("ours, theirs", [
    (BinaryConcrete, torch.distributions.RelaxedBernoulli),
    (LogitBinaryConcrete, torch.distributions.relaxed_bernoulli.LogitRelaxedBernoulli),
])
def test_binary_number_parameters_like_torch(ours, theirs):
    d, t = ours(0.5, 0.3, validate_args=True), theirs(torch.tensor(0.5), 0.3)
    assert d.batch_shape == t.batch_shape == ()
    torch.testing.assert_close(d.probs, t.probs)
    value = torch.tensor([0.2, 0.4, 0.9])
    torch.testing.assert_close(d.log_prob(value), t.log_prob(value))
    d, t = ours(0.5, logits=-1), theirs(torch.tensor(0.5), logits=-1)
    torch.testing.assert_close(d.log_prob(value), t.log_prob(value))
    with pytest.raises(ValueError, match=r"probs must lie in \(0, 1\), got 1\.29"):
        ours(0.5, 1.3)
    with pytest.raises(ValueError, match="logits must be finite everywhere, got nan"):
        ours(0.5, logits=math.nan)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ours(0, 0.3)
    outside = torch.tensor(1.5 if ours is BinaryConcrete else math.nan)
    with pytest.raises(ValueError, match="Expected value argument"):
        ours(0.5, 0.3, validate_args=True).log_prob(outside)


def test_hard_concrete_number_parameters():
    d = HardConcrete(1, logits=0.3, gamma=-1, zeta=2)
    reference = HardConcrete(1.0, logits=torch.tensor(0.3), gamma=-1.0, zeta=2.0)
    assert d.batch_shape == () and (d.gamma, d.zeta) == (-1.0, 2.0)
    z = d.sample((50,), seed=4)
    assert z.dtype == torch.get_default_dtype() and torch.equal(z, reference.sample((50,), seed=4))
    torch.testing.assert_close(d.log_prob(z), reference.log_prob(z), rtol=0, atol=0)
    with pytest.raises(ValueError, match="logits must be finite everywhere, got inf"):
        HardConcrete(logits=math.inf)


# --------------------------------------------------------------------------- overflow

OVERFLOW_CASES = {
    "logits 3e38, tau 0.5": ([3e38, 0.0, 1.0], torch.float32, 0.5),
    "logits 1e30, tau 1e-9": ([1e30, 0.0, 1.0], torch.float32, 1e-9),
    "tau 1e-38": ([0.5, 0.0, 1.0], torch.float32, 1e-38),
    "float64 logits 1e308, tau 0.1": ([1e308, 0.0, 1.0], torch.float64, 0.1),
    "tau 1e39": ([0.5, 0.0, 1.0], torch.float32, 1e39),
    "tau 3e38": ([0.5, 0.0, 1.0], torch.float32, 3e38),
}


def _finite_or_clear_error(op, tau: float, phrase: str = "overflow"):
    """Run ``op``: it returns a result without NaN, or raises a ValueError that says
    what overflowed, names the temperature and gives the allowed range."""
    try:
        out = op()
    except ValueError as error:
        message = str(error)
        assert phrase in message and f"{tau:.6g}" in message and "allowed" in message, message
        return None
    if isinstance(out, torch.Tensor):
        assert not bool(torch.isnan(out).any()), out
    return out


@pytest.mark.parametrize("per_row", [False, True], ids=["float", "tensor"])
@pytest.mark.parametrize("case", list(OVERFLOW_CASES))
@pytest.mark.parametrize("example", [e for e in REGISTRY if e.temperature], ids=lambda e: e.name)
def test_logits_over_temperature_overflow(example, case, per_row):
    """Where ``logits / temperature`` overflows the compute dtype, sampling returns the
    correct finite sample or raises "logits / temperature overflow" (never NaN), and
    log_prob of own samples is finite; log_prob of other values is never NaN."""
    values, dtype, tau = OVERFLOW_CASES[case]
    logits = torch.tensor(values, dtype=dtype)
    temperature = tau
    if per_row:
        shape = logits.shape[:-1] if example.event(1) else logits.shape
        temperature = torch.full(shape, tau, dtype=torch.float64)
    d = _finite_or_clear_error(lambda: example.build(temperature, logits, True), tau,
                               "logits / temperature overflow")
    if d is None:
        return
    other = example.build(1.0, torch.zeros_like(logits)).sample((4,), seed=1)
    for draw in (d.sample, d.rsample) if d.has_rsample else (d.sample,):
        y = _finite_or_clear_error(lambda draw=draw: draw((4,), seed=0), tau,
                                   "logits / temperature overflow")
        if y is not None:
            assert bool(y.isfinite().all()) and bool(d.support.check(y).all())
            assert bool(d.log_prob(y).isfinite().all())
    if not isinstance(d, StraightThrough):
        _finite_or_clear_error(lambda: d.log_prob(other), tau)


@pytest.mark.parametrize("case", list(OVERFLOW_CASES))
def test_relaxed_topk_overflow(case):
    values, dtype, tau = OVERFLOW_CASES[case]
    d = GumbelTopK(torch.tensor(values, dtype=dtype), k=2)
    khot = _finite_or_clear_error(lambda: d.relaxed_rsample(tau, (4,), seed=0), tau,
                                  "logits / temperature overflow")
    if khot is not None:
        assert bool(khot.isfinite().all())


@pytest.mark.parametrize("case", list(OVERFLOW_CASES))
@pytest.mark.parametrize("cls", [BinaryConcrete, LogitBinaryConcrete])
def test_icdf_overflow(cls, case):
    values, dtype, tau = OVERFLOW_CASES[case]
    q = torch.tensor([[0.2], [0.5], [0.9]], dtype=dtype)
    d = _finite_or_clear_error(lambda: cls(tau, logits=torch.tensor(values, dtype=dtype)), tau,
                               "logits / temperature overflow")
    if d is not None:
        out = _finite_or_clear_error(lambda: d.icdf(q), tau, "logits / temperature overflow")
        assert out is None or bool(out.isfinite().all())


@pytest.mark.parametrize("example", [e for e in REGISTRY if e.temperature and e.pathwise],
                         ids=lambda e: e.name)
def test_small_temperature_gradient_is_not_nan(example):
    """At tau = 1e-20 most relaxed entries saturate (gradient 0); the temperature's
    gradient must not turn that 0 into NaN through an underflowing tau * tau."""
    logits = logits_for((3, 4)).requires_grad_()
    tau = torch.tensor(1e-20, requires_grad=True)
    d = example.build(tau, logits)
    y = d.rsample((20,), seed=0)
    # log- and logit-samples scale like 1 / tau: their own tau-derivative (of order
    # 1 / tau**2) overflows, so test the relaxed sample they stand for
    if example.name == "LogitBinaryConcrete":
        y = torch.sigmoid(y)
    if example.name == "ExpConcrete":
        y = y.exp()
    grads = torch.autograd.grad((y * torch.arange(4.0)).sum(), (logits, tau))
    assert all(bool(g.isfinite().all()) for g in grads), grads
