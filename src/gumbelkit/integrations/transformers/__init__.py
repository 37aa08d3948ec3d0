"""Hugging Face transformers adapters (``pip install 'gumbelkit[hf]'``).

* :func:`generate`: a sampling loop over a model's forward and KV cache with
  every decoding control per request and per-request, batch-invariant seeds.
* :class:`SamplingLogitsProcessor`: the same tokens inside ``model.generate``
  (greedy search picks gumbelkit's sample), for streamers and stopping criteria.

See ``docs/decoding.md``.
"""

from ._generate import GenerationOutput, generate
from ._logits_processor import SamplingLogitsProcessor

__all__ = [
    "GenerationOutput",
    "SamplingLogitsProcessor",
    "generate",
]
