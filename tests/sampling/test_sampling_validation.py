"""Bad inputs: a ValueError naming the value, the allowed range and the row."""

import math

import pytest
import torch

from gumbelkit.sampling import SamplerOutput, sample, sample_without_replacement

LOGITS = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kw, message", [
    (dict(temperature=-0.5), r"temperature must be >= 0 and finite .* -0.5 in row 0"),
    (dict(temperature=torch.tensor([1.0, 1.0, math.nan, 1.0])), r"temperature .* nan in row 2"),
    (dict(temperature=torch.tensor([1.0, math.inf, 1.0, 1.0])), r"temperature .* inf in row 1"),
    (dict(temperature=1e-60), r"representable in float32"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\] .* 0.0 in row 0"),
    (dict(top_p=torch.tensor([0.5, 0.9, 1.5, 1.0])), r"top_p must be in \(0, 1\] .* 1.5 in row 2"),
    (dict(min_p=-0.1), r"min_p must be in \[0, 1\] .* -0.1 in row 0"),
    (dict(min_p=torch.tensor([0.0, 0.0, 0.0, 1.01])), r"min_p .* in row 3"),
    (dict(positions=torch.tensor([0, -1, 0, 0])),
     r"positions must be in \[0, 2147483648\), got -1 in row 1"),
    (dict(top_k=torch.tensor([1.0, 2.0, 3.0, 4.0])), r"top_k must have an integer dtype"),
    (dict(top_k=torch.tensor([1, 2])), r"top_k must be a scalar or a tensor of shape \[4\]"),
    (dict(temperature=torch.ones(4, 1)), r"temperature must be a scalar or a tensor of shape"),
    (dict(seed=torch.tensor([1, 2, 3])), r"a seed tensor must have shape \[4\]"),
    (dict(seed=torch.tensor([1.0, 2.0, 3.0, 4.0])), r"integer dtype"),
    (dict(seed=[1, None]), r"one entry \(int or None\) per row: 4, got 2"),
    (dict(on_invalid="ignore"), r"on_invalid must be 'raise' or 'flag'"),
])
def test_bad_controls_raise(path, kw, message):
    with pytest.raises(ValueError, match=message):
        sample(LOGITS, **kw)


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="top_k must be an int"):
        sample(LOGITS, top_k=2.5)
    with pytest.raises(TypeError, match="temperature must be a real number"):
        sample(LOGITS, temperature="hot")
    with pytest.raises(TypeError, match="return_logprobs must be a bool, got 'yes'"):
        sample(LOGITS, return_logprobs="yes")


@pytest.mark.parametrize("logits, message", [
    (torch.randn(10), r"shape \[batch, vocab\]"),
    (torch.randn(2, 3, 4), r"shape \[batch, vocab\]"),
    (torch.randn(2, 0), r"vocab >= 1"),
    (torch.ones(2, 3, dtype=torch.int64), r"floating dtype"),
])
def test_bad_logits_shape_or_dtype(logits, message):
    with pytest.raises(ValueError, match=message):
        sample(logits)


def test_n_out_of_range():
    with pytest.raises(ValueError, match=r"n must lie in \[1, 10\], got 11"):
        sample_without_replacement(LOGITS, 11)
    with pytest.raises(ValueError, match=r"n must lie in \[1, 10\], got 0"):
        sample_without_replacement(LOGITS, 0)


def _bad_batch():
    x = LOGITS.clone()
    x[1, 3] = math.nan
    x[2] = -math.inf
    x[3, 4] = math.inf
    return x


def test_invalid_rows_raise_naming_them(path):
    with pytest.raises(ValueError, match=r"rows \[1, 3\]: NaN or \+inf logits; rows \[2\]: no "
                                         r"allowed token"):
        sample(_bad_batch(), seed=0)


def test_invalid_rows_flagged(path):
    out = sample(_bad_batch(), seed=0, on_invalid="flag", return_logprobs=True)
    assert isinstance(out, SamplerOutput)
    assert out.valid.tolist() == [True, False, False, False]
    assert out.tokens.tolist()[1:] == [-1, -1, -1]
    assert out.tokens.dtype == torch.int64 and 0 <= out.tokens[0] < 10
    assert out.logprobs[1:].tolist() == [-math.inf] * 3 and math.isfinite(out.logprobs[0])


def test_overflowing_temperature_is_invalid(path):
    x = torch.zeros(3, 5)
    x[1, 0] = 1e38
    x[2] = -1e38   # every z = -inf: overflow too, not a masked row
    out = sample(x, temperature=1e-3, on_invalid="flag")
    assert out.valid.tolist() == [True, False, False]
    with pytest.raises(ValueError, match=r"rows \[1, 2\]: logits / temperature overflowing"):
        sample(x, temperature=1e-3)


def test_too_few_tokens_for_without_replacement(path):
    x = torch.arange(18.0).reshape(3, 6)
    x[0, 2:] = -math.inf
    with pytest.raises(ValueError, match=r"rows \[0\]: fewer allowed tokens"):
        sample_without_replacement(x, 3)
    out = sample_without_replacement(x, 3, top_k=torch.tensor([0, 2, 0]), on_invalid="flag")
    assert out.valid.tolist() == [False, False, True]
    assert out.tokens[:2].tolist() == [[-1] * 3] * 2
    x[1] = 0.0   # top-k keeps every token tied at the k-th largest value
    assert sample_without_replacement(x, 3, top_k=torch.tensor([0, 2, 0]),
                                      on_invalid="flag").valid.tolist() == [False, True, True]


def test_filters_off_values_and_masked_tokens(path):
    x = torch.randn(500, 6)
    x[:, 2] = -math.inf
    kw = dict(seed=torch.arange(500))
    plain = sample(x, **kw).tokens
    assert not (plain == 2).any()
    for off in (dict(top_k=0), dict(top_k=-3), dict(top_k=6), dict(top_p=1.0), dict(min_p=0.0),
                dict(top_k=None, top_p=None, min_p=None)):
        assert torch.equal(sample(x, **kw, **off).tokens, plain), off


def test_dtypes_and_no_grad(path):
    x = torch.randn(3, 20, requires_grad=True)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        out = sample(x.to(dtype), seed=1, return_logprobs=True)
        expected = torch.float64 if dtype == torch.float64 else torch.float32
        assert out.logprobs.dtype == expected and not out.logprobs.requires_grad
    assert sample(x, top_k=1, seed=0).tokens.tolist() == x.argmax(-1).tolist()


def test_empty_batch_and_strided_logits(path):
    out = sample(torch.randn(0, 7), return_logprobs=True)
    assert out.tokens.shape == (0,) and out.logprobs.shape == (0,) and out.valid.shape == (0,)
    x = torch.randn(30, 12)
    kw = dict(temperature=0.7, top_k=5, seed=torch.arange(12))
    assert torch.equal(sample(x.t(), **kw).tokens, sample(x.t().contiguous(), **kw).tokens)
    wide = torch.randn(12, 60)
    assert torch.equal(sample(wide[:, ::2], **kw).tokens,
                       sample(wide[:, ::2].contiguous(), **kw).tokens)
    assert torch.equal(sample(wide[:, 5:35], **kw).tokens,
                       sample(wide[:, 5:35].contiguous(), **kw).tokens)


@pytest.mark.parametrize("top_k", [None, 20])
def test_nan_or_inf_anywhere_in_a_row_is_found(path, top_k):
    """Every position: inside the first k (heap seed), the SIMD body and the tail."""
    where = [0, 5, 19, 20, 21, 50, 1000, 2998, 2999]
    x = torch.randn(len(where) + 1, 3000)
    for row, col in enumerate(where):
        x[row, col] = math.nan if row % 2 == 0 else math.inf
    out = sample(x, top_k=top_k, seed=0, on_invalid="flag")
    assert out.valid.tolist() == [False] * len(where) + [True]
