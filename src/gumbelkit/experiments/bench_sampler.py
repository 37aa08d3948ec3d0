"""Benchmark the token sampler against the usual PyTorch pipelines (ratios, same process).

Logits are Gaussian (fixed seed), shape [batch, vocab], with standard
deviation 3 unless the case names another (N(0, s^2)), or all equal. The
top-p and min-p cases without top-k run at every logit scale from flat
(N(0, 0.3^2), a nucleus of most of the vocabulary) to peaked (N(0, 10^2)).
Each method runs `--repeats` times, interleaved with the others in its case,
and the median wall time is reported with the speed-up of
gumbelkit.sampling.sample over it. Nothing here is asserted.

Run as ``gumbelkit bench --sampler [--batch 64 --vocab 128000 --threads 2]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch

import gumbelkit
from gumbelkit.sampling import sample

from ..cli import usage_error
from .preflight import fits_in_memory

# Peak bytes per float32 logit (measured: 8x the logits' bytes with the fused kernels,
# 38x on the pure-PyTorch path, both set by the torch pipelines), with some margin.
BYTES_PER_LOGIT = {"fused-cpu": 4 * 12}
BYTES_PER_LOGIT_REFERENCE = 4 * 50


def _pipeline_filtered(x: torch.Tensor, t: float, k: int, p: float) -> torch.Tensor:
    """The usual PyTorch pipeline: top-k mask, full sort for top-p, softmax, multinomial."""
    z = x / t
    z = z.masked_fill(z < torch.topk(z, k, -1).values[:, -1:], -math.inf)
    zs, order = z.sort(-1, descending=True)
    probs = zs.softmax(-1)
    zs = zs.masked_fill(probs.cumsum(-1) - probs >= p, -math.inf)
    z = torch.empty_like(z).scatter_(-1, order, zs)
    return torch.multinomial(z.softmax(-1), 1)[:, 0]


def _pipeline_top_p(x: torch.Tensor, t: float, p: float, min_p: float = 0.0) -> torch.Tensor:
    """The usual PyTorch top-p (then min-p) pipeline: full sort, softmax, cumsum, multinomial."""
    zs, order = (x / t).sort(-1, descending=True)
    probs = zs.softmax(-1)
    zs = zs.masked_fill(probs.cumsum(-1) - probs >= p, -math.inf)
    if min_p > 0:
        zs = zs.masked_fill(probs < min_p * probs[:, :1], -math.inf)
    z = torch.empty_like(zs).scatter_(-1, order, zs)
    return torch.multinomial(z.softmax(-1), 1)[:, 0]


def _pipeline_min_p(x: torch.Tensor, t: float, min_p: float) -> torch.Tensor:
    """The usual PyTorch min-p pipeline: softmax, mask below min_p * max, multinomial."""
    probs = torch.softmax(x / t, -1)
    probs = probs.masked_fill(probs < min_p * probs.amax(-1, keepdim=True), 0.0)
    return torch.multinomial(probs, 1)[:, 0]


def _exponential_race(x: torch.Tensor, t: float) -> torch.Tensor:
    probs = torch.softmax(x / t, -1)
    return probs.div_(torch.empty_like(probs).exponential_()).argmax(-1)


def _multinomial(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.multinomial(torch.softmax(x / t, -1), 1)[:, 0]


def _median_times(methods: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for fn in methods.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def check_arguments(batch: int, vocab: int) -> None:
    """Refuse a logits shape that is too small for top-k 50 or too large for memory."""
    if batch < 1:
        usage_error(f"gumbelkit bench --sampler: --batch must be >= 1, got {batch}")
    if vocab < 50:
        usage_error(f"gumbelkit bench --sampler: --vocab must be >= 50 (top-k 50), got {vocab}")
    per_logit = BYTES_PER_LOGIT.get(gumbelkit.backend(), BYTES_PER_LOGIT_REFERENCE)
    fits_in_memory("--batch x --vocab", f"{batch}x{vocab}", batch * vocab * per_logit,
                   per_logit, "logits (batch x vocab)")


def run(args: argparse.Namespace) -> int:
    for name in ("threads", "repeats"):
        if getattr(args, name) < 1:
            usage_error(f"gumbelkit bench --sampler: --{name} must be >= 1")
    check_arguments(args.batch, args.vocab)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    normal = torch.randn(args.batch, args.vocab, generator=gen)
    x = normal * 3.0
    seeds = torch.arange(args.batch)
    ours = "gumbelkit.sampling.sample"
    cases: dict[str, dict[str, Callable[[], object]]] = {
        "T=0.8, top-k 50, top-p 0.9": {
            "torch topk+sort+softmax+multinomial": lambda: _pipeline_filtered(x, 0.8, 50, 0.9),
            ours: lambda: sample(x, temperature=0.8, top_k=50, top_p=0.9, seed=seeds),
        },
        "T=0.8, no filter": {
            "torch softmax / exponential_ argmax": lambda: _exponential_race(x, 0.8),
            "torch softmax + multinomial": lambda: _multinomial(x, 0.8),
            ours: lambda: sample(x, temperature=0.8, seed=seeds),
        },
    }
    scaled = {f"N(0, {s:g}^2)": normal * s for s in (0.3, 1.0, 3.0, 10.0)}
    scaled["all equal"] = torch.zeros(args.batch, args.vocab)
    for label, xs in scaled.items():
        cases[f"T=0.8, top-p 0.9, {label}"] = {
            "torch sort+softmax+multinomial": lambda xs=xs: _pipeline_top_p(xs, 0.8, 0.9),
            ours: lambda xs=xs: sample(xs, temperature=0.8, top_p=0.9, seed=seeds),
        }
    for label in ("N(0, 0.3^2)", "N(0, 1^2)"):
        xs = scaled[label]
        cases[f"T=0.8, min-p 0.05, {label}"] = {
            "torch softmax+mask+multinomial": lambda xs=xs: _pipeline_min_p(xs, 0.8, 0.05),
            ours: lambda xs=xs: sample(xs, temperature=0.8, min_p=0.05, seed=seeds),
        }
        cases[f"T=0.8, top-p 0.9, min-p 0.05, {label}"] = {
            "torch sort+softmax+multinomial": lambda xs=xs: _pipeline_top_p(xs, 0.8, 0.9, 0.05),
            ours: lambda xs=xs: sample(xs, temperature=0.8, top_p=0.9, min_p=0.05, seed=seeds),
        }
    print(f"token sampler, logits [{args.batch}, {args.vocab}] float32 ~ N(0, 3^2) unless "
          f"named, {args.threads} threads, median of {args.repeats} (backend: "
          f"{gumbelkit.backend()})")
    width = max(len(case) for case in cases)
    print(f"{'case':<{width}} {'method':<38} {'ms':>9} {'gumbelkit speed-up':>19}")
    for case, methods in cases.items():
        medians = _median_times(methods, args.repeats)
        for name, seconds in medians.items():
            ratio = "" if name == ours else f"{seconds / medians[ours]:.1f}x"
            print(f"{case:<{width}} {name:<38} {seconds * 1e3:>9.2f} {ratio:>19}")
    return 0
