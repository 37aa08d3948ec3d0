"""Stochastic beam search against a model whose sequence space is enumerated.

The model: vocabulary 4, 3 new tokens, next-token logits a fixed random
function of (prefix token, every generated token so far), so every node of the
64-leaf tree has its own distribution. Statistical tests use fixed seeds and
reject at about 1e-4 (tests/stats.py).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from gumbelkit.sampling import beam_estimate, stochastic_beam_search
from gumbelkit.sampling.beam_search import _gumbels_with_maximum
from stats import ALPHA, Z, assert_chisquare, assert_close_z, assert_ks

V, L, EOS = 4, 3, 3
NODES = sum(V**t for t in range(L))  # internal nodes of the tree: 1 + 4 + 16
TABLE = torch.randn(2, NODES, V, generator=torch.Generator().manual_seed(7),
                    dtype=torch.float64) * 1.5


def node_ids(tokens: torch.Tensor) -> torch.Tensor:
    """Row of TABLE for each prefix: its generated tokens read as a tree path."""
    ids = torch.zeros(tokens.shape[0], dtype=torch.int64)
    for t in range(1, tokens.shape[1]):
        ids = ids * V + tokens[:, t] + 1
    return ids


def tree_model(tokens: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
    return TABLE[tokens[:, 0], node_ids(tokens)]


def step_probs(prefix_token: int, generated: tuple[int, ...], reference, **filters) -> np.ndarray:
    ids = node_ids(torch.tensor([[prefix_token, *generated]]))
    return reference(TABLE[prefix_token, ids[0]].numpy(), **filters)


def enumerate_sequences(prefix_token: int, reference, eos: int | None = None,
                        **filters) -> dict[tuple[int, ...], float]:
    """Every sequence of at most L tokens (ending at eos) with its probability."""
    out = {}

    def walk(generated: tuple[int, ...], prob: float) -> None:
        if len(generated) == L or (generated and generated[-1] == eos):
            if prob > 0:
                out[generated] = prob
            return
        probs = step_probs(prefix_token, generated, reference, **filters)
        for token in range(V):
            if probs[token] > 0:
                walk(generated + (token,), prob * probs[token])

    walk((), 1.0)
    return out


def generated(out, row: int, j: int, prefix_len: int = 1) -> tuple[int, ...]:
    n = int(out.lengths[row, j])
    return tuple(out.sequences[row, j, prefix_len:prefix_len + n].tolist())


def all_generated(out, prefix_len: int = 1) -> list[list[tuple[int, ...]]]:
    """``generated`` for every row and beam, in one pass over the host copies."""
    seqs, lengths = out.sequences[..., prefix_len:].tolist(), out.lengths.tolist()
    return [[tuple(s[:n]) for s, n in zip(row, ns)] for row, ns in zip(seqs, lengths)]


def prefixes(rows: int, token: int = 0) -> torch.Tensor:
    return torch.full((rows, 1), token, dtype=torch.int64)


# --------------------------------------------------------------------------- the sample


@pytest.mark.slow
@pytest.mark.parametrize("config", [dict(), dict(eos_token_id=EOS, temperature=1.3, top_p=0.95)],
                         ids=["plain", "eos-temperature-top-p"])
def test_first_sequence_follows_the_model_distribution(config, reference):
    """Chi-square of the first sequence over the 64 (resp. 35) sequences, 20000 seeded
    rows; false-failure rate 1e-4."""
    filters = {key: config[key] for key in ("temperature", "top_p") if key in config}
    exact = enumerate_sequences(0, reference, eos=config.get("eos_token_id"), **filters)
    n = 20000
    out = stochastic_beam_search(tree_model, prefixes(n), k=4, max_len=L,
                                 seed=torch.arange(n) + 1000, **config)
    index = {seq: i for i, seq in enumerate(exact)}
    counts = np.zeros(len(exact))
    for row in all_generated(out):
        counts[index[row[0]]] += 1
    assert_chisquare(counts, np.array(list(exact.values())), alpha=ALPHA)


def test_the_k_sequences_are_distinct_and_scored():
    n, k = 200, 10
    out = stochastic_beam_search(tree_model, prefixes(n, 1), k=k, max_len=L,
                                 seed=torch.arange(n), eos_token_id=EOS)
    for row in all_generated(out):
        assert len(set(row)) == k
    assert bool((out.perturbed[:, :-1] >= out.perturbed[:, 1:]).all())
    assert bool((out.threshold < out.perturbed[:, -1]).all())
    assert bool(torch.isfinite(out.logprobs).all() & torch.isfinite(out.perturbed).all())
    # a sequence that ended with EOS is padded with it, and its length counts the EOS
    ended = out.sequences[..., 1:].gather(2, (out.lengths - 1)[..., None])[..., 0] == EOS
    assert bool(ended.any()) and bool((~ended).any())
    after = torch.arange(L)[None, None, :] >= out.lengths[..., None]
    assert bool((out.sequences[..., 1:][after] == EOS).all())


@pytest.mark.parametrize("eos", [None, EOS])
def test_k_equal_to_the_space_returns_every_sequence(eos, reference):
    exact = enumerate_sequences(1, reference, eos=eos)
    k = len(exact)  # 64 without EOS, 1 + 3 + 36 = 40 with it
    out = stochastic_beam_search(tree_model, prefixes(2, 1), k=k, max_len=L, eos_token_id=eos,
                                 seed=3)
    for row in range(2):
        found = {generated(out, row, j): float(out.logprobs[row, j]) for j in range(k)}
        assert set(found) == set(exact)
        for seq, lp in found.items():
            assert lp == pytest.approx(math.log(exact[seq]), abs=1e-12)
    assert bool((out.threshold == -math.inf).all())
    values = out.lengths.double() + out.sequences[..., 1].double()
    truth = sum(p * (len(s) + s[0]) for s, p in exact.items())
    for normalised in (False, True):
        est = beam_estimate(values, out.logprobs, out.threshold, normalised=normalised)
        assert torch.allclose(est, torch.full((2,), truth, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("filters", [dict(top_k=2), dict(temperature=0.6, top_p=0.8),
                                     dict(temperature=1.7, min_p=0.2),
                                     dict(top_k=3, top_p=0.9, min_p=0.1)])
def test_filters_apply_at_every_step_as_in_sample(filters, reference):
    """The step distributions are the sampler's (checked against the definitions)."""
    exact = enumerate_sequences(0, reference, **filters)
    k = len(exact)
    out = stochastic_beam_search(tree_model, prefixes(1), k=k, max_len=L, seed=5, **filters)
    found = {generated(out, 0, j): float(out.logprobs[0, j]) for j in range(k)}
    assert set(found) == set(exact)
    for seq, lp in found.items():
        assert lp == pytest.approx(math.log(exact[seq]), abs=1e-6)
    with pytest.raises(ValueError, match=rf"batch row 0 has only {k} sequences of nonzero "
                                         rf"probability .* fewer than k={k + 1}"):
        stochastic_beam_search(tree_model, prefixes(1), k=k + 1, max_len=L, seed=5, **filters)


def test_root_score_is_standard_gumbel():
    """The first sequence's perturbed score is the maximum of every G(y): Gumbel(0)
    (Kolmogorov-Smirnov, false-failure rate 1e-4)."""
    n = 3000
    out = stochastic_beam_search(tree_model, prefixes(n), k=2, max_len=L, seed=torch.arange(n))
    assert_ks(out.perturbed[:, 0].numpy(), lambda x: np.exp(-np.exp(-x)))


# --------------------------------------------------------------------------- the estimator


@pytest.mark.slow
def test_estimator_is_unbiased_and_its_variance_falls_with_k(reference):
    """Within 4 standard errors of the enumerated expectation for k = 1, 2, 4, 8, with
    a variance at least 1.5 times smaller each time k doubles (the ratios observed are
    far larger; each variance is estimated from 20000 rows to a few percent)."""
    exact = enumerate_sequences(0, reference, eos=EOS)
    f = {s: math.sin(3.0 * len(s)) + s[0] - 0.5 * s[-1] for s in exact}
    truth = sum(p * f[s] for s, p in exact.items())
    n = 20000
    variances = []
    for k in (1, 2, 4, 8):
        out = stochastic_beam_search(tree_model, prefixes(n), k=k, max_len=L, eos_token_id=EOS,
                                     seed=torch.arange(n) + 7 * k)
        values = torch.tensor([[f[seq] for seq in row] for row in all_generated(out)],
                              dtype=torch.float64)
        est = beam_estimate(values, out.logprobs, out.threshold)
        assert_close_z(float(est.mean()), truth, float(est.std()) / math.sqrt(n), z=Z)
        variances.append(float(est.var()))
    assert all(a > 1.5 * b for a, b in zip(variances, variances[1:])), variances


def test_estimator_weights_are_finite_at_extreme_thresholds():
    """kappa is at most the largest perturbed score, a Gumbel(0) below about 40."""
    lp = torch.tensor([[-1e-3, -1e4, -5.0]], dtype=torch.float64)
    for kappa in (-1e5, -40.0, 0.0, 40.0):
        w = beam_estimate(torch.eye(3, dtype=torch.float64), lp.expand(3, 3),
                          torch.full((3,), kappa, dtype=torch.float64))
        assert bool(torch.isfinite(w).all()), (kappa, w)
        exact = torch.exp(lp[0]) / -torch.expm1(-torch.exp(lp[0] - kappa))
        ok = torch.isfinite(exact) & (exact > 0)
        assert torch.allclose(w[ok], exact[ok], rtol=1e-12)
    # far below kappa the weight is exp(kappa): p / q with q ~ p exp(-kappa)
    w = beam_estimate(torch.ones(1, 1, dtype=torch.float64),
                      torch.tensor([[-800.0]], dtype=torch.float64),
                      torch.tensor([-30.0], dtype=torch.float64))
    assert float(w) == pytest.approx(math.exp(-30.0), rel=1e-12)


def test_estimator_validates_its_arguments():
    lp = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"values and logprobs must share a shape"):
        beam_estimate(torch.zeros(2, 4), lp, torch.zeros(2))
    with pytest.raises(ValueError, match=r"threshold be \[\.\.\.\]"):
        beam_estimate(torch.zeros(2, 3), lp, torch.zeros(3))
    with pytest.raises(ValueError, match=r"logprobs must be finite"):
        beam_estimate(torch.zeros(2, 3), lp - math.inf, torch.zeros(2))
    with pytest.raises(ValueError, match=r"threshold must be a float or -inf, got NaN"):
        beam_estimate(torch.zeros(2, 3), lp, torch.full((2,), math.nan))


# --------------------------------------------------------------------------- numerics


def test_gumbels_with_maximum_is_stable_and_exact_at_the_top():
    g = torch.tensor([[0.3, -1.0, 2.0, -math.inf],
                      [-1e6, -1e6 + 1e-9, -1e6 - 50.0, -1e6 + 3.0],
                      [800.0, -800.0, 799.9999999, 0.0],
                      [5.0, 5.0 - 1e-15, -math.inf, -math.inf]], dtype=torch.float64)
    for top in (-1e6, -30.0, 0.0, 2.0, 1e6):
        t = torch.full((4, 1), top, dtype=torch.float64)
        out = _gumbels_with_maximum(g, t)
        finite = g > -math.inf
        assert bool(torch.isfinite(out[finite]).all()), (top, out)
        assert bool((out[~finite] == -math.inf).all())
        assert bool((out <= t).all())
        assert torch.equal(out.max(-1).values, t[:, 0])
    # moderate values: the direct formula -log(exp(-T) - exp(-Z) + exp(-g))
    g = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.randn(6, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    direct = -torch.log(torch.exp(-t) - torch.exp(-g.max(-1, keepdim=True).values) + torch.exp(-g))
    assert torch.allclose(_gumbels_with_maximum(g, t), direct, rtol=1e-12, atol=1e-12)


def test_extreme_logits_give_finite_scores():
    scaled = lambda tokens, parents: tree_model(tokens, parents) * 1e4  # noqa: E731
    out = stochastic_beam_search(scaled, prefixes(3), k=64, max_len=L, seed=torch.arange(3))
    assert bool(torch.isfinite(out.logprobs).all() & torch.isfinite(out.perturbed).all())
    assert bool((out.perturbed[:, :-1] >= out.perturbed[:, 1:]).all())
    for dtype in (torch.float32, torch.bfloat16):
        low = lambda tokens, parents, d=dtype: tree_model(tokens, parents).to(d)  # noqa: E731
        out = stochastic_beam_search(low, prefixes(2), k=5, max_len=L, seed=1)
        assert out.logprobs.dtype == torch.float64 and bool(torch.isfinite(out.perturbed).all())


# --------------------------------------------------------------------------- seeds


def test_per_row_seeds_are_batch_invariant_and_reproducible():
    alone = stochastic_beam_search(tree_model, prefixes(1, 1), k=6, max_len=L, eos_token_id=EOS,
                                   seed=torch.tensor([42]))
    mixed = torch.tensor([[0], [1], [1], [0]])
    batch = stochastic_beam_search(tree_model, mixed, k=6, max_len=L, eos_token_id=EOS,
                                   seed=torch.tensor([5, 42, 9, 42]))
    for field in ("sequences", "lengths", "logprobs", "perturbed"):
        assert torch.equal(getattr(batch, field)[1], getattr(alone, field)[0]), field
    assert torch.equal(batch.threshold[1], alone.threshold[0])
    assert not torch.equal(batch.sequences[2], batch.sequences[1])


def test_shared_seeds_generator_and_global_rng_reproduce():
    run = lambda **kw: stochastic_beam_search(tree_model, prefixes(3), k=4, max_len=L,  # noqa: E731
                                              **kw)
    a, b = run(seed=11), run(seed=11)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.perturbed, b.perturbed)
    assert not torch.equal(a.perturbed[0], a.perturbed[1])  # rows of one seed differ
    g = [run(generator=torch.Generator().manual_seed(s)).perturbed for s in (1, 1, 2)]
    assert torch.equal(g[0], g[1]) and not torch.equal(g[0], g[2])
    torch.manual_seed(3)
    first = run().perturbed
    torch.manual_seed(3)
    assert torch.equal(run().perturbed, first)


def test_all_beams_finished_stops_early():
    only_eos = torch.full((V,), -math.inf, dtype=torch.float64)
    only_eos[EOS] = 0.0
    ends = lambda tokens, parents: only_eos.expand(tokens.shape[0], V)  # noqa: E731
    out = stochastic_beam_search(ends, prefixes(2), k=1, max_len=5, eos_token_id=EOS,
                                 pad_token_id=0, seed=0)
    assert out.sequences.tolist() == [[[0, EOS]], [[0, EOS]]]
    assert out.lengths.tolist() == [[1], [1]] and out.logprobs.tolist() == [[0.0], [0.0]]


def test_step_fn_sees_parents_that_rebuild_the_tokens():
    """Each call's rows extend the previous call's rows ``parents`` by one token; a
    finished beam is fed its EOS again, never the pad token, which is only written
    into the returned sequences."""
    seen = []

    def recording(tokens, parents):
        if parents is not None:
            assert torch.equal(tokens[:, :-1], seen[-1][parents])
        assert bool((tokens < V).all())
        seen.append(tokens.clone())
        return tree_model(tokens, parents)

    out = stochastic_beam_search(recording, prefixes(3), k=5, max_len=L, seed=2,
                                 eos_token_id=[EOS, 2], pad_token_id=1000)
    assert [s.shape for s in seen] == [(3, 1), (15, 2), (15, 3)]
    ended = out.lengths < L
    assert bool(ended.any())
    after = torch.arange(L)[None, None, :] >= out.lengths[..., None]
    assert bool((out.sequences[..., 1:][after] == 1000).all())
    last = out.sequences[..., 1:].gather(2, (out.lengths - 1)[..., None])[..., 0]
    assert bool(torch.isin(last[ended], torch.tensor([EOS, 2])).all())


def test_eos_ids_as_tensors_equal_ints_and_lists():
    """An integer tensor of EOS ids (0-d or 1-D, as transformers' configs hold them)
    ends sequences as the same ids given as an int or a list."""
    for as_tensor, plain in ((torch.tensor(EOS), EOS), (torch.tensor([EOS, 2]), [EOS, 2])):
        got = stochastic_beam_search(tree_model, prefixes(2), k=3, max_len=L, seed=4,
                                     eos_token_id=as_tensor)
        want = stochastic_beam_search(tree_model, prefixes(2), k=3, max_len=L, seed=4,
                                      eos_token_id=plain)
        assert torch.equal(got.sequences, want.sequences)
        assert torch.equal(got.lengths, want.lengths)
    with pytest.raises(ValueError, match=r"eos_token_id must be an int, a sequence of ints"):
        stochastic_beam_search(tree_model, prefixes(2), k=3, max_len=L, seed=4,
                               eos_token_id=torch.tensor([1.0]))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, message", [
    (dict(seed=torch.arange(3)), r"a seed tensor must have shape \[2\] \(one seed per batch "
                                 r"row\), got shape \(3,\)"),
    (dict(k=65), r"k must lie in \[1, 64\]: a vocabulary of 4 tokens has 64 sequences of at "
                 r"most max_len=3 tokens, got k=65"),
    (dict(k=0), r"k must lie in \[1, inf\), got 0"),
    (dict(max_len=-1), r"max_len must lie in \[0, 2147483647\], got -1"),
    (dict(max_len=0), r"k must lie in \[1, 1\]: with max_len=0 the only sequence is the "
                      r"empty continuation, got k=2"),
    (dict(eos_token_id=[1, 4]), r"eos_token_id must lie in \[0, 4\) \(step_fn's vocabulary\), "
                                r"got 4"),
    (dict(temperature=0.0), r"temperature must be > 0 and finite .* got 0.0 in row 0"),
    (dict(temperature=torch.tensor([1.0, -1.0])), r"temperature must be >= 0 and finite"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(eos_token_id=-1), r"eos_token_id must lie in \[0, inf\), got -1"),
    (dict(eos_token_id=[3, -2]), r"eos_token_id must lie in \[0, inf\), got -2"),
    (dict(seed=3, generator=torch.Generator()), r"seed= and generator= are both given"),
])
def test_bad_arguments_are_value_errors(kwargs, message):
    calls = []

    def counting(tokens, parents):
        calls.append(tokens.shape)
        return tree_model(tokens, parents)

    args = dict(k=2, max_len=L, seed=0) | kwargs
    if "generator" in kwargs:
        args["seed"] = kwargs["seed"]
    with pytest.raises(ValueError, match=message):
        stochastic_beam_search(counting, prefixes(2), **args)
    assert len(calls) <= 1  # raised before any search step (k's range needs V: one call)


def test_eos_outside_the_vocabulary_is_refused_before_any_noise(monkeypatch):
    """An EOS id >= V could never end a sequence: a ValueError after the first logits,
    before the search draws its noise or calls step_fn again."""
    from gumbelkit.kernels import ops

    drawn = []
    monkeypatch.setattr(ops, "draw_noise", lambda *args, **kwargs: drawn.append(1))
    calls = []

    def counting(tokens, parents):
        calls.append(parents)
        return tree_model(tokens, parents)

    with pytest.raises(ValueError, match=r"eos_token_id must lie in \[0, 4\) .*got 7"):
        stochastic_beam_search(counting, prefixes(2), k=2, max_len=L, seed=0,
                               eos_token_id=torch.tensor([EOS, 7]))
    assert calls == [None] and drawn == []


def test_max_len_zero_returns_the_prefixes_without_calling_step_fn():
    """The one sequence of no tokens: the prefix, log p = 0, the root's Gumbel(0) as its
    score (the best score of a longer search with the same seed), threshold -inf."""
    calls = []

    def counting(tokens, parents):
        calls.append(parents)
        return tree_model(tokens, parents)

    seeds = torch.tensor([3, 4])
    start = torch.tensor([[0], [1]])
    out = stochastic_beam_search(counting, start, k=1, max_len=0, seed=seeds, eos_token_id=EOS)
    assert calls == []
    assert torch.equal(out.sequences, start[:, None, :])
    assert torch.equal(out.lengths, torch.zeros(2, 1, dtype=torch.int64))
    assert torch.equal(out.logprobs, torch.zeros(2, 1, dtype=torch.float64))
    assert bool((out.threshold == -math.inf).all())
    longer = stochastic_beam_search(tree_model, start, k=1, max_len=L, seed=seeds)
    assert torch.equal(out.perturbed, longer.perturbed)


def test_output_is_a_named_tuple():
    """Like the library's other results (QuantizerOutput, RouterOutput): fields by name,
    by index and by unpacking, in the documented order."""
    from gumbelkit.sampling import BeamSearchOutput

    out = stochastic_beam_search(tree_model, prefixes(1), k=2, max_len=L, seed=0)
    assert isinstance(out, tuple) and isinstance(out, BeamSearchOutput)
    assert BeamSearchOutput._fields == ("sequences", "lengths", "logprobs", "perturbed",
                                        "threshold")
    sequences, lengths, *_ = out
    assert sequences is out.sequences and lengths is out[1]


def test_bad_prefix_and_step_outputs_are_errors():
    with pytest.raises(ValueError, match=r"prefix must have an integer dtype"):
        stochastic_beam_search(tree_model, torch.zeros(2, 1), k=2, max_len=L)
    with pytest.raises(ValueError, match=r"prefix must have shape \[batch, length\]"):
        stochastic_beam_search(tree_model, torch.zeros(2, dtype=torch.int64), k=2, max_len=L)
    with pytest.raises(ValueError, match=r"step_fn must return logits of shape \[2, vocab\] "
                                         r"at step 0 \(one row per beam\), got \(1, 4\)"):
        stochastic_beam_search(lambda t, p: torch.zeros(1, V), prefixes(2), k=2, max_len=L)

    with pytest.raises(ValueError, match=r"step_fn must return logits of shape \[8, 4\] "
                                         r"at step 1 \(one row per beam\), got \(8, 5\)"):
        stochastic_beam_search(lambda t, p: torch.zeros(len(t), V + (p is not None)),
                               prefixes(2), k=4, max_len=L)

    def nan_at_step_1(tokens, parents):
        logits = tree_model(tokens, parents).clone()
        if parents is not None:
            logits[4] = math.nan  # batch row 1, beam 0 (k = 4)
        return logits

    with pytest.raises(ValueError, match=r"step 1 for batch row 1, beam 0 have NaN or \+inf"):
        stochastic_beam_search(nan_at_step_1, prefixes(2), k=4, max_len=L, seed=0)


def test_enumeration_covers_the_space(reference):
    """The enumeration the tests trust: 64 sequences without EOS, probabilities sum to 1."""
    exact = enumerate_sequences(0, reference)
    assert set(exact) == set(itertools.product(range(V), repeat=L))
    assert sum(exact.values()) == pytest.approx(1.0, abs=1e-12)
