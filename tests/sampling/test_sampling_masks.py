"""Masks written as ``finfo.min``: a token whose ``logits / T`` is -inf is masked on both paths.

Constrained decoding often masks with ``torch.finfo(dtype).min`` instead of
-inf. With ``T < 1`` that logit divided by ``T`` rounds to -inf in float32,
and from then on it is a masked token exactly like a -inf logit: never
returned by a valid row, and it never counts towards ``n``.
"""

import math

import pytest
import torch

from conftest import FUSED_BUILT
from gumbelkit.kernels import ops
from gumbelkit.sampling import sample, sample_without_replacement

needs_fused = pytest.mark.skipif(not FUSED_BUILT, reason="fused kernels not built")

M = torch.finfo(torch.float32).min
FILTERS = [dict(), dict(top_k=4), dict(top_k=30), dict(top_p=0.9), dict(top_p=0.999999),
           dict(min_p=1e-6), dict(top_k=4, top_p=0.95), dict(top_k=6, top_p=0.9, min_p=0.01)]


def _masked_batch(vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows with 0..vocab finite tokens, the rest finfo.min; per-row temperatures around 1."""
    gen = torch.Generator().manual_seed(seed)
    rows = 12
    x = torch.randn(rows, vocab, generator=gen) * 2
    finite = torch.tensor([1, 2, 3, 5, 1, 2, 4, vocab // 2, vocab, 3, 1, 6])
    for r in range(rows):
        masked = torch.randperm(vocab, generator=gen)[finite[r]:]
        x[r, masked] = M
    x[11] = M                                              # every token finfo.min
    temperature = torch.tensor([0.5, 0.25, 0.9, 0.999, 1.0, 2.0, 0.5, 0.7, 0.5, 1.5, 0.3, 0.5])
    return x, temperature


def _both_paths(monkeypatch, fn, *args, **kwargs):
    """``fn`` on the fused path, then on the PyTorch path: (output or ValueError text) each."""
    results = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(ops, "sampler_kernel_available", lambda x: False)
        try:
            results.append(fn(*args, **kwargs))
        except ValueError as error:
            results.append(str(error))
    monkeypatch.undo()
    return results


def _check_no_masked_token(x, temperature, out):
    """No valid row returns a token whose float32 logits / T is -inf; masked rows give -1."""
    tokens = out.tokens.reshape(x.shape[0], -1)
    for r in range(x.shape[0]):
        if not out.valid[r]:
            assert (tokens[r] == -1).all()
            continue
        z = x[r, tokens[r]] / temperature[r]
        assert (z > -math.inf).all(), (r, tokens[r].tolist(), z.tolist())
        if out.logprobs is not None:
            assert torch.isfinite(out.logprobs.reshape(x.shape[0], -1)[r]).all()


def test_issue_example_is_too_few_tokens(path):
    x = torch.tensor([[1.0, 0.5, M, M, M, M]])
    with pytest.raises(ValueError, match=r"rows \[0\]: fewer allowed tokens than requested"):
        sample_without_replacement(x, 3, temperature=0.5, top_k=4, seed=0)
    out = sample_without_replacement(x, 3, temperature=0.5, top_k=4, seed=0, on_invalid="flag",
                                     return_logprobs=True)
    assert out.valid.tolist() == [False] and out.tokens.tolist() == [[-1, -1, -1]]
    assert out.logprobs.tolist() == [[-math.inf] * 3]
    two = sample_without_replacement(x, 2, temperature=0.5, top_k=4, seed=0, return_logprobs=True)
    assert sorted(two.tokens[0].tolist()) == [0, 1] and bool(two.valid.all())
    # T = 1: finfo.min / T is finite, so those tokens are (very unlikely) allowed ones.
    assert bool(sample_without_replacement(x, 3, top_k=4, seed=0).valid.all())


@pytest.mark.parametrize("kw", FILTERS, ids=[str(k) for k in FILTERS])
def test_finfo_min_scaled_to_minus_inf_is_masked(path, kw):
    x, temperature = _masked_batch(40, 0)
    for n in (1, 2, 3, 6):
        out = sample_without_replacement(x, n, temperature=temperature, seed=torch.arange(12),
                                         on_invalid="flag", return_logprobs=True, **kw)
        _check_no_masked_token(x, temperature, out)
    out = sample(x, temperature=temperature, seed=torch.arange(12), on_invalid="flag",
                 return_logprobs=True, **kw)
    _check_no_masked_token(x, temperature, out)
    # every token finfo.min at T < 1: each z is -inf, which overflow reports, as for -1e38 / 1e-3
    assert not bool(out.valid[11])


@needs_fused
@pytest.mark.parametrize("vocab", [40, 700])
@pytest.mark.parametrize("kw", FILTERS, ids=[str(k) for k in FILTERS])
def test_paths_agree_on_finfo_min_masks(monkeypatch, vocab, kw):
    x, temperature = _masked_batch(vocab, vocab)
    seeds = torch.arange(12) * 7919
    for n in (1, 2, 3, 6):
        for on_invalid in ("raise", "flag"):
            for t in (temperature, 0.5):
                fused, ref = _both_paths(monkeypatch, sample_without_replacement, x, n,
                                         temperature=t, seed=seeds, on_invalid=on_invalid,
                                         return_logprobs=True, **kw)
                if isinstance(ref, str):
                    assert fused == ref
                    continue
                assert not isinstance(fused, str), fused
                assert torch.equal(fused.valid, ref.valid)
                assert torch.equal(fused.tokens, ref.tokens)
                torch.testing.assert_close(fused.logprobs, ref.logprobs, rtol=1e-5, atol=1e-5)
                t_rows = t if isinstance(t, torch.Tensor) else torch.full((12,), t)
                _check_no_masked_token(x, t_rows, fused)


@needs_fused
@pytest.mark.parametrize("kw", FILTERS, ids=[str(k) for k in FILTERS])
def test_sample_paths_agree_on_finfo_min_masks(monkeypatch, kw):
    x, temperature = _masked_batch(300, 5)
    for on_invalid in ("raise", "flag"):
        fused, ref = _both_paths(monkeypatch, sample, x[:11], temperature=temperature[:11],
                                 seed=torch.arange(11), on_invalid=on_invalid,
                                 return_logprobs=True, **kw)
        assert torch.equal(fused.valid, ref.valid) and bool(fused.valid.all())
        assert torch.equal(fused.tokens, ref.tokens)
        torch.testing.assert_close(fused.logprobs, ref.logprobs, rtol=1e-5, atol=1e-5)
        _check_no_masked_token(x[:11], temperature[:11], fused)
    fused, ref = _both_paths(monkeypatch, sample, x, temperature=temperature, seed=0, **kw)
    assert fused == ref and "rows [11]: logits / temperature overflowing" in fused
