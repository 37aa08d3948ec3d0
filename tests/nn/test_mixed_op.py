"""MixedOp (GDAS): only the sampled candidate runs, the sample follows softmax(logits),
straight-through gradients reach the logits and the sampled candidate only, eval is
deterministic, and bad input is a clear error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gumbelkit
from gumbelkit.nn import GumbelSoftmax, LearnableTemperature, MixedOp, Zero
from gumbelkit.nn.mixed_op import architecture_parameters, derive_architecture, mixed_ops
from gumbelkit.schedules import Linear
from stats import assert_chisquare

LOGITS = torch.tensor([0.5, -1.0, 1.2, 0.0])


class Counted(nn.Module):
    """A linear candidate that counts its calls and the rows it saw."""

    def __init__(self, d: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(d, d)
        self.calls = 0
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        return self.linear(x)


class Constant(nn.Module):
    """Returns ``value`` everywhere, so the output names the candidate that ran."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.value)


def counted_op(k: int = 4, **kwargs) -> MixedOp:
    torch.manual_seed(0)
    return MixedOp([Counted() for _ in range(k)], **kwargs)


def constant_op(**kwargs) -> MixedOp:
    op = MixedOp([Constant(float(k)) for k in range(len(LOGITS))], **kwargs)
    with torch.no_grad():
        op.logits.copy_(LOGITS)
    return op


def test_only_the_sampled_candidate_is_called():
    op = counted_op()
    x = torch.randn(5, 3)
    for seed in range(12):
        before = [c.calls for c in op.candidates.values()]
        y = op(x, seed=seed)
        index = int(gumbelkit.gumbel_max(op.logits.detach(), seed=seed))
        after = [c.calls for c in op.candidates.values()]
        assert [a - b for a, b in zip(after, before)] == [int(k == index) for k in range(4)]
        torch.testing.assert_close(y, op.candidates[str(index)].linear(x))


def test_per_example_runs_each_candidate_once_on_its_own_rows():
    op = counted_op(per_example=True)
    x = torch.randn(64, 3)
    y = op(x, seed=7)
    index = gumbelkit.gumbel_max(op.logits.detach().expand(64, -1), seed=7)
    counts = torch.bincount(index, minlength=4).tolist()
    assert [c.calls for c in op.candidates.values()] == [int(n > 0) for n in counts]
    assert [c.rows for c in op.candidates.values()] == counts
    expected = torch.stack([op.candidates[str(int(k))].linear(row) for k, row in zip(index, x)])
    torch.testing.assert_close(y, expected)


@pytest.mark.slow
def test_per_batch_sample_follows_the_softmax_of_the_logits():
    """Chi-square over 4,000 seeded forwards; false-failure rate 1e-4 (tests/stats.py).

    Each forward is one sample, so this one takes seconds; the per-example test
    below checks the same distribution in one call, and the per-batch index is
    checked against ``gumbel_max`` with the same seed above.
    """
    op = constant_op()
    x = torch.zeros(1)
    counts = torch.zeros(4)
    for seed in range(4_000):
        counts[int(op(x, seed=seed))] += 1
    assert_chisquare(counts.numpy(), torch.softmax(LOGITS.double(), -1).numpy())


def test_per_example_sample_follows_the_softmax_of_the_logits():
    """Chi-square over 20,000 rows of one call; false-failure rate 1e-4 (tests/stats.py)."""
    op = constant_op(per_example=True)
    y = op(torch.zeros(20_000, 1), seed=3)
    counts = torch.bincount(y.squeeze(1).long(), minlength=4)
    assert_chisquare(counts.numpy(), torch.softmax(LOGITS.double(), -1).numpy())


@pytest.mark.parametrize("per_example", [False, True])
def test_gradients_reach_the_logits_and_the_sampled_candidates_only(per_example):
    op = counted_op(per_example=per_example, tau=0.7)
    x = torch.randn(6, 3)
    probe = torch.randn(6, 3)
    (op(x, seed=11) * probe).sum().backward()
    noisy = op.logits.detach().expand(6, -1) if per_example else op.logits.detach()
    index = gumbelkit.gumbel_max(noisy, seed=11).reshape(-1)
    for k, candidate in enumerate(op.candidates.values()):
        grads = [p.grad for p in candidate.parameters()]
        if k in index.tolist():
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None for g in grads)
    assert op.logits.grad is not None and op.logits.grad.abs().sum() > 0


def test_logit_gradient_is_the_straight_through_gradient_of_the_soft_sample():
    """dL/dalpha = <dL/dy, O_i(x)> ds_i/dalpha with s the soft sample of the same noise."""
    op = counted_op(tau=0.5).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    probe = torch.randn(5, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad((op(x, seed=4) * probe).sum(), op.logits)
    logits = op.logits.detach().clone().requires_grad_()
    soft = gumbelkit.gumbel_softmax(logits, 0.5, seed=4)
    index = int(soft.argmax())
    with torch.no_grad():
        inner = (op.candidates[str(index)].linear(x) * probe).sum()
    (expected,) = torch.autograd.grad(soft[index] * inner, logits)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("per_example", [False, True])
def test_eval_runs_the_most_likely_candidate_deterministically(per_example):
    op = counted_op(per_example=per_example)
    with torch.no_grad():
        op.logits.copy_(torch.tensor([0.1, 0.3, 2.0, -1.0]))
    op.eval()
    x = torch.randn(8, 3)
    state = torch.get_rng_state()
    a, b = op(x), op(x)
    assert torch.equal(torch.get_rng_state(), state)  # eval draws no noise
    assert torch.equal(a, b) and torch.equal(a, op.candidates["2"].linear(x))
    assert [c.calls for c in op.candidates.values()] == [0, 0, 2, 0]
    assert op.derive() is op.candidates["2"] and op.derive_index() == 2


def test_derive_architecture_walks_every_cell():
    cells = nn.Sequential(
        MixedOp({"relu": nn.ReLU(), "tanh": nn.Tanh(), "zero": Zero()}),
        nn.Linear(3, 3),
        MixedOp({"relu": nn.ReLU(), "tanh": nn.Tanh(), "zero": Zero()}))
    with torch.no_grad():
        cells[0].logits[2] = 1.0
        cells[2].logits[1] = 1.0
    assert derive_architecture(cells) == {"0": "zero", "2": "tanh"}
    assert [name for name, _ in mixed_ops(cells)] == ["0", "2"]
    params = architecture_parameters(cells)
    assert [id(p) for p in params] == [id(cells[0].logits), id(cells[2].logits)]


def test_temperature_fixed_scheduled_or_learned_and_saved_in_the_state_dict():
    scheduled = MixedOp([nn.ReLU(), nn.Tanh()], tau=Linear(10.0, 0.1, steps=10))
    assert scheduled.tau == 10.0
    scheduled.step()
    assert scheduled.tau == pytest.approx(9.01)
    copy = MixedOp([nn.ReLU(), nn.Tanh()], tau=Linear(10.0, 0.1, steps=10))
    copy.load_state_dict(scheduled.state_dict())
    assert copy.tau == pytest.approx(9.01)
    assert MixedOp([nn.ReLU()], tau="exp:1.0:0.5:100").tau == 1.0
    learned = MixedOp([nn.Linear(3, 3), nn.Tanh()], tau=LearnableTemperature(1.0))
    learned(torch.randn(4, 3), seed=0).sum().backward()
    assert learned.sampler.temperature.theta.grad is not None
    assert isinstance(learned.sampler, GumbelSoftmax) and learned.sampler.hard


def test_zero_candidate_and_shapes():
    op = MixedOp({"linear": nn.Linear(4, 2), "zero": Zero(out_features=2)})
    with torch.no_grad():
        op.logits.copy_(torch.tensor([0.0, 50.0]))  # always zero
    y = op(torch.randn(3, 4), seed=0)
    assert torch.equal(y, torch.zeros(3, 2))
    y.sum().backward()
    assert torch.equal(op.logits.grad, torch.zeros(2))  # <dL/dy, 0> = 0: no architecture signal
    assert torch.equal(Zero()(torch.ones(2, 5)), torch.zeros(2, 5))


@pytest.mark.parametrize("per_example", [False, True])
def test_candidates_with_different_output_shapes_are_a_clear_error(per_example):
    op = MixedOp({"linear": nn.Linear(4, 2), "zero": Zero()}, per_example=per_example)
    x = torch.randn(32, 4)
    with pytest.raises(ValueError, match=r"candidates '(linear|zero)' and '(linear|zero)' give "
                                         r"outputs of different shapes"):
        for seed in range(40):
            op(x, seed=seed)


def test_per_example_candidate_must_keep_the_rows():
    class Mean(nn.Module):
        def forward(self, x):
            return x.mean(0, keepdim=True)

    op = MixedOp({"mean": Mean()}, per_example=True)
    with pytest.raises(ValueError, match="'mean' turned 3 rows into an output of shape"):
        op(torch.randn(3, 2), seed=0)


@pytest.mark.parametrize("args,error,match", [
    (([],), ValueError, "candidates must hold at least one module, got 0"),
    (({},), ValueError, "candidates must hold at least one module, got 0"),
    (([nn.ReLU()], 0.0), ValueError, r"tau must be > 0 and finite, got 0.0"),
    (([nn.ReLU()], -1.0), ValueError, r"tau must be > 0 and finite, got -1.0"),
    (([nn.ReLU()], float("inf")), ValueError, r"tau must be > 0 and finite, got inf"),
    (([nn.ReLU(), torch.relu],), TypeError, "candidate '1' must be an nn.Module"),
    ((nn.ReLU(),), TypeError, "candidates must be a sequence or a mapping of nn.Module"),
    (([nn.ReLU()], 1.0, 1), TypeError, "per_example must be a bool"),
    (({"a.b": nn.ReLU()},), ValueError, r"candidate names must be non-empty and hold no '\.', "
                                        r"got 'a.b'"),
    (({"": nn.ReLU()},), ValueError, r"candidate names must be non-empty and hold no '\.', "
                                     r"got ''"),
])
def test_bad_arguments_are_clear_errors(args, error, match):
    with pytest.raises(error, match=match):
        MixedOp(*args)


def test_bad_zero_and_seed_arguments():
    with pytest.raises(ValueError, match="out_features must be an int >= 1 or None, got 0"):
        Zero(0)
    op = MixedOp([nn.ReLU()], per_example=True)
    with pytest.raises(ValueError, match="per_example=True needs an input with a batch"):
        op(torch.tensor(1.0), seed=0)
    with pytest.raises(ValueError, match="seed= and generator= are both given"):
        op(torch.ones(2, 2), seed=0, generator=torch.Generator())


def test_seeds_reproduce_and_per_example_handles_an_empty_batch():
    op = counted_op(per_example=True)
    x = torch.randn(50, 3)
    assert torch.equal(op(x, seed=5), op(x, seed=5))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(op(x, generator=g1), op(x, generator=g2))
    assert op(torch.randn(0, 3), seed=0).shape == (0, 3)
    assert "candidates=['0', '1', '2', '3'], per_example=True" in repr(op)
