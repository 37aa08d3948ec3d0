"""Adapters to other libraries.

Each subpackage imports its library only when it is itself imported, so
``import gumbelkit`` never loads them: ``gumbelkit.integrations.transformers``
needs Hugging Face transformers (``pip install 'gumbelkit[hf]'``).
"""

__all__: list[str] = []
