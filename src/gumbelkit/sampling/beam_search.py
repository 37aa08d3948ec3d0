"""Stochastic beam search: ``k`` distinct sequences drawn without replacement.

Kool, van Hoof & Welling, "Stochastic Beams and Where to Find Them: The
Gumbel-Top-k Trick for Sampling Sequences Without Replacement", ICML 2019.

Every complete sequence ``y`` has a log-probability ``phi(y)`` (the sum of its
tokens' log-probabilities under the filtered, temperature-scaled step
distributions) and a perturbed log-probability ``G(y) ~ Gumbel(phi(y))``,
independent across sequences. The ``k`` sequences with the largest ``G(y)``
are a sample without replacement (Gumbel-top-k), in sampling order. The
search builds these Gumbels top-down: a partial sequence's ``G`` is the
largest ``G`` of its completions, so the root's is ``Gumbel(0)`` and a node's
children get Gumbels conditioned on their maximum being the parent's ``G``
(``_gumbels_with_maximum``). Beam search with the perturbed scores then keeps
exactly the ``k`` best complete sequences, using ``k`` beams and ``max_len``
model calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from .. import _rng
from .._validate import check_floating, check_int_range, check_rows
from ..kernels import ops
from ..kernels.sampler_reference import _top_p_keep
from ._controls import MAX_POSITION, PerRow, controls

__all__ = ["BeamSearchOutput", "StepFn", "beam_estimate", "stochastic_beam_search"]

# Philox streams of the search's noise (the estimators use 0-2): the children's
# Gumbels, and the root's Gumbel(0).
STREAM_CHILDREN = 3
STREAM_ROOT = 4

_LOG_HALF = -math.log(2.0)

StepFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
"""``step_fn(tokens, parents) -> logits``: next-token logits for a batch of prefixes.

``tokens`` is int64 ``[N, P + t]`` (the prefix and the ``t`` tokens chosen so
far, one row per beam); ``parents`` is None on the first call (``N = B``, the
prefixes themselves) and afterwards an int64 ``[N]`` tensor: row ``i``
extends row ``parents[i]`` of the previous call by the token ``tokens[i, -1]``.
A step function without state reads ``tokens``; one with a cache reorders it
by ``parents`` and feeds only the last token. Returns floating ``[N, V]``.
"""


class BeamSearchOutput(NamedTuple):
    """What :func:`stochastic_beam_search` drew, best perturbed score first.

    Attributes:
        sequences: int64 ``[B, k, P + L]``: the prefix and ``L`` generated
            tokens (``L <= max_len``: the search stops once every beam is
            finished); a sequence that ended with ``eos_token_id`` is padded
            with ``pad_token_id`` after it.
        lengths: int64 ``[B, k]``: generated tokens of each sequence, its EOS
            included.
        logprobs: float64 ``[B, k]``: ``log p(y)``, the sum over the generated
            tokens of their log-probabilities under the step distributions the
            search samples from (temperature and filters applied).
        perturbed: float64 ``[B, k]``: ``G(y) ~ Gumbel(log p(y))``, descending.
        threshold: float64 ``[B]``: ``kappa``, the ``(k+1)``-th largest
            perturbed log-probability over all sequences (``-inf`` when exactly
            ``k`` sequences have nonzero probability); see :func:`beam_estimate`.
    """

    sequences: torch.Tensor
    lengths: torch.Tensor
    logprobs: torch.Tensor
    perturbed: torch.Tensor
    threshold: torch.Tensor


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(a))`` for ``a <= 0``, accurate everywhere (Maechler 2012):
    ``log(-expm1(a))`` near 0, ``log1p(-exp(a))`` below ``-log 2``."""
    return torch.where(a > _LOG_HALF, torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def _gumbels_with_maximum(gumbels: torch.Tensor, maximum: torch.Tensor) -> torch.Tensor:
    """Independent Gumbels along the last axis turned into Gumbels conditioned on
    their maximum being ``maximum`` (one per row, broadcast as ``[..., 1]``).

    With ``Z = max_i g_i``, ``G_i = -log(exp(-T) - exp(-Z) + exp(-g_i))``
    (Kool et al. 2019), computed in the stable form of their appendix so that no
    exponent overflows: ``v_i = T - g_i + log1mexp(g_i - Z)`` and
    ``G_i = T - max(0, v_i) - log1p(exp(-|v_i|))``. The largest entry becomes
    exactly ``T``, every entry is ``<= T``, and ``-inf`` entries stay ``-inf``.
    Rows whose every entry is ``-inf``, or with ``T = -inf``, are the caller's
    to mask.
    """
    z = gumbels.max(-1, keepdim=True).values
    v = maximum - gumbels + _log1mexp(gumbels - z)
    return maximum - v.clamp(min=0) - torch.log1p(torch.exp(-v.abs()))


def _log_inclusion(d: torch.Tensor) -> torch.Tensor:
    """``log q = log(1 - exp(-exp(d)))`` with ``d = log p(y) - kappa``: the log of
    ``P(Gumbel(log p) > kappa)``. Below ``d = -10`` the series ``d - x/2 + x**2/24``
    (``x = exp(d)``, error below ``x**4 / 2880``) keeps it finite where ``exp(d)``
    underflows; above, ``log(-expm1(-x))`` is accurate (0 at ``d = +inf``)."""
    x = torch.exp(d)
    return torch.where(d < -10, d - x / 2 + x * x / 24, torch.log(-torch.expm1(-x)))


def _space_size(vocab: int, max_len: int, cap: int) -> int:
    """``min(vocab ** max_len, cap)`` without forming a huge power."""
    size = 1
    for _ in range(max_len):
        size *= vocab
        if size >= cap:
            return cap
    return size


def _resolve_seeds(seed: int | torch.Tensor | None, generator: torch.Generator | None,
                   batch: int, device: torch.device) -> tuple[torch.Tensor, bool]:
    """Every batch row's 64-bit seed, and whether the rows have their own seeds."""
    if isinstance(seed, torch.Tensor) and tuple(seed.shape) != (batch,):
        _rng.check_seed_source(seed, generator)
        raise ValueError(f"a seed tensor must have shape [{batch}] (one seed per batch row), "
                         f"got shape {tuple(seed.shape)}")
    resolved = _rng.resolve_seed(seed, generator)
    if resolved.per_row is not None:
        return resolved.per_row.to(device), True
    return torch.full((batch,), _rng.as_int64(resolved.scalar), dtype=torch.int64,
                      device=device), False


class _StepDistribution:
    """The per-step filtered log-probabilities of :func:`gumbelkit.sampling.sample`.

    With ``z = fl32(logits / T)`` (float64 for float64 logits) and ``m = max z``:
    top-k keeps ``z >= v_k`` (ties kept), top-p the tie-inclusive nucleus,
    min-p ``z - m >= log(min_p)``; the kept tokens get ``(z - m) - log sum_kept
    exp(z - m)`` (float64), the others ``-inf``.
    """

    def __init__(self, ctl, k: int) -> None:
        self.rows = {1: ctl, k: type(ctl)(*(c.repeat_interleave(k) for c in ctl))}
        self.use_top_k = bool((ctl.top_k > 0).any())
        self.use_top_p = bool((ctl.top_p < 1).any())
        self.use_min_p = bool((ctl.log_min_p > -math.inf).any())

    def __call__(self, logits: torch.Tensor, beams: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``[N, V]`` and a bool ``[N]`` of rows with bad logits
        (NaN or +inf, overflowing ``logits / T``, or no token kept)."""
        ctl = self.rows[beams]
        cd = _rng.noise_dtype(logits.dtype)
        x = logits.detach().to(cd)
        vocab = x.shape[1]
        bad = torch.isnan(x).any(-1) | (x == math.inf).any(-1)
        z = x / ctl.temperature.to(cd)[:, None]
        m = z.max(-1).values
        bad |= ~torch.isfinite(m)
        z = torch.where(bad[:, None], 0.0, z)
        m = torch.where(bad, 0.0, m)
        keep = z > -math.inf
        if self.use_top_k:
            active = (ctl.top_k > 0) & (ctl.top_k < vocab)
            k_max = int(min(vocab, int(ctl.top_k.max())))
            v_k = z.topk(k_max, -1).values.gather(1, (ctl.top_k.clamp(1, k_max) - 1)[:, None])
            keep &= ~active[:, None] | (z >= v_k)
        if self.use_top_p:
            keep &= (ctl.top_p >= 1)[:, None] | _top_p_keep(z, keep, m, ctl.top_p)
        shifted = z.double() - m.double()[:, None]
        if self.use_min_p:
            keep &= shifted >= ctl.log_min_p[:, None]
        log_mass = torch.where(keep, torch.exp(shifted), 0.0).sum(-1, keepdim=True).log()
        return torch.where(keep, shifted - log_mass, -math.inf), bad


def _check_int(value: int | None, name: str) -> None:
    if value is not None:
        check_int_range(value, name, 0)


def _token_list(value: int | Sequence[int] | torch.Tensor | None, name: str) -> list[int]:
    """None, one token id, a sequence of them or a 0-d/1-D integer tensor (as
    transformers' configs and ``generate`` take them) as a list of ids >= 0."""
    if isinstance(value, torch.Tensor):
        if value.dtype.is_floating_point or value.dtype.is_complex \
                or value.dtype == torch.bool or value.dim() > 1:
            raise ValueError(f"{name} must be an int, a sequence of ints or a 0-d or 1-D "
                             f"integer tensor, got {value.dtype} of shape {tuple(value.shape)}")
        value = value.reshape(-1).tolist()
    values = [] if value is None else [value] if isinstance(value, int) else list(value)
    for v in values:
        check_int_range(v, name, 0)
    return values


def stochastic_beam_search(step_fn: StepFn, prefix: torch.Tensor, k: int, max_len: int, *,
                           eos_token_id: int | Sequence[int] | torch.Tensor | None = None,
                           pad_token_id: int | None = None,
                           temperature: PerRow = 1.0, top_k: PerRow = None,
                           top_p: PerRow = None, min_p: PerRow = None,
                           seed: int | torch.Tensor | None = None,
                           generator: torch.Generator | None = None) -> BeamSearchOutput:
    """``k`` distinct sequences per prefix, without replacement, from ``step_fn``'s model.

    The model's distribution over continuations of at most ``max_len`` tokens
    is ``p(y) = prod_t p_t(y_t | prefix, y_<t)``, with every step distribution
    filtered as in :func:`gumbelkit.sampling.sample` (temperature, then top-k,
    top-p, min-p); a sequence ends at ``eos_token_id`` or after ``max_len``
    tokens. Every sequence gets ``G(y) ~ Gumbel(log p(y))`` independently, and
    the result is the ``k`` sequences with the largest ``G(y)``, best first: a
    sample without replacement (Gumbel-top-k; Kool et al. 2019),
    so ``sequences[:, 0]`` is an exact draw from ``p``. The search samples the
    Gumbels top-down: the root's is ``Gumbel(0)``, and each expanded beam's
    children get Gumbels with location ``phi(parent) + log p_t(token)``
    conditioned on their maximum being the parent's ``G`` (the truncated
    Gumbels, in the numerically stable form of the paper's appendix); every
    step keeps the ``k`` candidates with the largest ``G``. A finished beam
    (its last token is EOS) is one candidate: itself, with its ``G`` and
    ``log p`` unchanged, so sequences of different lengths compete.

    Noise (see docs/decoding.md): Philox stream 3 for the children of step
    ``t`` (0-based), one row per beam ``j`` (its rank at step ``t - 1``) and
    one column per token, with row key ``2**32 * t + j`` for rows with their
    own seed (a seed tensor), else ``2**32 * t + b * k + j`` for batch row
    ``b``; the root's Gumbel is column 0 of stream 4 with row key 0 (own
    seed) or ``b``. So a batch row with its own seed gets the same sequences
    alone or in any batch, and the same seed gives the same result.

    Args:
        step_fn: ``step_fn(tokens, parents) -> logits`` (see :data:`StepFn`).
        prefix: int64 ``[B, P]``, the prefixes (``P >= 0``).
        k: sequences per prefix, ``1 <= k <= V ** max_len`` (``V`` from the
            first logits, checked before any noise is drawn); a batch row
            with fewer than ``k`` sequences of nonzero probability (masks,
            filters, EOS) is a ``ValueError`` after the search.
        max_len: tokens to generate at most, in ``[0, 2**31)``; 0 returns the
            prefixes (the one sequence of no tokens, so ``k = 1``, with the
            root's ``Gumbel(0)`` as its score) without calling ``step_fn``.
        eos_token_id: the token that ends a sequence (in ``[0, V)``, checked
            against the first logits before any noise is drawn), a sequence
            or 0-d/1-D integer tensor of such tokens, or None.
        pad_token_id: the token written after a sequence's end in
            ``sequences`` (>= 0; default the first ``eos_token_id``, else 0);
            ``step_fn`` is given the finished sequence's EOS instead.
        temperature: > 0 and finite, scalar or ``[B]``.
        top_k, top_p, min_p: as in :func:`gumbelkit.sampling.sample`, scalar or
            ``[B]``, applied at every step.
        seed: an int (one seed for the batch), an integer tensor ``[B]`` (one
            per batch row) or None (drawn from ``generator``, else the global
            torch RNG).
        generator: the source of the seed when ``seed`` is None.

    Returns:
        :class:`BeamSearchOutput`; ``logprobs`` and ``threshold`` feed
        :func:`beam_estimate`.

    Example:
        >>> table = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
        >>> step = lambda tokens, parents: table[tokens[:, -1]]  # a bigram model
        >>> out = gumbelkit.sampling.stochastic_beam_search(
        ...     step, torch.tensor([[4]]), k=3, max_len=2, seed=0)
        >>> out.sequences.shape, len({tuple(s) for s in out.sequences[0].tolist()})
        (torch.Size([1, 3, 3]), 3)
    """
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable, got {type(step_fn).__name__}")
    if not isinstance(prefix, torch.Tensor):
        raise TypeError(f"prefix must be a torch.Tensor, got {type(prefix).__name__}")
    if prefix.dtype.is_floating_point or prefix.dtype.is_complex or prefix.dtype == torch.bool:
        raise ValueError(f"prefix must have an integer dtype, got {prefix.dtype}")
    if prefix.dim() != 2 or prefix.shape[0] == 0:
        raise ValueError(f"prefix must have shape [batch, length] with batch >= 1, got "
                         f"{tuple(prefix.shape)}")
    check_int_range(k, "k", 1)
    check_int_range(max_len, "max_len", 0, MAX_POSITION - 1)
    eos = _token_list(eos_token_id, "eos_token_id")
    _check_int(pad_token_id, "pad_token_id")
    batch, device = prefix.shape[0], prefix.device
    if batch * k >= 2**32:
        raise ValueError(f"batch * k must be below 2**32 (the noise's row key), got "
                         f"{batch} * {k}")
    ctl, _ = controls(batch, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                      seed=0, positions=None, generator=None, device=device)
    check_rows(ctl.temperature, ctl.temperature > 0, "temperature",
               "> 0 and finite (at temperature 0 a prefix has one continuation)")
    seeds, own_seeds = _resolve_seeds(seed, generator, batch, device)
    pad = pad_token_id if pad_token_id is not None else (eos[0] if eos else 0)
    eos_ids = torch.tensor(eos, dtype=torch.int64, device=device)
    step_distribution = _StepDistribution(ctl, k)

    tokens = prefix.to(torch.int64)
    if max_len == 0:
        # one sequence (no tokens) whatever the vocabulary: step_fn is not called
        if k > 1:
            raise ValueError(f"k must lie in [1, 1]: with max_len=0 the only sequence is "
                             f"the empty continuation, got k={k}")
    else:
        logits = _call(step_fn, tokens, None, batch, None, 0)
        vocab = logits.shape[1]
        space = _space_size(vocab, max_len, k + 1)
        if k > space:
            raise ValueError(f"k must lie in [1, {space}]: a vocabulary of {vocab} tokens has "
                             f"{space} sequences of at most max_len={max_len} tokens, got "
                             f"k={k}")
        outside = [i for i in eos if i >= vocab]
        if outside:
            raise ValueError(f"eos_token_id must lie in [0, {vocab}) (step_fn's vocabulary), "
                             f"got {outside[0]}")

    shared = None if own_seeds else _rng.Seed(scalar=int(seeds[0]) & 0xFFFFFFFFFFFFFFFF)

    def noise(rows: int, cols: int, keys: torch.Tensor, stream: int) -> torch.Tensor:
        seed_arg = shared or _rng.Seed(per_row=seeds.repeat_interleave(rows // batch))
        return ops.draw_noise("gumbel", (rows,), cols, seed_arg, torch.float64, device,
                              row_keys=keys, stream=stream)

    batch_rows = torch.arange(batch, dtype=torch.int64, device=device)
    root_keys = torch.zeros_like(batch_rows) if own_seeds else batch_rows
    perturbed = noise(batch, 1, root_keys, STREAM_ROOT)          # [B, 1]
    logp = torch.zeros(batch, 1, dtype=torch.float64, device=device)
    finished = torch.zeros(batch, 1, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, 1, dtype=torch.int64, device=device)
    threshold = torch.full((batch,), -math.inf, dtype=torch.float64, device=device)
    beams = 1
    if max_len == 0:
        return BeamSearchOutput(tokens[:, None, :], lengths, logp, perturbed, threshold)
    for step in range(max_len):
        step_logp, bad = step_distribution(logits, beams)
        live = (perturbed > -math.inf) & ~finished
        _raise_bad_rows(bad.view(batch, beams) & live, step)
        slots = torch.arange(beams, dtype=torch.int64, device=device)
        row_ids = slots[None, :] if own_seeds else batch_rows[:, None] * k + slots[None, :]
        keys = (row_ids + (step << 32)).expand(batch, beams).reshape(-1)
        gumbels = noise(batch * beams, vocab, keys, STREAM_CHILDREN).view(batch, beams, vocab)
        child_logp = logp[..., None] + step_logp.view(batch, beams, vocab)
        child = _gumbels_with_maximum(child_logp + gumbels, perturbed[..., None])
        child = torch.where(live[..., None], child, -math.inf)
        # a finished beam's one candidate is itself, in column 0 of its block
        stay = torch.zeros(vocab, dtype=torch.bool, device=device)
        stay[0] = True
        kept_self = finished[..., None] & stay
        child = torch.where(kept_self, perturbed[..., None], child)
        child_logp = torch.where(kept_self, logp[..., None], child_logp)
        candidates = child.view(batch, beams * vocab)
        if candidates.shape[1] < k + 1:
            candidates = torch.nn.functional.pad(candidates, (0, k + 1 - candidates.shape[1]),
                                                 value=-math.inf)
        best, index = candidates.topk(k + 1, -1)
        threshold = torch.maximum(threshold, best[:, k])
        perturbed, index = best[:, :k], index[:, :k]
        valid = perturbed > -math.inf
        index = torch.where(valid, index, 0)
        parent = index // vocab
        token = index % vocab
        parent_finished = finished.gather(1, parent)
        logp = torch.where(valid, child_logp.view(batch, beams * vocab).gather(1, index),
                           -math.inf)
        lengths = lengths.gather(1, parent) + (valid & ~parent_finished).long()
        finished = parent_finished | ~valid | (valid & torch.isin(token, eos_ids))
        parents = (batch_rows[:, None] * beams + parent).view(-1)
        tokens = tokens[parents]
        # a finished beam feeds its EOS again: whatever pad_token_id is, step_fn
        # only ever sees tokens of its vocabulary (its logits are ignored)
        last = tokens[:, -1].view(batch, k) if tokens.shape[1] > 0 else token
        token = torch.where(parent_finished, last, token)
        tokens = torch.cat([tokens, token.view(-1, 1)], 1)
        beams = k
        if step + 1 == max_len or bool(finished.all()):
            break
        logits = _call(step_fn, tokens, parents, batch * k, vocab, step + 1)

    found = (perturbed > -math.inf).sum(-1)
    short = found < k
    if bool(short.any()):
        row = int(short.nonzero()[0, 0])
        raise ValueError(f"batch row {row} has only {int(found[row])} sequences of nonzero "
                         f"probability (after the filters, masks and eos_token_id), fewer than "
                         f"k={k}")
    sequences = tokens.view(batch, k, -1)
    ended = (torch.arange(sequences.shape[2], device=device) - prefix.shape[1]
             >= lengths[..., None])
    sequences = torch.where(ended, pad, sequences)
    return BeamSearchOutput(sequences, lengths, logp, perturbed, threshold)


def _call(step_fn: StepFn, tokens: torch.Tensor, parents: torch.Tensor | None, rows: int,
          vocab: int | None, step: int) -> torch.Tensor:
    """``step_fn``'s logits, checked: ``[rows, vocab]`` (the first call sets ``vocab``)."""
    logits = step_fn(tokens, parents)
    if not isinstance(logits, torch.Tensor) or not logits.dtype.is_floating_point:
        got = logits.dtype if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"step_fn must return a floating tensor of logits, got {got} at "
                         f"step {step}")
    if logits.dim() != 2 or logits.shape[0] != rows or logits.shape[1] == 0 \
            or vocab not in (None, logits.shape[1]):
        width = "vocab" if vocab is None else vocab
        raise ValueError(f"step_fn must return logits of shape [{rows}, {width}] at step {step} "
                         f"(one row per beam), got {tuple(logits.shape)}")
    return logits


def _raise_bad_rows(bad: torch.Tensor, step: int) -> None:
    """``ValueError`` naming the first live beam whose logits cannot be sampled."""
    if bool(bad.any()):
        row, beam = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"step_fn's logits at step {step} for batch row {row}, beam {beam} "
                         f"have NaN or +inf entries, no allowed token (every logit -inf "
                         f"after the filters) or overflow float32 when divided by the "
                         f"temperature")


def beam_estimate(values: torch.Tensor, logprobs: torch.Tensor, threshold: torch.Tensor, *,
                  normalised: bool = False) -> torch.Tensor:
    """Estimate ``E_{y ~ p}[f(y)]`` from a stochastic beam search's sample.

    Kool et al. 2019 (after the priority sampling of Duffield et al. 2007):
    with ``kappa`` the ``(k+1)``-th largest perturbed log-probability and
    ``q_kappa(y) = P(G(y) > kappa) = 1 - exp(-exp(log p(y) - kappa))``,

    * unbiased: ``sum_{y in S} p(y) / q_kappa(y) * f(y)``;
    * normalised (``normalised=True``, lower variance, biased for small k but
      consistent): ``sum_{y in S} w(y) f(y) / sum_{y in S} w(y)`` with
      ``w(y) = p(y) / q_kappa(y)``.

    The weights are formed in log space (``log q``, with a series where
    ``exp(log p - kappa)`` underflows), so they stay finite for any finite
    ``log p`` and ``kappa``; with
    ``kappa = -inf`` (the sample is the whole support) ``q = 1`` and the
    estimate is the exact expectation.

    Args:
        values: ``f(y)`` for each sequence, floating ``[..., k]``.
        logprobs: ``log p(y)``, ``[..., k]`` (``BeamSearchOutput.logprobs``);
            finite.
        threshold: ``kappa``, ``[...]`` (``BeamSearchOutput.threshold``); a
            float or ``-inf``.
        normalised: divide by the sum of the weights.

    Returns:
        ``[...]``, float64 (or the values' dtype if wider).

    Example:
        >>> lp = torch.tensor([[-0.5, -1.2]], dtype=torch.float64)
        >>> gumbelkit.sampling.beam_estimate(torch.tensor([[1.0, 1.0]]), lp,
        ...                                  torch.tensor([-2.0]), normalised=True)
        tensor([1.], dtype=torch.float64)
    """
    check_floating(values, "values")
    check_floating(logprobs, "logprobs")
    check_floating(threshold, "threshold")
    if logprobs.dim() == 0 or values.shape != logprobs.shape \
            or threshold.shape != logprobs.shape[:-1]:
        raise ValueError(f"values and logprobs must share a shape [..., k] and threshold be "
                         f"[...], got values {tuple(values.shape)}, logprobs "
                         f"{tuple(logprobs.shape)}, threshold {tuple(threshold.shape)}")
    lp = logprobs.detach().double()
    if bool((~torch.isfinite(lp)).any()):
        raise ValueError("logprobs must be finite (the log-probabilities of sampled sequences)")
    kappa = threshold.detach().double()
    if bool(torch.isnan(kappa).any() or (kappa == math.inf).any()):
        raise ValueError("threshold must be a float or -inf, got NaN or +inf")
    weights = torch.exp(lp - _log_inclusion(lp - kappa[..., None]))
    dtype = torch.promote_types(values.dtype, torch.float64)
    total = (weights * values.to(dtype)).sum(-1)
    return total / weights.sum(-1) if normalised else total
