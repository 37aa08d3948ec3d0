"""The token sampler's PyTorch reference (any device): the body of ``gumbelkit::sample``.

For every row, with ``z = fl32(x / T)``, ``m = max z`` and ``w = exp(z - m)``
in float64: top-k keeps ``z >= v_k`` (the k-th largest z, ties kept); top-p
keeps a token when the weight of the kept tokens with a strictly larger z is
below ``p * S`` (S the kept weight, summed in sorted order); min-p keeps
``z - m >= log(min_p)``; the token is ``argmax (z + G)`` over the kept set,
with ``G`` the Gumbel noise of (row seed, row key, token id), ties to the
lowest index. Temperature 0 is greedy. float64 logits are computed in float64.
"""

from __future__ import annotations

import math

import torch

from .. import _rng

# Row status codes, shared with csrc/sampler.c (NO_MEMORY comes from the kernel only).
OK, BAD_LOGIT, NO_TOKEN, OVERFLOW, TOO_FEW, NO_MEMORY = 0, 1, 2, 3, 4, 5


def _top_p_keep(z: torch.Tensor, keep: torch.Tensor, m: torch.Tensor,
                top_p: torch.Tensor) -> torch.Tensor:
    """Tie-inclusive nucleus: mass of strictly larger kept tokens < p * S."""
    zs, order = torch.where(keep, z, -math.inf).sort(dim=-1, descending=True, stable=True)
    w = torch.exp(zs.double() - m.double()[:, None])
    total = w.cumsum(-1)
    before = torch.cat([torch.zeros_like(total[:, :1]), total[:, :-1]], -1)
    group_start = torch.searchsorted(-zs.contiguous(), -zs.contiguous(), side="left")
    keep_sorted = before.gather(1, group_start) < top_p[:, None] * total[:, -1:]
    return torch.empty_like(keep).scatter_(1, order, keep_sorted)


def sample_rows(x: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
                top_p: torch.Tensor, log_min_p: torch.Tensor, seeds: torch.Tensor,
                keys: torch.Tensor, n: int, logprobs: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Tokens [B, n], log-probabilities [B, n] (or None) and status [B] (int8, 0 = ok).

    The controls are the [B] tensors of ``sampling._controls.Controls``.
    """
    device = x.device
    cd = _rng.noise_dtype(x.dtype)
    x = x.detach().to(cd)
    rows, vocab = x.shape
    temperature = temperature.to(device, cd)
    top_k, top_p, log_min_p = top_k.to(device), top_p.to(device), log_min_p.to(device)

    status = torch.zeros(rows, dtype=torch.int8, device=device)
    bad = torch.isnan(x).any(-1) | (x == math.inf).any(-1)
    status[(x > -math.inf).sum(-1) == 0] = NO_TOKEN
    status[bad] = BAD_LOGIT
    x = torch.where(bad[:, None], 0.0, x)
    greedy = temperature == 0
    z = x / torch.where(greedy, 1.0, temperature)[:, None]
    m = z.max(-1).values
    status[(status == OK) & torch.isinf(m)] = OVERFLOW
    failed = status != OK
    z = torch.where(failed[:, None], 0.0, z)
    m = torch.where(failed, 0.0, m)
    finite = z > -math.inf

    keep = finite.clone()
    active_k = (top_k > 0) & (top_k < vocab)
    if bool(active_k.any()):
        k_max = int(top_k[active_k].max())
        v_k = z.topk(k_max, -1).values.gather(1, (top_k.clamp(1, k_max) - 1)[:, None])
        keep &= ~active_k[:, None] | (z >= v_k)
    active_p = top_p < 1
    if bool(active_p.any()):
        keep &= ~active_p[:, None] | _top_p_keep(z, keep, m, top_p)
    keep &= (z.double() - m.double()[:, None]) >= log_min_p[:, None]
    keep = torch.where(greedy[:, None], finite, keep)
    status[(status == OK) & (keep.sum(-1) < n)] = TOO_FEW

    g = _rng.noise("gumbel", (rows,), vocab, _rng.Seed(per_row=seeds), cd, device,
                   row_keys=keys)
    score = torch.where(keep, torch.where(greedy[:, None], z, z + g), -math.inf)
    if n == 1:
        tokens = score.argmax(-1, keepdim=True)
    else:
        tokens = score.sort(dim=-1, descending=True, stable=True).indices[:, :n]
    ok = (status == OK)[:, None]
    lp = None
    if logprobs:
        zt, md = z.gather(1, tokens).double(), m.double()[:, None]
        mass = torch.where(keep, torch.exp(z.double() - md), 0.0).sum(-1, keepdim=True)
        ties = (z == m[:, None]).sum(-1, keepdim=True).double()
        lp = torch.where(greedy[:, None],
                         torch.where(zt == md, 0.0 - torch.log(ties), -math.inf),
                         (zt - md) - torch.log(mass))
        lp = torch.where(ok, lp, -math.inf).to(cd)
    return torch.where(ok, tokens, -1), lp, status
