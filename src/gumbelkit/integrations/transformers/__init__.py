"""Hugging Face transformers adapters (``pip install 'gumbelkit[hf]'``).

Importing this package does not import transformers: the adapters call the
model object they are given.
"""

from ._beam import stochastic_beam_search

__all__ = ["stochastic_beam_search"]
