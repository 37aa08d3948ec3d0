"""The noise core: Philox against published vectors and a NumPy reference,
the word -> noise maps against float64 math, and the noise contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gumbelkit
from gumbelkit import _rng
from gumbelkit.kernels import _lib
from numpy_philox import KNOWN_ANSWERS, philox4x32_10, uniform, words
from stats import assert_ks

EXTREME_WORDS = torch.tensor([0, 1, 2, 3, 2**31 - 2, 2**31 - 1, 2**31, 2**31 + 1,
                              2**32 - 4, 2**32 - 3, 2**32 - 2, 2**32 - 1])


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_philox_known_answers(counter, key, expected):
    as_tensors = tuple(torch.tensor(c) for c in counter)
    out = _rng.philox4x32(as_tensors, (torch.tensor(key[0]), torch.tensor(key[1])))
    assert tuple(int(o) for o in out) == expected
    assert tuple(int(o) for o in philox4x32_10(counter, key)) == expected


def test_torch_philox_matches_numpy_reference_on_random_counters():
    rng = np.random.default_rng(1)
    counter = rng.integers(0, 2**32, size=(4, 5000), dtype=np.uint64)
    key = rng.integers(0, 2**32, size=(2, 5000), dtype=np.uint64)
    ours = _rng.philox4x32(tuple(torch.from_numpy(c.astype(np.int64)) for c in counter),
                           tuple(torch.from_numpy(k.astype(np.int64)) for k in key))
    ref = philox4x32_10(counter, key)
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a.numpy().astype(np.uint64), b)


def test_word_layout_matches_reference():
    seed = 0xDEADBEEF12345678
    resolved = _rng.resolve_seed(seed)
    seeds, keys = _rng.row_keys_and_seeds(resolved, (7,), torch.device("cpu"))
    ours = _rng.random_words(seeds, keys, 13, stream=5).numpy().astype(np.uint64)
    np.testing.assert_array_equal(ours, words(seed, np.arange(7), 13, stream=5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_words_give_finite_noise_in_range(dtype):
    e = _rng.exponential_from_words(EXTREME_WORDS, dtype)
    g = _rng.gumbel_from_words(EXTREME_WORDS, dtype)
    lo = _rng.logistic_from_words(EXTREME_WORDS, dtype)
    for x in (e, g, lo):
        assert x.dtype == dtype and torch.isfinite(x).all()
    assert (e > 0).all()
    assert g.max() >= 22.0  # the largest reachable Gumbel value (noise contract)
    assert g.min() > -3.2
    assert lo.max() >= 22.0 and lo.min() <= -22.0
    assert torch.equal(lo, -lo.flip(0))  # antisymmetric: word w and 2**32 - 1 - w


@pytest.mark.parametrize("kind", ["exponential", "gumbel", "logistic"])
def test_noise_maps_within_two_ulp_of_float64(kind):
    w = torch.cat([EXTREME_WORDS, torch.randint(0, 2**32, (200_000,),
                                                generator=torch.Generator().manual_seed(3))])
    u = uniform(w.numpy().astype(np.uint64))
    one_minus_u = (np.float64(2**32 - 1) - w.numpy() + 0.5) / 2.0**32
    minus_log_u = np.where(u < 0.5, -np.log(u), -np.log1p(-one_minus_u))
    ref = {"exponential": minus_log_u, "gumbel": -np.log(minus_log_u),
           "logistic": np.log(u) - np.log(one_minus_u)}[kind]
    ours = _rng._TRANSFORMS[kind](w, torch.float32).double().numpy()
    scale = np.maximum(np.abs(ref), 1.0) if kind != "exponential" else np.abs(ref)
    err = np.abs(ours - ref) / (scale * 2.0**-23)
    assert err.max() <= 2.0, f"max error {err.max():.2f} float32 ulps"


def test_det_log_accuracy():
    x32 = torch.exp(torch.empty(100_000).uniform_(-80, 80, generator=torch.Generator()
                                                  .manual_seed(0)))
    err32 = (_rng.det_log(x32).double() - x32.double().log()).abs()
    ulp32 = torch.finfo(torch.float32).eps * x32.double().log().abs().clamp(min=2**-10)
    assert (err32 / ulp32).max() <= 1.0
    x64 = x32.double() * (1 + 1e-9)
    err64 = (_rng.det_log(x64) - x64.log()).abs() / (2**-52 * x64.log().abs().clamp(min=2**-10))
    assert err64.max() <= 1.0


@pytest.mark.parametrize("kind,cdf", [
    ("gumbel", lambda x: np.exp(-np.exp(-x))),
    ("exponential", lambda x: 1 - np.exp(-x)),
    ("logistic", lambda x: 1 / (1 + np.exp(-x))),
])
def test_noise_distribution_ks(kind, cdf):
    x = _rng.noise(kind, (20,), 5000, _rng.resolve_seed(11))
    assert_ks(x.numpy(), cdf)


def test_gumbel_noise_reproducible_and_seed_sources():
    a = gumbelkit.gumbel_noise((3, 17), seed=42)
    assert torch.equal(a, gumbelkit.gumbel_noise((3, 17), seed=42))
    assert not torch.equal(a, gumbelkit.gumbel_noise((3, 17), seed=43))
    assert not torch.equal(a[0], a[1])  # rows are keyed by their index
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(gumbelkit.gumbel_noise((4, 4), generator=g1),
                       gumbelkit.gumbel_noise((4, 4), generator=g2))
    torch.manual_seed(9)
    b = gumbelkit.gumbel_noise((4, 4))
    torch.manual_seed(9)
    assert torch.equal(b, gumbelkit.gumbel_noise((4, 4)))
    assert gumbelkit.gumbel_noise((2, 3), seed=1, dtype=torch.float64).dtype == torch.float64
    assert gumbelkit.gumbel_noise((2, 3), seed=1, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_noise_prefix_and_columns_are_stable():
    """Column c of row r does not depend on how many columns or rows are drawn."""
    wide = gumbelkit.gumbel_noise((5, 40), seed=8)
    assert torch.equal(gumbelkit.gumbel_noise((3, 7), seed=8), wide[:3, :7])


def test_per_row_seed_is_batch_invariant():
    seeds = torch.tensor([11, 22, 33, 44])
    batch = gumbelkit.gumbel_noise((4, 9), seed=seeds)
    for r in range(4):
        alone = gumbelkit.gumbel_noise((1, 9), seed=seeds[r:r + 1])
        assert torch.equal(alone[0], batch[r])
    shuffled = gumbelkit.gumbel_noise((4, 9), seed=seeds.flip(0))
    assert torch.equal(shuffled, batch.flip(0))


def test_negative_and_large_seeds_are_64_bit_words():
    assert torch.equal(gumbelkit.gumbel_noise((2, 3), seed=-1),
                       gumbelkit.gumbel_noise((2, 3), seed=2**64 - 1))
    assert torch.equal(gumbelkit.gumbel_noise((2, 3), seed=torch.tensor([-1, -1])),
                       gumbelkit.gumbel_noise((2, 3), seed=torch.tensor([2**63 - 1, -1]))[[1, 1]])


def test_noise_independent_of_thread_count():
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gumbelkit.gumbel_noise((64, 333), seed=3)
        torch.set_num_threads(2)
        two = gumbelkit.gumbel_noise((64, 333), seed=3)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one, two)


@pytest.mark.parametrize("bad,error", [
    (2**64, ValueError), (-(2**63) - 1, ValueError), (1.5, TypeError), (True, TypeError),
    (torch.tensor([1.0]), ValueError),
])
def test_bad_seeds_raise(bad, error):
    with pytest.raises(error, match="seed"):
        gumbelkit.gumbel_noise((1, 2), seed=bad)


def test_bad_shapes_and_per_row_seed_shape_raise():
    with pytest.raises(ValueError, match="at least one axis"):
        gumbelkit.gumbel_noise((), seed=0)
    with pytest.raises(ValueError, match="does not broadcast"):
        gumbelkit.gumbel_noise((3, 4), seed=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="floating"):
        gumbelkit.gumbel_noise((3, 4), seed=0, dtype=torch.int64)


@pytest.mark.skipif(_lib.library() is None, reason="fused kernels not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["exponential", "gumbel", "logistic"])
def test_c_noise_is_bit_identical_to_pytorch(dtype, kind):
    lib = _lib.library()
    fill = lib.gk_noise_fill_f32 if dtype == torch.float32 else lib.gk_noise_fill_f64
    seed = _rng.resolve_seed(int(torch.randint(0, 2**62, ())))
    rows, cols = 23, 1031
    row_keys = torch.randint(0, 2**62, (rows,))
    seeds, keys = _rng.row_keys_and_seeds(seed, (rows,), torch.device("cpu"), row_keys)
    out = torch.full((rows, cols), math.nan, dtype=dtype)
    fill(out.data_ptr(), seeds.data_ptr(), keys.data_ptr(), rows, cols, 9, _lib.KINDS[kind])
    ref = _rng.noise(kind, (rows,), cols, seed, dtype, row_keys=row_keys, stream=9)
    assert torch.equal(out, ref)
