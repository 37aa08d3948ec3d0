"""Token sampler for language-model decoding: temperature, top-k, top-p, min-p, per-row seeds."""

from .sampler import SamplerOutput, sample, sample_without_replacement

__all__ = ["SamplerOutput", "sample", "sample_without_replacement"]
