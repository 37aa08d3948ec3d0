"""Fused CPU kernels and their dispatch; called only by gumbelkit's own modules."""

from ._lib import backend, library

__all__ = ["backend", "library"]
