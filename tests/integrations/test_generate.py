"""gumbelkit.integrations.transformers: generate and SamplingLogitsProcessor on small
randomly initialised Hugging Face models (built from configs, see hf_models.py)."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import hf_models as hm
import numpy as np
import pytest
import torch

import gumbelkit
from gumbelkit.integrations.transformers import SamplingLogitsProcessor, generate
from stats import ALPHA, assert_chisquare

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models


@pytest.fixture(scope="module")
def model():
    return hm.gpt2()


def test_importing_gumbelkit_does_not_import_transformers():
    code = ("import sys, gumbelkit, gumbelkit.sampling, gumbelkit.integrations; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers' "
            "or m.startswith('gumbelkit.integrations.transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout


# ----------------------------------------------------------------- batch invariance

CONTROLS = dict(temperature=0.9, top_k=torch.tensor([0, 5, 10, 0, 3, 0, 40, 20]),
                top_p=torch.tensor([0.95, 1.0, 0.8, 0.9, 1.0, 0.7, 1.0, 0.99]), min_p=0.02)


def _row_controls(row: int) -> dict:
    return {k: v[row:row + 1] if isinstance(v, torch.Tensor) else v for k, v in CONTROLS.items()}


def _alone(model, prompt, row, seed, new=16, **kwargs):
    return generate(model, prompt[None], max_new_tokens=new, seed=torch.tensor([seed]),
                    **_row_controls(row), **kwargs).sequences[0]


def test_same_prompt_and_seed_alone_and_in_a_batch(model):
    """Equal-length prompts (no padding): each row's continuation is what it gets alone,
    and moving the rows around the batch moves their continuations with them."""
    ids, mask, alone = hm.prompts([6] * 8, seed=1)
    seeds = torch.arange(100, 108)
    batch = generate(model, ids, max_new_tokens=16, seed=seeds, **CONTROLS).sequences
    for row in range(8):
        assert torch.equal(batch[row], _alone(model, alone[row], row, 100 + row)), row
    order = torch.tensor([5, 2, 7, 0, 1, 6, 3, 4])
    shuffled = generate(model, ids[order], max_new_tokens=16, seed=seeds[order],
                        **{k: v[order] if isinstance(v, torch.Tensor) else v
                           for k, v in CONTROLS.items()}).sequences
    assert torch.equal(shuffled, batch[order])


def test_left_padded_prompts_alone_and_in_a_batch():
    """Prompts of different lengths, left-padded: in float64 the model's logits alone and
    padded agree to rounding, and so do the continuations (the sampler adds nothing)."""
    model = hm.gpt2().double()
    lengths = [3, 9, 5, 12, 7, 1, 10, 4]
    ids, mask, alone = hm.prompts(lengths, seed=2)
    batch = generate(model, ids, mask, max_new_tokens=16, seed=torch.arange(8),
                     **CONTROLS).sequences
    for row, prompt in enumerate(alone):
        assert torch.equal(batch[row, ids.shape[1]:], _alone(model, prompt, row, row)[len(prompt):])


@pytest.mark.parametrize("name", sorted(hm.ENCODER_DECODERS))
def test_encoder_decoder_alone_and_in_a_batch(name):
    model = hm.ENCODER_DECODERS[name]().double()
    ids, mask, alone = hm.prompts([3, 9, 5, 12], seed=3, pad=model.config.pad_token_id,
                                  side="right")
    batch = generate(model, ids, mask, max_new_tokens=8, seed=torch.arange(4),
                     **{k: v[:4] if isinstance(v, torch.Tensor) else v
                        for k, v in CONTROLS.items()}).sequences
    assert batch.shape == (4, 9)
    assert bool((batch[:, 0] == hm.ENCODER_DECODERS[name]().generation_config
                 .decoder_start_token_id).all())
    for row, prompt in enumerate(alone):
        assert torch.equal(batch[row], _alone(model, prompt, row, row, new=8)), row


def test_a_row_does_not_depend_on_the_other_rows_controls(model):
    ids, _, _ = hm.prompts([5] * 3, seed=4)
    seeds = torch.tensor([7, 8, 9])
    a = generate(model, ids, max_new_tokens=12, seed=seeds,
                 temperature=torch.tensor([0.8, 1.0, 0.0]), top_k=torch.tensor([10, 3, 0]))
    b = generate(model, ids, max_new_tokens=12, seed=seeds,
                 temperature=torch.tensor([0.8, 2.0, 0.5]), top_k=torch.tensor([10, 0, 1]))
    assert torch.equal(a.sequences[0], b.sequences[0])
    assert not torch.equal(a.sequences[1], b.sequences[1])


# ----------------------------------------------------------------- seeds and positions

def test_reproducible_and_seeded_by_the_global_rng(model):
    ids, _, _ = hm.prompts([4] * 4, seed=5)
    first = generate(model, ids, max_new_tokens=10, seed=[3, 4, 5, 6]).sequences
    assert torch.equal(first, generate(model, ids, max_new_tokens=10,
                                       seed=torch.tensor([3, 4, 5, 6])).sequences)
    torch.manual_seed(1)
    a = generate(model, ids, max_new_tokens=10).sequences
    torch.manual_seed(1)
    assert torch.equal(a, generate(model, ids, max_new_tokens=10).sequences)
    g = torch.Generator().manual_seed(2)
    b = generate(model, ids, max_new_tokens=10, generator=g).sequences
    c = generate(model, ids, max_new_tokens=10, generator=torch.Generator().manual_seed(2))
    assert torch.equal(b, c.sequences)
    # An int seed keys rows by their index: identical prompts still get their own tokens.
    same = generate(model, ids[:1].expand(4, -1), max_new_tokens=10, seed=0).sequences
    assert len({tuple(r.tolist()) for r in same}) > 1


def test_tokens_are_the_samplers_at_each_decoding_step(model):
    """Each new token is sample() on the row's logits (a full forward of the prefix)
    with the row's seed and the step as position, and its logprob is the sampler's."""
    ids, _, _ = hm.prompts([5, 5], seed=6)
    out = generate(model, ids, max_new_tokens=6, seed=torch.tensor([21, 22]), top_p=0.9,
                   temperature=0.7, return_logprobs=True)
    for step in range(6):
        prefix = out.sequences[:, :5 + step]
        with torch.no_grad():
            logits = model(prefix).logits[:, -1]
        want = gumbelkit.sampling.sample(logits, temperature=0.7, top_p=0.9,
                                         seed=torch.tensor([21, 22]), positions=step,
                                         return_logprobs=True)
        assert torch.equal(out.sequences[:, 5 + step], want.tokens)
        torch.testing.assert_close(out.logprobs[:, step], want.logprobs, rtol=1e-4, atol=1e-5)


def test_greedy_rows_follow_the_argmax(model):
    ids, _, _ = hm.prompts([5], seed=7)
    out = generate(model, ids, max_new_tokens=5, temperature=0.0).sequences
    with torch.no_grad():
        for step in range(5):
            assert out[0, 5 + step] == model(out[:, :5 + step]).logits[0, -1].argmax()


# ----------------------------------------------------------------- end of sequence

def test_rows_stop_at_eos_and_are_padded(model):
    ids, _, _ = hm.prompts([3] * 64, seed=8)
    eos = list(range(1, 17))  # a quarter of the vocabulary ends a row
    out = generate(model, ids, max_new_tokens=40, seed=torch.arange(64), eos_token_id=eos,
                   pad_token_id=0, return_logprobs=True, temperature=1.5)
    new = out.sequences[:, 3:]
    ended = torch.isin(new, torch.tensor(eos))
    assert bool(ended.any(1).all()), "every row should have ended in 40 steps"
    assert new.shape[1] < 40, "the loop stops once every row has ended"
    first = ended.int().argmax(1)
    after = torch.arange(new.shape[1]) > first[:, None]
    assert bool(after.any())
    assert bool((new[after] == 0).all())
    assert bool((out.logprobs[after] == 0).all()) and bool((out.logprobs[~after] < 0).all())
    # Up to its end a row's continuation is what it gets without end tokens.
    free = generate(model, ids, max_new_tokens=new.shape[1], seed=torch.arange(64),
                    temperature=1.5).sequences[:, 3:]
    assert torch.equal(torch.where(after, 0, free), new)


def test_zero_new_tokens_returns_the_prompt(model):
    ids, _, _ = hm.prompts([4, 4], seed=9)
    out = generate(model, ids, max_new_tokens=0, seed=1, return_logprobs=True)
    assert torch.equal(out.sequences, ids) and out.logprobs.shape == (2, 0)
    out = generate(hm.t5(), ids, max_new_tokens=0)
    assert torch.equal(out.sequences, torch.zeros(2, 1, dtype=torch.int64))
    assert out.logprobs is None


def test_output_is_a_named_tuple(model):
    """Like the library's other results (QuantizerOutput, RouterOutput): fields by name,
    by index and by unpacking, in the documented order."""
    from gumbelkit.integrations.transformers import GenerationOutput

    out = generate(model, torch.tensor([[3, 4]]), max_new_tokens=2, seed=0,
                   return_logprobs=True)
    assert isinstance(out, tuple) and GenerationOutput._fields == ("sequences", "logprobs")
    sequences, logprobs = out
    assert sequences is out.sequences and logprobs is out[1]


# ----------------------------------------------------------------- the LogitsProcessor

def test_logits_processor_gives_generates_tokens(model):
    ids, mask, _ = hm.prompts([3, 9, 5, 12, 7, 1, 10, 4], seed=2)
    seeds = torch.arange(100, 108)
    ours = generate(model, ids, mask, max_new_tokens=20, seed=seeds, eos_token_id=hm.EOS,
                    **CONTROLS).sequences
    theirs = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=20,
                            eos_token_id=hm.EOS, pad_token_id=hm.EOS,
                            logits_processor=[SamplingLogitsProcessor(seed=seeds, **CONTROLS)])
    assert torch.equal(ours, theirs)


def test_logits_processor_on_an_encoder_decoder():
    model = hm.marian()
    ids, mask, _ = hm.prompts([3, 9, 5, 12], seed=3, pad=model.config.pad_token_id,
                              side="right")
    kw = dict(temperature=0.8, top_k=5, seed=[5, None, 7, 8])
    torch.manual_seed(0)
    ours = generate(model, ids, mask, max_new_tokens=10, **kw).sequences
    torch.manual_seed(0)
    theirs = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=10,
                            logits_processor=[SamplingLogitsProcessor(**kw)])
    assert torch.equal(ours, theirs)


def test_logits_processor_serves_one_call(model):
    ids, _, _ = hm.prompts([4], seed=10)
    processor = SamplingLogitsProcessor(seed=1)
    model.generate(ids, do_sample=False, max_new_tokens=3, logits_processor=[processor],
                   pad_token_id=0)
    with pytest.raises(ValueError, match="serves one generate call"):
        model.generate(ids, do_sample=False, max_new_tokens=3, logits_processor=[processor],
                       pad_token_id=0)


# ----------------------------------------------------------------- bad input

class NoCache(torch.nn.Module):
    """A language model whose forward takes no KV cache."""

    config = hm.gpt2().config

    def forward(self, input_ids, attention_mask=None):
        return torch.zeros(*input_ids.shape, hm.VOCAB)


@pytest.mark.parametrize("kwargs, match", [
    (dict(seed=torch.tensor([1, 2, 3])), r"seed tensor must have shape \[2\]"),
    (dict(seed=[1, 2, 3]), "seed list must have one entry"),
    (dict(max_new_tokens=-1), r"max_new_tokens must lie in \[0, 2147483648\], got -1"),
    (dict(top_p=torch.tensor([0.5, 1.5])), "top_p"),
    (dict(temperature=-1.0), "temperature"),
    (dict(seed=1, generator=torch.Generator()), "seed= and generator= are both given"),
    (dict(eos_token_id=64), r"eos_token_id must lie in \[0, 64\)"),
    (dict(input_ids=torch.tensor([[1, 64]])), r"input_ids must lie in \[0, 64\)"),
    (dict(attention_mask=torch.tensor([[1, 0], [1, 1]])), "must be left-padded"),
    (dict(attention_mask=torch.tensor([[0, 0], [1, 1]])), "attend to no token"),
    (dict(input_ids=torch.tensor([1, 2])), r"input_ids must be an integer tensor \[batch"),
])
def test_bad_input_is_a_clear_error(model, kwargs, match):
    args = {"input_ids": torch.tensor([[3, 4], [5, 6]]), "max_new_tokens": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate(model, **args)


def test_a_non_bool_return_logprobs_is_refused_before_the_model_runs(model):
    calls = []
    hook = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        with pytest.raises(TypeError, match="return_logprobs must be a bool, got 'yes'"):
            generate(model, torch.tensor([[3, 4]]), max_new_tokens=2, seed=0,
                     return_logprobs="yes")
    finally:
        hook.remove()
    assert calls == []


def test_a_model_without_a_kv_cache_is_a_clear_error():
    with pytest.raises(ValueError, match="needs a model with a KV cache: NoCache.forward"):
        generate(NoCache(), torch.tensor([[3, 4]]), max_new_tokens=2)


def test_logits_processor_rejects_bad_controls_and_batch_sizes(model):
    with pytest.raises(ValueError, match="top_p"):
        SamplingLogitsProcessor(top_p=0.0)
    processor = SamplingLogitsProcessor(seed=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="3 seeds but generate runs 2 rows"):
        processor(torch.tensor([[3, 4], [5, 6]]), torch.zeros(2, hm.VOCAB))


# ----------------------------------------------------------------- exactness

def _sequence_probs(model, prompt, new, vocab, eos, **controls):
    """Every continuation's exact probability, by enumeration through the model's forward
    (float64 filtered distributions from tests/sampling's reference): {tokens: p}."""
    from sampling.conftest import filtered_probs

    probs = {}
    for tokens in itertools.product(range(vocab), repeat=new):
        if eos is not None and eos in tokens:  # after the end only the pad (= eos) follows
            end = tokens.index(eos)
            if any(t != eos for t in tokens[end:]):
                continue
            steps = end + 1
        else:
            steps = new
        seq = torch.tensor([list(prompt) + list(tokens)])
        with torch.no_grad():
            logits = model(seq).logits[0, len(prompt) - 1:len(prompt) - 1 + steps]
        p = 1.0
        for step in range(steps):
            p *= filtered_probs(logits[step].double().numpy(), **controls)[tokens[step]]
        probs[tokens] = p
    return probs


@pytest.mark.slow
def test_sequences_follow_the_models_exact_distribution():
    """vocabulary 4, 3 new tokens: the frequencies of generate's continuations over
    24,000 per-request seeds match the exact sequence probabilities (Pearson chi-square,
    two settings at ALPHA / 2 each: false-failure rate about 1e-4), and each
    continuation's summed logprob is its exact log-probability."""
    vocab, new, n = 4, 3, 24_000
    model = hm.gpt2(vocab=vocab, seed=3, initializer_range=0.4)
    prompt = (0, 2)
    settings = [dict(temperature=1.0, eos=None),
                dict(temperature=0.8, top_k=3, top_p=0.9, min_p=0.1, eos=hm.EOS)]
    for setting in settings:
        controls = {k: v for k, v in setting.items() if k != "eos"}
        probs = _sequence_probs(model, prompt, new, vocab, setting["eos"], **controls)
        assert math.isclose(sum(probs.values()), 1.0, rel_tol=1e-9)
        out = generate(model, torch.tensor([prompt]).expand(n, -1), max_new_tokens=new,
                       seed=torch.arange(n) + 10**6, eos_token_id=setting["eos"],
                       return_logprobs=True, **controls)
        drawn = [tuple(r) for r in out.sequences[:, len(prompt):].tolist()]
        drawn = [r + (setting["eos"],) * (new - len(r)) for r in drawn]  # early stop
        cells = sorted(probs)
        counts = np.bincount([cells.index(d) for d in drawn], minlength=len(cells))
        assert sum(counts) == n
        assert_chisquare(counts, [probs[c] for c in cells], alpha=ALPHA / 2)
        logp = out.logprobs.double().sum(1)
        exact = torch.tensor([math.log(probs[d]) for d in drawn], dtype=torch.float64)
        torch.testing.assert_close(logp, exact, rtol=0, atol=1e-4)


def test_decoding_md_examples_print_what_it_says(capsys):
    """Every ```python block of docs/decoding.md followed by "prints" runs (in one
    namespace, in order) and prints the block after it."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "decoding.md").read_text()
    pairs = re.findall(r"```python\n(.*?)```\n\nprints\n\n```\n(.*?)```", text, re.S)
    assert len(pairs) >= 2
    namespace: dict = {}
    for code, printed in pairs:
        exec(code, namespace)
        assert capsys.readouterr().out == printed
