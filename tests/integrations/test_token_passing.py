"""Differentiable token passing between two Hugging Face models: a producer GPT-2's
relaxed tokens, mapped into a consumer GPT-2's vocabulary, enter the consumer through
``inputs_embeds`` (``SoftEmbedding.tied``), and the producer learns from the consumer's
loss alone; a frozen consumer receives nothing. examples/token_passing.py is the full
demonstration."""

from __future__ import annotations

import importlib

import pytest
import torch

import gumbelkit
from gumbelkit.nn import SoftEmbedding

transformers = pytest.importorskip("transformers")

LENGTH, LETTERS = 3, 4
# consumer ids: 0 <s>, 1 ;, 2 <unk>, 3..6 the letters; producer ids: 0 <s>, 1..4 the
# letters, 5..8 the letters again (another spelling), 9 a token that is half letter 0 and
# half letter 1, 10..11 tokens the consumer does not know.
CONSUMER_VOCAB, PRODUCER_VOCAB = 7, 12


def mapping() -> torch.Tensor:
    a = torch.zeros(PRODUCER_VOCAB, CONSUMER_VOCAB)
    a[0, 0] = 1.0
    for letter in range(LETTERS):
        a[1 + letter, 3 + letter] = a[5 + letter, 3 + letter] = 1.0
    a[9, 3] = a[9, 4] = 0.5
    a[10:, 2] = 1.0
    return a


def gpt2(vocab: int) -> torch.nn.Module:
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=vocab,
                                     n_positions=2 * LENGTH + 2, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None,
                                     eos_token_id=None, loss_type="ForCausalLM")
    return transformers.GPT2LMHeadModel(config)


def consumer_inputs(consumer, message: torch.Tensor,
                    texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``inputs_embeds`` of ``<s> message ; texts`` and the labels scoring ``texts``."""
    embed = SoftEmbedding.tied(consumer.get_input_embeddings())
    n = len(texts)
    bos, sep = torch.zeros(n, 1, dtype=torch.long), torch.ones(n, 1, dtype=torch.long)
    inputs = torch.cat([embed(bos), embed(message @ mapping().to(message.dtype)), embed(sep),
                        embed(3 + texts)], 1)
    return inputs, torch.cat([torch.full((n, LENGTH + 2), -100), 3 + texts], 1)


def consumer_loss(consumer, message: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """The consumer's own Hugging Face loss on writing ``texts`` after ``<s> message ;``."""
    inputs, labels = consumer_inputs(consumer, message, texts)
    return consumer(inputs_embeds=inputs, labels=labels).loss


def producer_logits(producer, texts: torch.Tensor) -> torch.Tensor:
    ids = torch.cat([torch.zeros(len(texts), 1, dtype=torch.long), 1 + texts], 1)
    return producer(input_ids=ids).logits[:, 1:]


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: these matrices are too small to share, and on a busy machine
    a second thread only spins."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def consumer(one_thread):
    """A consumer taught briefly to copy ``<s> m ; m`` (its loss then says which message
    is right), then frozen."""
    transformers.utils.logging.set_verbosity_error()
    torch.manual_seed(0)
    model = gpt2(CONSUMER_VOCAB)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = torch.Generator().manual_seed(1)
    for _ in range(60):
        texts = torch.randint(0, LETTERS, (32, LENGTH), generator=data)
        message = torch.nn.functional.one_hot(1 + texts, PRODUCER_VOCAB).float()
        loss = consumer_loss(model, message, texts)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return model.requires_grad_(False).eval()


def test_the_consumer_gradient_is_the_derivative_of_its_output(consumer):
    """What the producer receives is the true derivative of the consumer's output in the
    relaxed tokens (float64 finite differences through the mapping, the tied table and
    every layer; the logits, because the Hugging Face loss rounds them to float32)."""
    double = gpt2(CONSUMER_VOCAB).double()
    double.load_state_dict(consumer.state_dict())
    double.requires_grad_(False)
    texts = torch.randint(0, LETTERS, (2, LENGTH), generator=torch.Generator().manual_seed(2))
    message = torch.softmax(torch.randn(2, LENGTH, PRODUCER_VOCAB, dtype=torch.float64), -1)

    def logits(m: torch.Tensor) -> torch.Tensor:
        return double(inputs_embeds=consumer_inputs(double, m, texts)[0]).logits[:, LENGTH + 1:]

    assert torch.autograd.gradcheck(logits, message.requires_grad_(), fast_mode=True)


@pytest.mark.parametrize("hard", [True, False], ids=["straight-through", "soft"])
def test_the_producer_learns_through_the_frozen_consumer_alone(consumer, hard):
    torch.manual_seed(3)
    producer = gpt2(PRODUCER_VOCAB)
    optimizer = torch.optim.Adam(producer.parameters(), lr=1e-2)
    data, noise = torch.Generator().manual_seed(4), torch.Generator().manual_seed(5)
    tau = gumbelkit.schedules.Exponential(2.0, 0.5, 30)
    losses = []
    for step in range(30):
        texts = torch.randint(0, LETTERS, (32, LENGTH), generator=data)
        message = gumbelkit.gumbel_softmax(producer_logits(producer, texts), tau(step),
                                           hard=hard, generator=noise)
        loss = consumer_loss(consumer, message, texts)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            for name, p in producer.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, name
            for name, p in consumer.named_parameters():
                assert p.grad is None, name
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert all(p.grad is None for p in consumer.parameters())


@pytest.mark.parametrize("module,cls", [("bart", "BartScaledWordEmbedding"),
                                        ("gemma", "GemmaTextScaledWordEmbedding")])
def test_tied_matches_hugging_face_scaled_embeddings(module, cls):
    """BART and Gemma multiply their lookup by embed_scale (a float, a buffer); inputs_embeds
    skips that module, so the tied soft embedding must apply it."""
    embedding = getattr(importlib.import_module(f"transformers.models.{module}.modeling_{module}"),
                        cls)(10, 4, 0, embed_scale=3.0)
    torch.nn.init.normal_(embedding.weight)
    ids = torch.tensor([[1, 9, 4]])
    soft = SoftEmbedding.tied(embedding)
    torch.testing.assert_close(soft(ids), embedding(ids), rtol=0, atol=0)
    torch.testing.assert_close(soft(torch.nn.functional.one_hot(ids, 10).float()),
                               embedding(ids))
