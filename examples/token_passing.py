"""Differentiable token passing: a GPT-2 learns to write what another GPT-2 can read.

Two Hugging Face GPT-2 models with different vocabularies talk through
discrete tokens, and one is trained through the other's loss:

* the **consumer** (vocabulary of 40 tokens: ``<s>``, ``;``, ``<unk>``, the 16
  letters ``a``..``p`` and unused extras) is first trained briefly on its
  target language, ``<s> c(s) ; s``: it reads a text ``c(s)`` enciphered with
  a fixed substitution ``c`` of the 16 letters and writes the plain text ``s``
  (6 letters). Then it is frozen. Its loss on ``s`` after reading a message
  defines which message is right: the one it reads as ``s``, which is ``c(s)``;
* the **producer** (a second, randomly initialised GPT-2 with a vocabulary of
  64 tokens in another order: each letter twice, as ``a`` and ``▁a``, eight
  two-letter tokens such as ``ab``, and extras the consumer does not know)
  reads ``<s> s`` in its own vocabulary and emits one relaxed token per
  letter with ``gumbelkit.gumbel_softmax`` (token t after reading the first t
  letters, all in one forward pass);
* the producer's tokens ``y`` [..., 64] enter the consumer through
  ``inputs_embeds = SoftEmbedding.tied(consumer.get_input_embeddings())(y @ A)``,
  where ``A`` [64, 40] is the mapping matrix between the vocabularies built
  from the token strings (``a`` and ``▁a`` -> ``a``; ``ab`` -> half ``a``, half
  ``b``; unknown tokens -> ``<unk>``). The producer is trained only by the
  consumer's own Hugging Face loss (``consumer(inputs_embeds=...,
  labels=...).loss`` on ``s``); it is never shown ``c`` or a right message.

The producer must discover the cipher and which of its tokens the consumer
understands. It is trained four times from the same initial weights on the same
batches: straight-through (``hard=True``: the consumer reads exact one-hot
tokens) and soft (``hard=False``: it reads mixtures), each with a constant
``tau = 1`` and with ``gumbelkit.schedules.Exponential`` from 2 to 0.5. Printed:
the training loss (the consumer's cross-entropy per letter, mean over windows
of steps) and, on 512 held-out texts, the producer's greedy hard tokens at the
start and at the end: the consumer's loss reading them, the fraction of tokens
that map exactly to the right consumer token, the fraction of texts whose 6
tokens are all right (exact match), and the fraction of two-letter (split)
tokens, which the consumer reads as a mixture of two letters.

Everything is built from configs (nothing is downloaded); the functions take
any causal language model with ``get_input_embeddings``, ``inputs_embeds``
and ``labels``, and ``mapping_matrix`` any two token lists (e.g. from
``tokenizer.convert_ids_to_tokens(range(len(tokenizer)))``).

    PYTHONPATH=src python examples/token_passing.py [--steps 200] [--consumer-steps 300]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

import gumbelkit
from gumbelkit.nn import SoftEmbedding
from gumbelkit.schedules import Constant, Exponential, Schedule

LETTERS = "abcdefghijklmnop"
BOS, SEP, UNK = "<s>", ";", "<unk>"
LENGTH = 6                      # letters per text
CONSUMER_VOCAB = 40
PRODUCER_VOCAB = 64
WORD_START = "\u2581"           # SentencePiece's word-start mark


def consumer_vocabulary() -> list[str]:
    """``<s> ; <unk>``, the letters, then unused extras up to 40 tokens."""
    tokens = [BOS, SEP, UNK, *LETTERS]
    return tokens + [f"<extra{i}>" for i in range(CONSUMER_VOCAB - len(tokens))]


def producer_vocabulary(generator: torch.Generator) -> list[str]:
    """64 tokens in a random order: the specials, ``a`` and ``▁a`` for each letter,
    eight two-letter tokens, and extras the consumer does not have."""
    pairs = [LETTERS[i] + LETTERS[i + 1] for i in range(0, 16, 2)]
    tokens = [BOS, SEP, *LETTERS, *(WORD_START + c for c in LETTERS), *pairs]
    tokens += [f"<p{i}>" for i in range(PRODUCER_VOCAB - len(tokens))]
    order = torch.randperm(len(tokens), generator=generator).tolist()
    return [tokens[i] for i in order]


def mapping_matrix(producer_tokens: list[str], consumer_tokens: list[str],
                   unk: str = UNK) -> torch.Tensor:
    """``A`` [len(producer_tokens), len(consumer_tokens)], each row on the simplex.

    A producer token that the consumer has (after dropping a leading
    SentencePiece ``▁``) maps to it (a one-hot row); a token made of several
    consumer tokens (here: characters) maps to each of them equally; any other
    token maps to ``unk``. A relaxed producer token ``y`` is then the consumer
    token ``y @ A``.
    """
    index = {token: i for i, token in enumerate(consumer_tokens)}
    if unk not in index:
        raise ValueError(f"the consumer vocabulary has no unknown token {unk!r}")
    mapping = torch.zeros(len(producer_tokens), len(consumer_tokens))
    for row, token in enumerate(producer_tokens):
        text = token.removeprefix(WORD_START) or token
        if text in index:
            mapping[row, index[text]] = 1.0
        elif len(text) > 1 and all(c in index for c in text):
            for c in text:
                mapping[row, index[c]] += 1.0 / len(text)
        else:
            mapping[row, index[unk]] = 1.0
    return mapping


def tiny_gpt2(vocab_size: int) -> GPT2LMHeadModel:
    """GPT-2 with 2 layers, 2 heads, width 32, no dropout, randomly initialised."""
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=vocab_size,
                        n_positions=2 * LENGTH + 2, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
                        loss_type="ForCausalLM")
    return GPT2LMHeadModel(config)


class Task:
    """The two vocabularies, the cipher and the token ids of both sides of a text."""

    def __init__(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.consumer_tokens = consumer_vocabulary()
        self.producer_tokens = producer_vocabulary(generator)
        self.mapping = mapping_matrix(self.producer_tokens, self.consumer_tokens)
        self.cipher = torch.randperm(len(LETTERS), generator=generator)
        consumer_id = {t: i for i, t in enumerate(self.consumer_tokens)}
        producer_id = {t: i for i, t in enumerate(self.producer_tokens)}
        self.consumer_letters = torch.tensor([consumer_id[c] for c in LETTERS])
        self.producer_letters = torch.tensor([producer_id[c] for c in LETTERS])
        self.consumer_bos, self.consumer_sep = consumer_id[BOS], consumer_id[SEP]
        self.producer_bos = producer_id[BOS]

    def texts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random plain texts as letter indices [n, LENGTH]."""
        return torch.randint(0, len(LETTERS), (n, LENGTH), generator=generator)

    def producer_input(self, texts: torch.Tensor) -> torch.Tensor:
        """``<s> s`` in the producer's vocabulary [n, LENGTH + 1]."""
        bos = torch.full((len(texts), 1), self.producer_bos)
        return torch.cat([bos, self.producer_letters[texts]], 1)

    def right_message(self, texts: torch.Tensor) -> torch.Tensor:
        """``c(s)`` in the consumer's vocabulary: what the consumer was trained to read."""
        return self.consumer_letters[self.cipher[texts]]

    def consumer_ids(self, message: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """``<s> message ; s`` in the consumer's vocabulary [n, 2 LENGTH + 2]."""
        n = len(texts)
        return torch.cat([torch.full((n, 1), self.consumer_bos), message,
                          torch.full((n, 1), self.consumer_sep),
                          self.consumer_letters[texts]], 1)

    def labels(self, texts: torch.Tensor) -> torch.Tensor:
        """Hugging Face labels: the plain text ``s``, -100 (ignored) before it."""
        ids = self.consumer_ids(self.right_message(texts), texts)
        ids[:, :LENGTH + 2] = -100
        return ids


def pretrain_consumer(consumer: GPT2LMHeadModel, task: Task, steps: int, batch: int,
                      generator: torch.Generator) -> None:
    """Teach the consumer its language ``<s> c(s) ; s`` (loss on ``s``), then freeze it."""
    optimizer = torch.optim.Adam(consumer.parameters(), lr=3e-3)
    for _ in range(steps):
        texts = task.texts(batch, generator)
        ids = task.consumer_ids(task.right_message(texts), texts)
        loss = consumer(input_ids=ids, labels=task.labels(texts)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    consumer.zero_grad(set_to_none=True)
    consumer.requires_grad_(False)
    consumer.eval()


def consumer_loss(consumer: GPT2LMHeadModel, task: Task, message: torch.Tensor,
                  texts: torch.Tensor) -> torch.Tensor:
    """The consumer's loss on ``s`` after reading ``message``, relaxed producer tokens
    [n, LENGTH, producer vocabulary] (one-hot rows for hard tokens).

    The message is mapped into the consumer's vocabulary (``@ A``) and embedded
    with the consumer's own table, shared through ``SoftEmbedding.tied``; the
    rest of the text is embedded from ids by the same module.
    """
    embed = SoftEmbedding.tied(consumer.get_input_embeddings())
    n = len(texts)
    inputs = torch.cat([embed(torch.full((n, 1), task.consumer_bos)),
                        embed(message @ task.mapping),
                        embed(torch.full((n, 1), task.consumer_sep)),
                        embed(task.consumer_letters[texts])], 1)
    return consumer(inputs_embeds=inputs, labels=task.labels(texts)).loss


def producer_logits(producer: GPT2LMHeadModel, task: Task, texts: torch.Tensor) -> torch.Tensor:
    """Logits of the message [n, LENGTH, producer vocabulary]: token t after letter t."""
    return producer(input_ids=task.producer_input(texts)).logits[:, 1:]


def evaluate(producer: GPT2LMHeadModel, consumer: GPT2LMHeadModel, task: Task,
             texts: torch.Tensor) -> tuple[float, float, float, float]:
    """(consumer loss, token accuracy, exact match, split) of the producer's greedy
    hard tokens.

    A producer token is right when its row of ``A`` is the one-hot of the right
    consumer token; ``split`` is the fraction of tokens whose row is not one-hot
    (two-letter tokens, which the consumer reads as a mixture).
    """
    with torch.no_grad():
        tokens = producer_logits(producer, task, texts).argmax(-1)
        one_hot = torch.nn.functional.one_hot(tokens, len(task.producer_tokens)).float()
        loss = consumer_loss(consumer, task, one_hot, texts).item()
        right = task.mapping[tokens, task.right_message(texts)] == 1.0
        split = task.mapping[tokens].max(-1).values < 1.0
    return (loss, right.double().mean().item(), right.all(-1).double().mean().item(),
            split.double().mean().item())


def train_producer(producer: GPT2LMHeadModel, consumer: GPT2LMHeadModel, task: Task,
                   hard: bool, tau: Schedule, steps: int, batch: int, seed: int) -> list[float]:
    """Train the producer through the frozen consumer's loss; the loss of every step."""
    optimizer = torch.optim.Adam(producer.parameters(), lr=3e-3)
    data = torch.Generator().manual_seed(seed)
    noise = torch.Generator().manual_seed(seed + 1)
    losses = []
    for step in range(steps):
        texts = task.texts(batch, data)
        message = gumbelkit.gumbel_softmax(producer_logits(producer, task, texts), tau(step),
                                           hard=hard, generator=noise)
        loss = consumer_loss(consumer, task, message, texts)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=positive_int, default=200,
                        help="producer training steps per run (default 200)")
    parser.add_argument("--consumer-steps", type=positive_int, default=300,
                        help="consumer training steps on its language (default 300)")
    parser.add_argument("--batch", type=positive_int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="torch threads (default 1: these matrices are too small to share)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    start = time.perf_counter()

    task = Task(args.seed)
    torch.manual_seed(args.seed)
    consumer = tiny_gpt2(len(task.consumer_tokens))
    pretrain_consumer(consumer, task, args.consumer_steps, args.batch,
                      torch.Generator().manual_seed(args.seed + 1))
    held_out = task.texts(512, torch.Generator().manual_seed(args.seed + 2))
    with torch.no_grad():
        right = consumer(input_ids=task.consumer_ids(task.right_message(held_out), held_out),
                         labels=task.labels(held_out)).loss.item()
        shuffled = task.right_message(held_out[torch.randperm(len(held_out))])
        wrong = consumer(input_ids=task.consumer_ids(shuffled, held_out),
                         labels=task.labels(held_out)).loss.item()
    rows = task.mapping.max(1).values
    one_hot = int(((rows == 1) & (task.mapping[:, task.consumer_letters].sum(1) == 1)).sum())
    split = int((rows < 1).sum())
    print(f"consumer: GPT-2 (2 layers, width 32), vocabulary {len(task.consumer_tokens)}, "
          f"trained {args.consumer_steps} steps on '<s> c(s) ; s', then frozen")
    print(f"producer: GPT-2 (2 layers, width 32), vocabulary {len(task.producer_tokens)}, "
          f"mapping A [{len(task.producer_tokens)}, {len(task.consumer_tokens)}]: "
          f"{one_hot} rows one-hot on a letter, {split} split between two letters")
    print(f"consumer loss on s (nats per letter, 512 held-out texts): reading the right "
          f"message c(s) {right:.3f}, a right message of another text {wrong:.3f}")

    runs = [("ST, tau 1", True, Constant(1.0)),
            ("soft, tau 1", False, Constant(1.0)),
            ("ST, tau 2->0.5", True, Exponential(2.0, 0.5, args.steps)),
            ("soft, tau 2->0.5", False, Exponential(2.0, 0.5, args.steps))]
    results = []
    for name, hard, tau in runs:
        torch.manual_seed(args.seed + 3)
        producer = tiny_gpt2(len(task.producer_tokens))
        before = evaluate(producer, consumer, task, held_out)
        run_start = time.perf_counter()
        losses = train_producer(producer, consumer, task, hard, tau, args.steps, args.batch,
                                args.seed + 4)
        seconds = time.perf_counter() - run_start
        after = evaluate(producer, consumer, task, held_out)
        results.append((name, losses, before, after, seconds))

    window = max(1, args.steps // 8)
    print(f"\ntraining loss (consumer cross-entropy on s, nats per letter), mean over "
          f"{window} steps, batch {args.batch}:")
    print(f"{'steps':<12}" + "".join(f"{name:>18}" for name, *_ in results))
    for first in range(0, args.steps, window):
        last = min(first + window, args.steps)
        means = [sum(r[1][first:last]) / (last - first) for r in results]
        print(f"{f'{first + 1}-{last}':<12}" + "".join(f"{m:>18.3f}" for m in means))

    print("\nheld-out texts (512), the producer's greedy hard tokens, start -> end:")
    print(f"{'run':<18}{'consumer loss':>18}{'token accuracy':>18}{'exact match':>18}"
          f"{'split tokens':>18}{'train s':>9}")
    for name, _, before, after, seconds in results:
        cells = "".join(f"{f'{b:.3f} -> {a:.3f}':>18}" for b, a in zip(before, after))
        print(f"{name:<18}{cells}{seconds:>9.1f}")
    touched = sum(p.grad is not None for p in consumer.parameters())
    print(f"consumer parameters that received a gradient: {touched} of "
          f"{len(list(consumer.parameters()))}")
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
