"""A ``LogitsProcessor`` that lets ``model.generate``'s greedy search pick gumbelkit's samples."""

from __future__ import annotations

import math

import torch

try:
    from transformers import LogitsProcessor
except ImportError as error:  # the optional extra is missing
    raise ImportError("gumbelkit.integrations.transformers needs Hugging Face transformers: "
                      "pip install 'gumbelkit[hf]'") from error

from ...sampling import sample
from ...sampling._controls import PerRow
from ._seeds import GenerationSeed, fix_seed

__all__ = ["SamplingLogitsProcessor"]


class SamplingLogitsProcessor(LogitsProcessor):
    """Makes ``model.generate(do_sample=False)`` pick the token gumbelkit samples.

    Each call draws one token per row with :func:`gumbelkit.sampling.sample`
    from the scores it is given (the model's logits after every processor
    placed before this one) and returns scores that are 0 at that token and
    ``-inf`` elsewhere, so greedy search selects it. The sampler's position is
    the decoding step (0 for the first new token: the number of columns of
    ``input_ids`` beyond those of the first call), exactly as in
    :func:`gumbelkit.integrations.transformers.generate`, so with the same
    seeds and controls both give the same tokens; streamers, stopping criteria
    and the rest of ``model.generate`` work as usual.

    One processor serves one ``generate`` call (it counts steps from its
    first call); a call that does not continue the previous one by a single
    token is a ``ValueError``.

    Args:
        temperature, top_k, top_p, min_p: as in :func:`gumbelkit.sampling.sample`,
            scalars or one value per row.
        seed: as in :func:`gumbelkit.integrations.transformers.generate` (an
            integer tensor or list of one seed per row is batch-invariant; an
            int or None is one seed for the batch, None drawn now from
            ``generator``, else the global torch RNG).
        generator: the source of drawn seeds.

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> from gumbelkit.integrations.transformers import generate
        >>> _ = torch.manual_seed(0)
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32,
        ...                                    vocab_size=64)).eval()
        >>> prompts = torch.tensor([[5, 6, 7], [8, 9, 10]])
        >>> processor = SamplingLogitsProcessor(temperature=0.8, top_p=0.9,
        ...                                     seed=torch.tensor([11, 12]))
        >>> hf = model.generate(prompts, do_sample=False, logits_processor=[processor],
        ...                     max_new_tokens=4, pad_token_id=0)
        >>> ours = generate(model, prompts, max_new_tokens=4, temperature=0.8, top_p=0.9,
        ...                 seed=torch.tensor([11, 12]))
        >>> torch.equal(hf, ours.sequences)
        True
    """

    def __init__(self, *, temperature: PerRow = 1.0, top_k: PerRow = None,
                 top_p: PerRow = None, min_p: PerRow = None, seed: GenerationSeed = None,
                 generator: torch.Generator | None = None) -> None:
        rows = len(seed) if isinstance(seed, (list, tuple, torch.Tensor)) \
            and not (isinstance(seed, torch.Tensor) and seed.dim() == 0) else None
        self.seed = fix_seed(seed, generator, rows)
        self.controls = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
        sample(torch.zeros(1 if rows is None else rows, 1), **self.controls,
               seed=self.seed, positions=0)  # every control checked before generation
        self._first_width: int | None = None
        self._last_width: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        width = input_ids.shape[1]
        if self._first_width is None:
            self._first_width = width
        elif width != self._last_width + 1:
            raise ValueError(f"a SamplingLogitsProcessor serves one generate call: it saw "
                             f"{self._last_width} columns, then {width}; create a new one for "
                             f"each call")
        self._last_width = width
        seed = self.seed
        if isinstance(seed, torch.Tensor):
            if seed.shape[0] != scores.shape[0]:
                raise ValueError(f"the processor has {seed.shape[0]} seeds but generate runs "
                                 f"{scores.shape[0]} rows")
            seed = seed.to(scores.device)
        tokens = sample(scores, **self.controls, seed=seed,
                        positions=width - self._first_width).tokens
        chosen = torch.full_like(scores, -math.inf)
        return chosen.scatter_(1, tokens[:, None], 0.0)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.controls.items() if v is not None)
        return f"{type(self).__name__}({shown})"
