"""The sampler behind the op boundary: fullgraph compile, the non-blocking mode, tracing."""

import math

import pytest
import torch

from gumbelkit.sampling import sample, sample_without_replacement

ROWS, VOCAB = 6, 300


def _controls():
    return dict(temperature=torch.tensor([0.7, 1.0, 0.0, 1.3, 0.9, 2.0]),
                top_k=torch.tensor([0, 50, 5, 3, 0, 10]),
                top_p=torch.tensor([0.9, 1.0, 0.5, 0.8, 0.95, 1.0]),
                min_p=torch.tensor([0.0, 0.05, 0.0, 0.1, 0.0, 0.2]),
                seed=torch.arange(100, 100 + ROWS), positions=torch.arange(ROWS) * 3)


def _assert_same(a, b):
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.valid, b.valid)
    assert torch.equal(a.logprobs, b.logprobs)


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 3])
def test_fullgraph_compile_equals_eager(path, n):
    torch._dynamo.reset()
    logits = torch.randn(ROWS, VOCAB, generator=torch.Generator().manual_seed(n))
    logits[1, :7] = -math.inf
    logits[4] = math.nan  # an invalid row, flagged without a host read

    def draw(x, ctl):
        if n == 1:
            return sample(x, **ctl, return_logprobs=True, on_invalid="flag", validate=False)
        return sample_without_replacement(x, n, **ctl, return_logprobs=True,
                                          on_invalid="flag", validate=False)

    compiled = torch.compile(draw, fullgraph=True)
    got, eager = compiled(logits, _controls()), draw(logits, _controls())
    _assert_same(got, eager)
    assert got.valid.tolist() == [True, True, True, True, False, True]


def test_non_blocking_mode_flags_out_of_range_controls(path):
    logits = torch.randn(ROWS, VOCAB)
    ctl = _controls()
    ctl["top_p"] = torch.tensor([0.9, 1.5, 0.5, 0.8, 0.95, 1.0])
    ctl["temperature"] = torch.tensor([0.7, 1.0, -1.0, 1.3, math.nan, 2.0])
    ctl["positions"] = torch.tensor([0, 1, 2, -5, 4, 5])
    out = sample(logits, **ctl, return_logprobs=True, on_invalid="flag", validate=False)
    assert out.valid.tolist() == [True, False, False, False, False, True]
    assert out.tokens[~out.valid].tolist() == [-1] * 4
    assert torch.isneginf(out.logprobs[~out.valid]).all()
    with pytest.raises(ValueError, match="temperature must be >= 0 and finite.*got -1.0 in row 2"):
        sample(logits, **ctl, on_invalid="flag")
    # the valid rows are drawn exactly as in the blocking mode
    good = torch.tensor([0, 5])
    alone = sample(logits[good], **{k: v[good] for k, v in ctl.items()}, return_logprobs=True)
    assert torch.equal(out.tokens[good], alone.tokens)
    assert torch.equal(out.logprobs[good], alone.logprobs)


def test_non_blocking_mode_needs_flag():
    with pytest.raises(ValueError, match="validate=False .* on_invalid='flag'"):
        sample(torch.randn(2, 5), seed=0, validate=False)


def test_non_blocking_equals_blocking_on_valid_input(path):
    logits = torch.randn(ROWS, VOCAB)
    a = sample_without_replacement(logits, 3, **_controls(), return_logprobs=True)
    b = sample_without_replacement(logits, 3, **_controls(), return_logprobs=True,
                                   on_invalid="flag", validate=False)
    _assert_same(a, b)


def test_jit_trace_gives_the_eager_tokens(path):
    logits = torch.randn(ROWS, VOCAB)
    seeds = torch.arange(ROWS)

    def draw(x, s):
        return sample(x, temperature=0.8, top_k=20, seed=s, on_invalid="flag",
                      validate=False).tokens

    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(draw, (logits, seeds), check_trace=False)
    other = torch.randn(ROWS, VOCAB)
    assert torch.equal(traced(other, seeds + 7), draw(other, seeds + 7))
