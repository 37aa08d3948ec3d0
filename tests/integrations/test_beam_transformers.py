"""The transformers adapter of stochastic beam search: the KV-cache path equals the
generic search on a step function that reruns the whole model, for a decoder-only
and an encoder-decoder model built from small configs (nothing is downloaded)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from gumbelkit.integrations.transformers import stochastic_beam_search  # noqa: E402
from gumbelkit.sampling import stochastic_beam_search as generic  # noqa: E402

V = 64


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=V,
                                     bos_token_id=0, eos_token_id=1)
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def bart():
    torch.manual_seed(1)
    config = transformers.BartConfig(vocab_size=V, d_model=16, encoder_layers=1,
                                     decoder_layers=1, encoder_attention_heads=2,
                                     decoder_attention_heads=2, encoder_ffn_dim=32,
                                     decoder_ffn_dim=32, max_position_embeddings=64,
                                     pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                     decoder_start_token_id=2)
    return transformers.BartForConditionalGeneration(config).eval()


def assert_same_search(a, b):
    assert torch.equal(a.sequences, b.sequences)
    assert torch.equal(a.lengths, b.lengths)
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-4)
    assert torch.allclose(a.perturbed, b.perturbed, atol=1e-4)
    assert torch.allclose(a.threshold, b.threshold, atol=1e-4)


def test_decoder_only_cache_equals_rerunning_the_model(gpt2):
    ids = torch.randint(2, V, (3, 5), generator=torch.Generator().manual_seed(2))
    settings = dict(eos_token_id=1, temperature=0.8, top_k=20, seed=torch.tensor([4, 5, 6]))
    out = stochastic_beam_search(gpt2, ids, k=6, max_new_tokens=7, **settings)

    def rerun(tokens, parents):
        with torch.no_grad():
            return gpt2(tokens).logits[:, -1]

    assert_same_search(out, generic(rerun, ids, 6, 7, **settings))
    assert out.sequences.shape[:2] == (3, 6)
    for row in out.sequences.tolist():
        assert len({tuple(s) for s in row}) == 6
    assert torch.equal(out.sequences[:, :, :5], ids[:, None, :].expand(3, 6, 5))


def test_left_padded_prompts_match_their_unpadded_runs(gpt2):
    """A seeded prompt gets the same sequences alone and left-padded in a batch."""
    short = torch.tensor([[7, 8, 9]])
    batch = torch.tensor([[0, 0, 7, 8, 9], [3, 4, 5, 6, 10]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    alone = stochastic_beam_search(gpt2, short, k=5, max_new_tokens=6, seed=torch.tensor([11]))
    both = stochastic_beam_search(gpt2, batch, mask, k=5, max_new_tokens=6,
                                  seed=torch.tensor([11, 12]))
    assert torch.equal(both.sequences[0, :, 2:], alone.sequences[0])
    assert torch.allclose(both.logprobs[0], alone.logprobs[0], atol=1e-4)


def test_encoder_decoder_cache_equals_rerunning_the_model(bart):
    ids = torch.randint(3, V, (2, 6), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    settings = dict(eos_token_id=2, pad_token_id=1, top_p=0.9, seed=torch.tensor([8, 9]))
    out = stochastic_beam_search(bart, ids, mask, k=4, max_new_tokens=5, **settings)
    rows = {}

    def rerun(tokens, parents):
        rows["r"] = torch.arange(2) if parents is None else rows["r"][parents]
        with torch.no_grad():
            return bart(input_ids=ids[rows["r"]], attention_mask=mask[rows["r"]],
                        decoder_input_ids=tokens).logits[:, -1]

    start = torch.full((2, 1), 2)
    assert_same_search(out, generic(rerun, start, 4, 5, **settings))
    assert bool((out.sequences[:, :, 0] == 2).all())


def test_no_eos_by_default_as_in_generate(gpt2):
    """eos_token_id=None runs every sequence to max_new_tokens, as generate does, whatever
    the model's generation_config says; passed explicitly, its id ends sequences."""
    ids = torch.tensor([[5, 6]])
    with torch.no_grad():
        likely = int(gpt2(ids).logits[0, -1].argmax())  # an EOS that top_k=3 keeps
    saved = gpt2.generation_config.eos_token_id
    gpt2.generation_config.eos_token_id = likely
    try:
        plain = stochastic_beam_search(gpt2, ids, k=8, max_new_tokens=3, top_k=3, seed=0)
        stopped = stochastic_beam_search(gpt2, ids, k=8, max_new_tokens=3, top_k=3, seed=0,
                                         eos_token_id=gpt2.generation_config.eos_token_id)
    finally:
        gpt2.generation_config.eos_token_id = saved
    assert bool((plain.lengths == 3).all())
    ended = stopped.lengths < 3
    assert bool(ended.any())
    last = stopped.sequences[..., 2:].gather(2, (stopped.lengths - 1)[..., None])[..., 0]
    assert bool((last[ended] == likely).all())


def test_model_errors(gpt2):
    ids = torch.tensor([[5, 6]])
    with pytest.raises(ValueError, match=r"attention_mask must have the shape of input_ids"):
        stochastic_beam_search(gpt2, ids, torch.ones(1, 3), k=2, max_new_tokens=3)
    with pytest.raises(ValueError, match=r"a seed tensor must have shape \[1\]"):
        stochastic_beam_search(gpt2, ids, k=2, max_new_tokens=3, seed=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"k must lie in \[1, 64\]"):
        stochastic_beam_search(gpt2, ids, k=65, max_new_tokens=1)


def test_bad_prompts_are_refused_before_the_model_runs(gpt2):
    """Right padding, ids outside the vocabulary and masks other than 0/1 are refused
    as generate() refuses them, and max_new_tokens is named by its own name."""
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    calls = []
    hook = gpt2.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        with pytest.raises(ValueError, match=r"must be left-padded"):
            stochastic_beam_search(gpt2, ids, torch.tensor([[1, 1, 0], [1, 1, 1]]), k=2,
                                   max_new_tokens=2, seed=0)
        with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 64\)"):
            stochastic_beam_search(gpt2, ids + V, k=2, max_new_tokens=2, seed=0)
        with pytest.raises(ValueError, match=r"attention_mask must hold only 0"):
            stochastic_beam_search(gpt2, ids, torch.full_like(ids, 2), k=2, max_new_tokens=2,
                                   seed=0)
        with pytest.raises(ValueError, match=r"max_new_tokens must lie in \[0, 2147483647\], "
                                             r"got -1"):
            stochastic_beam_search(gpt2, ids, k=2, max_new_tokens=-1, seed=0)
        with pytest.raises(ValueError, match=r"k must lie in \[1, 1\]: with max_new_tokens=0"):
            stochastic_beam_search(gpt2, ids, k=2, max_new_tokens=0, seed=0)
        with pytest.raises(ValueError, match=r"eos_token_id must lie in \[0, 64\)"):
            stochastic_beam_search(gpt2, ids, k=2, max_new_tokens=2, seed=0, eos_token_id=64)
        with pytest.raises(ValueError, match=r"pad_token_id must lie in \[0, 64\)"):
            stochastic_beam_search(gpt2, ids, k=2, max_new_tokens=2, seed=0, pad_token_id=64)
    finally:
        hook.remove()
    assert calls == []


def test_zero_new_tokens_return_the_prompt_without_running_the_model(gpt2, bart):
    """max_new_tokens=0, as in generate: the prompt (decoder-only) or the decoder start
    token (encoder-decoder), the one continuation of no tokens, with k=1."""
    ids = torch.tensor([[0, 5, 6], [7, 8, 9]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    calls = []
    hooks = [m.register_forward_pre_hook(lambda module, args: calls.append(1))
             for m in (gpt2, bart, bart.get_encoder())]
    try:
        out = stochastic_beam_search(gpt2, ids, mask, k=1, max_new_tokens=0,
                                     seed=torch.tensor([1, 2]))
        assert torch.equal(out.sequences, ids[:, None, :])
        assert torch.equal(out.lengths, torch.zeros(2, 1, dtype=torch.int64))
        coded = stochastic_beam_search(bart, ids, k=1, max_new_tokens=0, seed=0)
        assert torch.equal(coded.sequences, torch.full((2, 1, 1), 2))
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == []


class PastKeyValues(torch.nn.Module):
    """The test GPT-2 behind a forward that takes and returns its cache as
    `past_key_values`, as transformers releases before 5.25 name it."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=None, return_dict=None):
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=position_ids, cache=past_key_values, use_cache=use_cache)
        return transformers.utils.ModelOutput(logits=out.logits, past_key_values=out.cache)


class NoCache(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.config = inner.config

    def forward(self, input_ids, attention_mask=None):
        return torch.zeros(*input_ids.shape, V)


def test_the_cache_keyword_is_found_as_generate_finds_it(gpt2):
    """A model whose forward takes `past_key_values` decodes as with `cache`; one that
    takes neither is the ValueError generate gives, before the model runs."""
    ids = torch.tensor([[0, 5, 6], [7, 8, 9]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    settings = dict(k=3, max_new_tokens=4, top_k=10, seed=torch.tensor([3, 4]))
    direct = stochastic_beam_search(gpt2, ids, mask, **settings)
    wrapped = stochastic_beam_search(PastKeyValues(gpt2), ids, mask, **settings)
    assert_same_search(direct, wrapped)
    with pytest.raises(ValueError, match=r"stochastic_beam_search needs a model with a KV "
                                         r"cache: NoCache.forward"):
        stochastic_beam_search(NoCache(gpt2), ids, mask, **settings)


def test_prompt_positions_count_each_rows_own_tokens():
    from gumbelkit.integrations.transformers._model import prompt_positions

    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert prompt_positions(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4],
                                               [0, 0, 0, 0, 0]]


def test_benchmark_smoke_run(capsys, monkeypatch):
    """benchmarks/beam_search.py runs end to end on a tiny problem (timings never asserted)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    bench = importlib.import_module("beam_search")
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--batch", "1", "--prompt", "3", "--new", "2", "--k", "2",
                           "--repeats", "1"]) == 0
        with pytest.raises(SystemExit) as info:
            bench.main(["--k", "0"])
        assert info.value.code == 2
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop("beam_search", None)
    out = capsys.readouterr()
    assert "ratio stochastic / deterministic:" in out.out
    assert "--k must be >= 1, got 0" in out.err


@pytest.mark.cuda
def test_cuda_search_equals_cpu(gpt2):
    """Same noise on every device (the noise contract): the same sequences."""
    ids = torch.randint(2, V, (2, 4), generator=torch.Generator().manual_seed(5))
    settings = dict(k=4, max_new_tokens=5, top_p=0.9, seed=torch.tensor([1, 2]))
    cpu = stochastic_beam_search(gpt2, ids, **settings)
    cuda = stochastic_beam_search(gpt2.cuda(), ids.cuda(), **settings)
    gpt2.cpu()
    assert torch.equal(cuda.sequences.cpu(), cpu.sequences)
    assert torch.allclose(cuda.perturbed.cpu(), cpu.perturbed, atol=1e-4)
