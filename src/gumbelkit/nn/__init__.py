"""Modules built from gumbelkit's ops."""

from .temperature import LearnableTemperature

__all__ = ["LearnableTemperature"]
