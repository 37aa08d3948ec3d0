"""Token sampler for language-model decoding: temperature, top-k, top-p, min-p, per-row seeds;
stochastic beam search for sequences without replacement."""

from .beam_search import BeamSearchOutput, StepFn, beam_estimate, stochastic_beam_search
from .sampler import SamplerOutput, sample, sample_without_replacement

__all__ = ["BeamSearchOutput", "SamplerOutput", "StepFn", "beam_estimate", "sample",
           "sample_without_replacement", "stochastic_beam_search"]
