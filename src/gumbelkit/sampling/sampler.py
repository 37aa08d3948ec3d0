"""Token sampling for language-model decoding: ``sample`` and ``sample_without_replacement``."""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch

from .._validate import check_floating, check_int_range
from ..kernels.sampler_reference import BAD_LOGIT, NO_MEMORY, NO_TOKEN, OVERFLOW, TOO_FEW
from ._controls import PerRow, SeedArg, controls

__all__ = ["SamplerOutput", "sample", "sample_without_replacement"]

_REASONS = {
    BAD_LOGIT: "NaN or +inf logits",
    NO_TOKEN: "no allowed token (every logit is -inf)",
    OVERFLOW: "logits / temperature overflowing float32",
    TOO_FEW: "fewer allowed tokens than requested after the filters",
}


class SamplerOutput(NamedTuple):
    """What the sampler drew.

    Attributes:
        tokens: int64, [B] (``sample``) or [B, n] (``sample_without_replacement``);
            -1 in rows that are not valid.
        logprobs: log-probability of each token under its row's filtered,
            temperature-scaled, renormalised distribution (float32, float64 for
            float64 logits; -inf in rows that are not valid), or None unless
            ``return_logprobs=True``.
        valid: bool, [B]: False for rows flagged by ``on_invalid="flag"``.
    """

    tokens: torch.Tensor
    logprobs: torch.Tensor | None
    valid: torch.Tensor


def _draw(logits: torch.Tensor, n: int, *, temperature: PerRow, top_k: PerRow, top_p: PerRow,
          min_p: PerRow, seed: SeedArg, positions: PerRow, generator: torch.Generator | None,
          return_logprobs: bool, on_invalid: str, validate: bool, name: str) -> SamplerOutput:
    check_floating(logits)
    if logits.dim() != 2 or logits.shape[1] == 0:
        raise ValueError(f"{name}: logits must have shape [batch, vocab] with vocab >= 1, got "
                         f"{tuple(logits.shape)}")
    if not isinstance(return_logprobs, bool):
        raise TypeError(f"return_logprobs must be a bool, got {return_logprobs!r} of type "
                        f"{type(return_logprobs).__name__}")
    if on_invalid not in ("raise", "flag"):
        raise ValueError(f"on_invalid must be 'raise' or 'flag', got {on_invalid!r}")
    if not validate and on_invalid != "flag":
        raise ValueError("validate=False reports invalid rows only through valid=False: pass "
                         "on_invalid='flag' with it")
    rows, vocab = logits.shape
    check_int_range(n, "n", 1, vocab)
    ctl, bad_controls = controls(rows, temperature=temperature, top_k=top_k, top_p=top_p,
                                 min_p=min_p, seed=seed, positions=positions,
                                 generator=generator, validate=validate, device=logits.device)
    tokens, lp, status = torch.ops.gumbelkit.sample(logits.detach(), *ctl, n, return_logprobs)
    if validate:
        _raise_for_status(status.cpu(), on_invalid, name)
    valid = (status == 0) & ~bad_controls
    tokens = torch.where(valid[:, None], tokens, -1)
    lp = torch.where(valid[:, None], lp, -math.inf) if return_logprobs else None
    return SamplerOutput(tokens, lp, valid)


def _raise_for_status(status: torch.Tensor, on_invalid: str, name: str) -> None:
    """The blocking mode's report: a ``MemoryError`` if the kernel could not
    allocate, and with ``on_invalid="raise"`` a ``ValueError`` naming the bad rows."""
    if bool((status == NO_MEMORY).any()):
        raise MemoryError(f"{name}: the fused sampler could not allocate its candidate buffers")
    if on_invalid == "raise" and bool((status != 0).any()):
        parts = []
        for code, reason in _REASONS.items():
            bad = (status == code).nonzero()[:, 0].tolist()
            if bad:
                more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
                parts.append(f"rows {bad[:5]}{more}: {reason}")
        raise ValueError(f"{name}: invalid rows ({'; '.join(parts)}); pass on_invalid='flag' to "
                         f"sample the other rows and mark these valid=False")


def sample(logits: torch.Tensor, *, temperature: PerRow = 1.0, top_k: PerRow = None,
           top_p: PerRow = None, min_p: PerRow = None, seed: SeedArg = None,
           positions: PerRow = None, generator: torch.Generator | None = None,
           return_logprobs: bool = False,
           on_invalid: Literal["raise", "flag"] = "raise",
           validate: bool = True) -> SamplerOutput:
    """One token per row from ``softmax(logits / T)`` after top-k, top-p and min-p.

    With ``z = logits / T`` (float32; float64 for float64 logits), the filters
    apply in the order of Hugging Face transformers and vLLM, each keeping
    every token tied at its boundary:

    * top-k: keep ``z_i >= v_k``, the k-th largest z;
    * top-p: keep ``i`` when the probability (renormalised over the top-k
      set) of the tokens with a strictly larger z is below ``p``, so the
      nucleus is the smallest set of top tokens with mass >= ``p``;
    * min-p: keep ``p_i >= min_p * max_j p_j``.

    The token is ``argmax_{i kept} (z_i + G_i)`` (Gumbel-max; Gumbel 1954,
    Maddison et al. 2014), an exact sample of the renormalised distribution.
    ``G_i`` is the counter-based Gumbel noise of (row seed, row key, token id):
    with a per-row seed the row key is the row's position, so a seeded
    request's token depends only on its own logits, controls, seed and
    position, never on its batch, its row index or other rows' filters.

    Args:
        logits: [B, V] floating tensor; finite or -inf (masked) entries.
        temperature: >= 0 and finite, scalar or [B]; 0 = greedy (the first
            largest logit, filters ignored).
        top_k: int or int tensor [B]; <= 0 or None switches it off.
        top_p: in (0, 1], scalar or [B]; 1 or None switches it off.
        min_p: in [0, 1], scalar or [B]; 0 or None switches it off.
        seed: None, an int (one seed for the batch; rows keyed by row index
            and position), an integer tensor [B] (per-request seeds), or a
            list of int/None per row (None rows use a seed drawn from
            ``generator``, else the global torch RNG).
        positions: int or int tensor [B] in [0, 2**31), the decoding step of
            each row (default 0); part of the noise key.
        generator: the source of the shared seed of rows without their own
            (``seed=None``, or the None entries of a seed list); with an int
            or tensor ``seed`` it is a ``ValueError``.
        return_logprobs: also return the log-probability of each token under
            its row's filtered distribution.
        on_invalid: "raise" (``ValueError`` naming the rows with NaN/+inf
            logits, no allowed token or overflowing ``logits / T``) or "flag"
            (those rows get token -1 and ``valid=False``; the others are drawn).
        validate: True (default) checks per-row controls and reads the rows'
            status back to raise; False never synchronizes with the host, so
            the call traces with ``torch.compile(fullgraph=True)`` and can be
            captured in a CUDA graph: it requires ``on_invalid="flag"``, and
            rows with out-of-range per-row controls (or whose buffers the kernel
            could not allocate) come back as ``valid=False`` like invalid rows.
            Shapes and types are checked in both modes.

    Runs the fused CPU kernel for float32/float16/bfloat16 logits on the CPU,
    the Triton kernel for CUDA logits (when Triton is installed), else the
    pure-PyTorch path; all give the same tokens (see ``docs/sampling.md`` for
    the one top-p boundary where summation order can matter).

    Example:
        >>> logits = torch.randn(3, 100)
        >>> out = gumbelkit.sampling.sample(logits, temperature=0.8, top_k=50, top_p=0.9,
        ...                                 seed=torch.tensor([11, 12, 13]),
        ...                                 positions=torch.tensor([5, 9, 0]))
        >>> out.tokens.shape, bool(out.valid.all())
        (torch.Size([3]), True)
    """
    out = _draw(logits, 1, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                seed=seed, positions=positions, generator=generator,
                return_logprobs=return_logprobs, on_invalid=on_invalid, validate=validate,
                name="sample")
    lp = out.logprobs[:, 0] if out.logprobs is not None else None
    return SamplerOutput(out.tokens[:, 0], lp, out.valid)


def sample_without_replacement(logits: torch.Tensor, n: int, *, temperature: PerRow = 1.0,
                               top_k: PerRow = None, top_p: PerRow = None,
                               min_p: PerRow = None, seed: SeedArg = None,
                               positions: PerRow = None,
                               generator: torch.Generator | None = None,
                               return_logprobs: bool = False,
                               on_invalid: Literal["raise", "flag"] = "raise",
                               validate: bool = True) -> SamplerOutput:
    """``n`` distinct tokens per row, in sampling order (Gumbel-top-k).

    The indices of the ``n`` largest ``z_i + G_i`` over the kept tokens (the
    filters of :func:`sample`) are an ordered sample without replacement of
    the Plackett-Luce model ``P(i_1..i_n) = prod_j p_{i_j} / (1 - sum_{l<j}
    p_{i_l})`` (Vieira 2014; Kool et al. 2019). The first token equals what
    :func:`sample` draws with the same arguments. A row with fewer than ``n``
    kept tokens is invalid (see ``on_invalid``). Greedy rows give the ``n``
    largest logits.

    Args:
        logits: [B, V] as in :func:`sample`.
        n: tokens per row, 1 <= n <= V.
        temperature, top_k, top_p, min_p, seed, positions, generator,
        return_logprobs, on_invalid, validate: as in :func:`sample`; ``logprobs[b, j]``
            is the log-probability of token ``j`` under the row's filtered
            distribution (not the conditional of the j-th draw).

    Returns:
        ``SamplerOutput`` with tokens [B, n].

    Example:
        >>> out = gumbelkit.sampling.sample_without_replacement(torch.randn(2, 10), 3, seed=0)
        >>> out.tokens.shape
        torch.Size([2, 3])
    """
    return _draw(logits, n, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                 seed=seed, positions=positions, generator=generator,
                 return_logprobs=return_logprobs, on_invalid=on_invalid, validate=validate,
                 name="sample_without_replacement")
