"""Invariance: a seeded row's token depends only on its own logits, controls, seed and position.

Also: the fused kernel and the pure-PyTorch path give identical tokens, the
kernel writes every output element and does not depend on the thread count.
"""

import math

import pytest
import torch

from conftest import FUSED_BUILT
from gumbelkit.kernels import _lib, ops, sampler_reference
from gumbelkit.sampling import _controls, sample, sample_without_replacement

needs_fused = pytest.mark.skipif(not FUSED_BUILT, reason="fused kernels not built")


def _batch(rows=8, vocab=3000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.3, 1.0, 3.0, 10.0])[torch.arange(rows) % 4]
    logits = torch.randn(rows, vocab, generator=gen) * scale[:, None]
    logits[1, ::3] = -math.inf
    logits[2, 100:110] = logits[2].max()                 # ties at the top
    logits[3] = torch.round(logits[3])                   # many ties everywhere
    kw = dict(
        temperature=torch.tensor([0.8, 1.0, 0.5, 1.7, 0.0, 1.2, 0.9, 2.5])[:rows],
        top_k=torch.tensor([50, 0, 7, 200, 5, 0, 1000, 3])[:rows],
        top_p=torch.tensor([0.9, 1.0, 0.75, 0.95, 0.5, 0.6, 1.0, 0.99], dtype=torch.float64)[:rows],
        min_p=torch.tensor([0.0, 0.05, 0.0, 0.01, 0.3, 0.0, 0.2, 0.0])[:rows],
        seed=torch.tensor([11, -5, 2**62, 0, 7, 123456789, 3, 42])[:rows],
        positions=torch.tensor([0, 5, 17, 1000, 2, 9, 2**31 - 1, 4])[:rows],
    )
    return logits, kw


def _row(kw, i):
    return {k: v[i:i + 1] for k, v in kw.items()}


def test_seeded_row_is_the_same_alone_at_any_index_and_beside_any_filters(path):
    logits, kw = _batch()
    batch = sample(logits, **kw).tokens
    for i in range(len(logits)):
        assert sample(logits[i:i + 1], **_row(kw, i)).tokens.item() == batch[i].item()
    perm = torch.tensor([5, 2, 7, 0, 1, 6, 3, 4])
    permuted = sample(logits[perm], **{k: v[perm] for k, v in kw.items()}).tokens
    assert torch.equal(permuted, batch[perm])
    others = dict(kw, top_k=torch.where(torch.arange(8) == 0, kw["top_k"], 1),
                  top_p=torch.where(torch.arange(8) == 0, kw["top_p"], 0.1),
                  temperature=torch.where(torch.arange(8) == 0, kw["temperature"], 3.0))
    assert sample(logits, **others).tokens[0] == batch[0]


def test_same_seed_and_position_repeat_and_positions_change_the_noise(path):
    logits = torch.zeros(1, 1000).expand(64, -1)
    seeds = torch.full((64,), 9)
    a = sample(logits, seed=seeds, positions=torch.arange(64)).tokens
    assert torch.equal(a, sample(logits, seed=seeds, positions=torch.arange(64)).tokens)
    assert len(set(a.tolist())) > 50          # 64 uniform draws from 1000 tokens
    same_position = sample(logits, seed=seeds, positions=3).tokens
    assert len(set(same_position.tolist())) == 1


def test_unseeded_rows_follow_generator_and_global_rng(path):
    logits = torch.randn(16, 500)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(sample(logits, generator=g1).tokens, sample(logits, generator=g2).tokens)
    torch.manual_seed(8)
    a = sample(logits).tokens
    torch.manual_seed(8)
    assert torch.equal(a, sample(logits).tokens)
    mixed = [5, None, 6] + [None] * 13
    b = sample(logits, seed=mixed, generator=torch.Generator().manual_seed(1)).tokens
    c = sample(logits, seed=mixed, generator=torch.Generator().manual_seed(2)).tokens
    assert b[0] == sample(logits[:1], seed=torch.tensor([5])).tokens.item() == c[0]
    assert b[2] == c[2]


def test_flagged_rows_do_not_change_the_others(path):
    logits, kw = _batch()
    good = sample(logits, **kw).tokens
    bad = logits.clone()
    bad[3, 10] = math.nan
    bad[5] = -math.inf
    out = sample(bad, on_invalid="flag", return_logprobs=True, **kw)
    assert out.valid.tolist() == [True, True, True, False, True, False, True, True]
    assert out.tokens[3] == -1 and out.tokens[5] == -1
    assert out.logprobs[3] == -math.inf
    keep = out.valid
    assert torch.equal(out.tokens[keep], good[keep])
    assert not torch.isnan(out.logprobs).any()


@needs_fused
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 3])
def test_kernel_equals_pytorch_path(dtype, n):
    for seed in range(3):
        logits, kw = _batch(seed=seed)
        logits = logits.to(dtype)
        ctl, _ = _controls.controls(8, generator=None, **kw)
        fused = ops.sample_fused(logits, *ctl, n, True)
        ref = sampler_reference.sample_rows(logits, *ctl, n, True)
        assert torch.equal(fused[2], ref[2])
        assert torch.equal(fused[0], ref[0])
        torch.testing.assert_close(fused[1], ref[1], rtol=1e-5, atol=1e-5)


@needs_fused
@pytest.mark.parametrize("kw", [dict(), dict(top_p=0.95), dict(min_p=0.001),
                                dict(top_k=5000, top_p=0.99)])
def test_kernel_equals_pytorch_path_on_flat_wide_rows(kw):
    """Wide, flat rows: the race's chunk skipping and top-p's growing candidate set."""
    logits = torch.randn(4, 20_000, generator=torch.Generator().manual_seed(1)) * 0.5
    logits[2, 5000:] = -math.inf
    ctl, _ = _controls.controls(4, temperature=torch.tensor([1.0, 0.3, 2.0, 5.0]),
                             top_k=kw.get("top_k"), top_p=kw.get("top_p"),
                             min_p=kw.get("min_p"), seed=torch.arange(4), positions=None,
                             generator=None)
    fused = ops.sample_fused(logits, *ctl, 2, True)
    ref = sampler_reference.sample_rows(logits, *ctl, 2, True)
    assert torch.equal(fused[0], ref[0])
    torch.testing.assert_close(fused[1], ref[1], rtol=1e-5, atol=1e-5)


@needs_fused
def test_kernel_writes_every_output_and_ignores_thread_count(monkeypatch):
    logits, kw = _batch()
    logits[6, 0] = math.nan
    ctl, _ = _controls.controls(8, generator=None, **kw)

    def poisoned(shape, dtype):
        return torch.full(shape, math.nan if dtype.is_floating_point else 99, dtype=dtype)

    monkeypatch.setattr(ops, "_empty", poisoned)
    one = ops.sample_fused(logits, *ctl, 2, True, threads=1)
    two = ops.sample_fused(logits, *ctl, 2, True, threads=2)
    for a, b in zip(one, two):
        assert torch.equal(a, b)
    tokens, lp, status = one
    assert not (tokens == 99).any() and not torch.isnan(lp).any() and not (status == 99).any()
    assert status[6] == sampler_reference.BAD_LOGIT and tokens[6].tolist() == [-1, -1]


def test_without_replacement_distinct_and_invariant(path):
    logits, kw = _batch()
    kw = dict(kw, top_k=torch.clamp(kw["top_k"], min=20))
    kw["top_p"], kw["min_p"] = torch.ones(8, dtype=torch.float64), torch.zeros(8)
    out = sample_without_replacement(logits, 5, **kw).tokens
    for i in range(8):
        assert len(set(out[i].tolist())) == 5
        alone = sample_without_replacement(logits[i:i + 1], 5, **_row(kw, i)).tokens
        assert torch.equal(alone[0], out[i])


@needs_fused
@pytest.mark.parametrize("scale, temperature", [(1e4, 1e-3), (1e-30, 1e-20), (1e30, 1e3),
                                                (1.0, 1e-38), (50.0, 1e6)])
def test_kernel_equals_pytorch_path_at_extreme_scales(scale, temperature):
    """Huge and tiny logits and temperatures: the race's skipping margins and the top-k
    tie band (fl32(x / T) collapsing neighbours) stay exact."""
    logits = torch.randn(6, 3000, generator=torch.Generator().manual_seed(2)) * scale
    logits[1, :10] = logits[1].max()
    ctl, _ = _controls.controls(6, temperature=temperature,
                             top_k=torch.tensor([0, 0, 40, 3, 0, 700]),
                             top_p=torch.tensor([1.0, 0.9, 1.0, 0.5, 0.99, 0.8],
                                                dtype=torch.float64),
                             min_p=torch.tensor([0.0, 0.0, 0.1, 0.0, 0.0, 0.01]),
                             seed=torch.arange(6), positions=None, generator=None)
    for n in (1, 2):
        fused = ops.sample_fused(logits, *ctl, n, True)
        ref = sampler_reference.sample_rows(logits, *ctl, n, True)
        assert torch.equal(fused[2], ref[2])
        assert torch.equal(fused[0], ref[0])
        torch.testing.assert_close(fused[1], ref[1], rtol=1e-5, atol=1e-5)


@needs_fused
@pytest.mark.parametrize("isa", _lib.available_isas())
@pytest.mark.parametrize("kw", [dict(top_k=40, top_p=0.9), dict(top_p=0.8), dict(min_p=0.05),
                                dict()])
def test_every_instruction_set_draws_the_reference_tokens(isa, kw):
    """The sampler follows the kernels' instruction set (GUMBELKIT_SIMD, set_isa) and
    every set gives the reference's tokens and log-probabilities."""
    before = _lib.isa()
    logits = torch.randn(12, 3000, generator=torch.Generator().manual_seed(5)) * 2
    logits[3, ::3] = -math.inf
    ctl, _ = _controls.controls(12, temperature=0.8, seed=torch.arange(12), positions=None,
                                generator=None, **{"top_k": None, "top_p": None,
                                                   "min_p": None, **kw})
    try:
        _lib.set_isa(isa)
        fused = ops.sample_fused(logits, *ctl, 3, True)
    finally:
        _lib.set_isa(before)
    ref = sampler_reference.sample_rows(logits, *ctl, 3, True)
    assert torch.equal(fused[0], ref[0]) and torch.equal(fused[2], ref[2])
    torch.testing.assert_close(fused[1], ref[1], rtol=1e-5, atol=1e-6)
