"""Statistical tests of the token sampler against the exact filtered distribution.

Fixed seeds; each chi-square test rejects at ALPHA = 1e-4 (tests/stats.py), so
a correct sampler fails one of them by chance about once in 10,000 seeds.
"""

import math

import numpy as np
import pytest
import torch

from gumbelkit.kernels import ops
from gumbelkit.sampling import sample, sample_without_replacement
from stats import ALPHA, Z, assert_chisquare, chisquare_pvalue

FUSED_BUILT = ops.sampler_kernel_available(torch.zeros(1, 1))

LOGITS = [2.0, 1.0, 0.5, 0.0, -1.0, -math.inf, 1.5, -0.5]
DRAWS = 20_000  # resolves probability differences of about 0.015 at 4 standard errors

CONFIGS = [
    dict(temperature=1.0),
    dict(temperature=0.7),
    dict(temperature=1.6, top_k=3),
    dict(temperature=1.0, top_p=0.8),
    dict(temperature=1.0, min_p=0.2),
    dict(temperature=0.9, top_k=5, top_p=0.9),
    dict(temperature=1.3, top_k=6, top_p=0.85, min_p=0.1),
    dict(temperature=1.0, top_p=0.5, min_p=0.05),
]


def _name(config):
    return ",".join(f"{k}={v}" for k, v in config.items())


@pytest.mark.parametrize("config", CONFIGS, ids=_name)
def test_frequencies_match_filtered_distribution(path, reference, config):
    logits = torch.tensor(LOGITS).expand(DRAWS, -1)
    tokens = sample(logits, seed=1234, **config).tokens
    counts = np.bincount(tokens.numpy(), minlength=len(LOGITS))
    assert_chisquare(counts, reference(LOGITS, **config))


def test_per_row_controls_each_follow_their_own_distribution(path, reference):
    """Rows with different controls in one batch, each row's frequencies checked."""
    configs = CONFIGS[:4]
    rows = torch.arange(DRAWS) % len(configs)
    temperature = torch.tensor([c.get("temperature", 1.0) for c in configs])[rows]
    top_k = torch.tensor([c.get("top_k", 0) for c in configs])[rows]
    top_p = torch.tensor([c.get("top_p", 1.0) for c in configs], dtype=torch.float64)[rows]
    out = sample(torch.tensor(LOGITS).expand(DRAWS, -1), temperature=temperature, top_k=top_k,
                 top_p=top_p, seed=torch.arange(DRAWS) * 7919)
    for i, config in enumerate(configs):
        counts = np.bincount(out.tokens[rows == i].numpy(), minlength=len(LOGITS))
        assert_chisquare(counts, reference(LOGITS, **config), alpha=ALPHA / len(configs))


@pytest.mark.skipif(not FUSED_BUILT, reason="400k draws need the fused kernel to be quick")
def test_rare_tokens_drawn_at_their_true_rate():
    """100 tokens of probability 1e-5 each (1e-3 together) beside one common token.

    Expected 400 rare draws; the bound is 4 standard errors (about 20%).
    """
    draws = 400_000
    p_rare = 1e-5
    logits = torch.full((101,), math.log(p_rare))
    logits[0] = math.log(1 - 100 * p_rare)
    tokens = sample(logits.expand(draws, -1), seed=99).tokens
    hits = int((tokens > 0).sum())
    expected = draws * 100 * p_rare
    assert abs(hits - expected) <= Z * math.sqrt(expected * (1 - 100 * p_rare)), hits
    assert_chisquare(np.bincount(tokens.numpy(), minlength=101)[1:], np.full(100, 0.01))


def test_greedy_rows_equal_argmax_with_ties_to_lowest_index(path):
    logits = torch.randn(50, 300)
    logits[7, [3, 200]] = logits[7].max() + 1.0
    logits[9, :] = -math.inf
    logits[9, [11, 12]] = 0.0
    out = sample(logits, temperature=0.0, top_k=5, top_p=0.3, min_p=0.5, seed=0,
                 return_logprobs=True)
    assert torch.equal(out.tokens, logits.argmax(-1))
    assert out.tokens[7] == 3 and out.tokens[9] == 11
    assert out.logprobs[7] == pytest.approx(-math.log(2))
    assert out.logprobs[0] == 0.0


def test_mixed_greedy_and_sampled_rows(path, reference):
    rows = torch.arange(DRAWS)
    temperature = torch.where(rows % 2 == 0, 0.0, 1.0)
    out = sample(torch.tensor(LOGITS).expand(DRAWS, -1), temperature=temperature, seed=5)
    assert bool((out.tokens[::2] == 0).all())
    assert_chisquare(np.bincount(out.tokens[1::2].numpy(), minlength=len(LOGITS)),
                     reference(LOGITS))


def test_without_replacement_follows_plackett_luce(path, reference):
    """Ordered pairs (i, j) have probability q_i q_j / (1 - q_i) under the filters."""
    config = dict(temperature=1.0, top_k=5)
    q = reference(LOGITS, **config)
    tokens = sample_without_replacement(torch.tensor(LOGITS).expand(DRAWS, -1), 2, seed=77,
                                        **config).tokens.numpy()
    assert bool((tokens[:, 0] != tokens[:, 1]).all())
    k = len(LOGITS)
    counts = np.bincount(tokens[:, 0] * k + tokens[:, 1], minlength=k * k)
    probs = np.array([q[i] * q[j] / (1 - q[i]) if i != j and q[i] < 1 else 0.0
                      for i in range(k) for j in range(k)])
    assert_chisquare(counts, probs)


def test_without_replacement_first_token_is_sample(path):
    logits = torch.randn(40, 500)
    kw = dict(temperature=0.9, top_k=torch.arange(40) % 7 * 10, seed=torch.arange(40))
    first = sample_without_replacement(logits, 4, **kw).tokens[:, 0]
    assert torch.equal(first, sample(logits, **kw).tokens)


def test_logprobs_are_log_filtered_probabilities(path, reference):
    torch.manual_seed(3)
    logits = torch.randn(12, 40) * 2
    logits[0, :5] = -math.inf
    configs = [dict(temperature=0.5, top_k=8), dict(temperature=1.2, top_p=0.7),
               dict(temperature=1.0, min_p=0.1), dict(temperature=0.8, top_k=20, top_p=0.9)]
    for config in configs:
        out = sample(logits, seed=torch.arange(12), return_logprobs=True, **config)
        for row in range(12):
            q = reference(logits[row].numpy(), **config)
            assert out.logprobs[row].item() == pytest.approx(math.log(q[out.tokens[row]]),
                                                             rel=1e-5, abs=1e-5)


def test_chisquare_helper_rejects_a_wrong_distribution():
    """The statistical tests above can fail: a biased sampler is caught at this size."""
    rng = np.random.default_rng(0)
    probs = np.array([0.5, 0.3, 0.2])
    biased = rng.multinomial(DRAWS, [0.52, 0.28, 0.2])
    assert chisquare_pvalue(biased, probs) < ALPHA
