"""Hugging Face transformers adapters (``pip install 'gumbelkit[hf]'``).

* :func:`generate`: a sampling loop over a model's forward and KV cache with
  every decoding control per request and per-request, batch-invariant seeds.
* :class:`SamplingLogitsProcessor`: the same tokens inside ``model.generate``
  (greedy search picks gumbelkit's sample), for streamers and stopping criteria.
* :func:`stochastic_beam_search`: k distinct sequences drawn without
  replacement from the model's sequence distribution (Kool et al. 2019), on the
  model's KV cache.

See ``docs/decoding.md``.
"""

from ._beam import stochastic_beam_search
from ._generate import GenerationOutput, generate
from ._logits_processor import SamplingLogitsProcessor

__all__ = [
    "GenerationOutput",
    "SamplingLogitsProcessor",
    "generate",
    "stochastic_beam_search",
]
