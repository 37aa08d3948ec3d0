"""The device table of ``gumbelkit bench --device cuda``: gumbelkit against PyTorch on a GPU.

One row per shape and operation, each timed side by side in one process
against its PyTorch baseline and a device copy ``x.clone()`` (one read and
one write of the logits: the memory floor):

=========================  ==========================================================
operation                  baseline
=========================  ==========================================================
``soft``                   ``F.gumbel_softmax(x, 1.0)``
``hard fwd+bwd``           ``F.gumbel_softmax(x, 1.0, hard=True)`` and its backward
``gumbel_max``             ``torch.multinomial(softmax(x), 1)``
``sample, seed``           the PyTorch sampler of vLLM (top-k mask and top-p on one
``sample, per-row seeds``  full sort, softmax, ``exponential_`` race), T = 0.8,
                           top-k 50, top-p 0.9
=========================  ==========================================================

gumbelkit runs through the public API: ``functional.gumbel_softmax`` and
``gumbel_max`` with ``seed=0``, and ``sampling.sample(..., validate=False,
on_invalid="flag")`` with its seeds (one int, or one per row) and positions
as tensors on the device, so that nothing is read back to the host.

Each cell is the median of ``repeats`` rounds; a round runs every function
of the row twice in turn and times the second call (as ``bench.median_ms``),
with CUDA events on a GPU (``time.perf_counter`` after a synchronization
elsewhere). ``GB/s`` is the traffic the operation cannot avoid divided by
its median time: ``passes * rows * cols * 4`` bytes with ``passes`` = 2 for
the copy and the soft sample (read the logits, write the output), 4 for the
hard forward+backward (also read the output gradient and write the input
gradient), 1 for ``gumbel_max`` and the sampler (read the logits). Nothing
here is asserted.

Example:
    >>> rows = measure([(8, 64)], torch.device("cpu"), repeats=1)
    >>> [r.op for r in rows]
    ['soft', 'hard fwd+bwd', 'gumbel_max', 'sample, seed', 'sample, per-row seeds']
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

SHAPES = ((4096, 1024), (256, 32000), (64, 128000), (1, 128000))
TEMPERATURE, TOP_K, TOP_P = 0.8, 50, 0.9
# bytes per logit that one row's calls keep alive at most (the sort's values and int64
# indices, its masks, the softmax, the cumulative sum, the noise), with some margin
BYTES_PER_LOGIT = 4 * 50
# passes over [rows, cols] float32 each operation cannot avoid (see the module docstring)
PASSES = {"copy": 2, "soft": 2, "hard fwd+bwd": 4, "gumbel_max": 1, "sample, seed": 1,
          "sample, per-row seeds": 1}


@dataclass(frozen=True)
class Row:
    """One line of the table: medians in milliseconds."""

    shape: tuple[int, int]
    op: str
    baseline: str
    ours: float
    ref: float
    copy: float

    def gigabytes_per_second(self, which: str = "ours") -> float:
        """Unavoidable traffic of the operation (``which="copy"``: of the copy) per second."""
        passes = PASSES["copy" if which == "copy" else self.op]
        ms = self.copy if which == "copy" else self.ours
        return passes * self.shape[0] * self.shape[1] * 4 / (ms * 1e-3) / 1e9


def vllm_style_sample(logits: torch.Tensor, temperature: torch.Tensor, k: torch.Tensor,
                      p: torch.Tensor) -> torch.Tensor:
    """One token per row as vLLM's PyTorch sampler draws it (``apply_top_k_top_p`` and
    ``random_sample`` of ``vllm/v1/sample/ops/topk_topp_sampler.py``): ``z = logits / T``;
    one ascending sort serves both filters: top-k keeps ``z_i >= v_k`` (the k-th
    largest), top-p drops the sorted prefix whose cumulative probability is at most
    ``1 - p``; then the exponential race ``argmax_i p_i / E_i``, ``E_i ~ Exp(1)``.

    Args:
        logits: [rows, cols] floating tensor.
        temperature: [rows], > 0.
        k: [rows] int64 in [1, cols].
        p: [rows] in (0, 1].

    Example:
        >>> x = torch.tensor([[0.0, 5.0, 1.0]])
        >>> one = torch.ones(1)
        >>> vllm_style_sample(x, one, torch.ones(1, dtype=torch.int64), one)
        tensor([1])
    """
    z = logits / temperature.unsqueeze(1)
    z_sorted, order = z.sort(dim=-1, descending=False)
    kth = z_sorted.gather(1, (z_sorted.size(1) - k).unsqueeze(1))
    z_sorted.masked_fill_(z_sorted < kth, -math.inf)
    cumulative = z_sorted.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= 1 - p.unsqueeze(1)
    drop[:, -1] = False
    z_sorted.masked_fill_(drop, -math.inf)
    probs = z_sorted.scatter(-1, order, z_sorted).softmax(dim=-1)
    return probs.div_(torch.empty_like(probs).exponential_()).argmax(dim=-1)


def median_ms(fns: Sequence[Callable[[], object]], repeats: int,
              device: torch.device) -> list[float]:
    """Median milliseconds of each function over ``repeats`` rounds (f, f*, g, g*, ...:
    the second call of each pair is timed), with CUDA events on a CUDA device."""
    times: list[list[float]] = [[] for _ in fns]
    cuda = device.type == "cuda"
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            fn()
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                    enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                spent.append(start.elapsed_time(end))
            else:
                start_s = time.perf_counter()
                fn()
                spent.append((time.perf_counter() - start_s) * 1e3)
    return [statistics.median(spent) for spent in times]


def _calls(x: torch.Tensor, weight: torch.Tensor
           ) -> dict[str, tuple[str, Callable[[], object], Callable[[], object]]]:
    """operation -> (baseline name, gumbelkit's call, the baseline's call)."""
    import torch.nn.functional as F

    from gumbelkit import functional
    from gumbelkit.sampling import sample

    rows, device = x.shape[0], x.device
    leaf = x.detach().requires_grad_(True)

    def ours_hard() -> None:
        functional.gumbel_softmax(leaf, 1.0, hard=True, seed=0).backward(weight)
        leaf.grad = None

    def torch_hard() -> None:
        F.gumbel_softmax(leaf, 1.0, hard=True).backward(weight)
        leaf.grad = None

    positions = torch.arange(rows, dtype=torch.int64, device=device)
    seeds = torch.arange(1, rows + 1, dtype=torch.int64, device=device)
    temperature = torch.full((rows,), TEMPERATURE, device=device)
    k = torch.full((rows,), TOP_K, dtype=torch.int64, device=device)
    p = torch.full((rows,), TOP_P, device=device)

    def ours_sample(seed: int | torch.Tensor) -> Callable[[], object]:
        return lambda: sample(x, temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P, seed=seed,
                              positions=positions, validate=False, on_invalid="flag")

    def vllm() -> torch.Tensor:
        return vllm_style_sample(x, temperature, k, p)

    return {
        "soft": ("F.gumbel_softmax", lambda: functional.gumbel_softmax(x, 1.0, seed=0),
                 lambda: F.gumbel_softmax(x, 1.0)),
        "hard fwd+bwd": ("F.gumbel_softmax", ours_hard, torch_hard),
        "gumbel_max": ("multinomial(softmax)", lambda: functional.gumbel_max(x, seed=0),
                       lambda: torch.multinomial(torch.softmax(x, -1), 1)),
        "sample, seed": ("vLLM-style torch", ours_sample(0), vllm),
        "sample, per-row seeds": ("vLLM-style torch", ours_sample(seeds), vllm),
    }


def measure(shapes: Sequence[tuple[int, int]], device: torch.device, repeats: int) -> list[Row]:
    """Every operation on standard normal float32 logits of each shape (seeded), on
    ``device``. Shapes need at least ``TOP_K`` columns (the sampler's top-k)."""
    rows = []
    gen = torch.Generator().manual_seed(0)
    for shape in shapes:
        x = torch.randn(shape, generator=gen).to(device)
        weight = torch.randn(shape, generator=gen).to(device)
        for op, (baseline, ours, reference) in _calls(x, weight).items():
            ours_ms, ref_ms, copy_ms = median_ms([ours, reference, x.clone], repeats, device)
            rows.append(Row(tuple(shape), op, baseline, ours_ms, ref_ms, copy_ms))
        del x, weight
    return rows


COLUMNS = ("shape", "op", "gumbelkit ms", "baseline", "baseline ms", "speed-up", "copy ms",
           "gk/copy", "gk GB/s", "copy GB/s")


def format_table(rows: Sequence[Row]) -> str:
    """The table: ``speed-up`` is baseline / gumbelkit time, ``gk/copy`` gumbelkit / copy."""
    widths = (12, 22, 12, 20, 11, 8, 8, 8, 8, 9)
    header = " ".join(f"{c:>{w}}" for c, w in zip(COLUMNS, widths))
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = ("x".join(str(s) for s in r.shape), r.op, f"{r.ours:.3f}", r.baseline,
                 f"{r.ref:.3f}", f"{r.ref / r.ours:.2f}x", f"{r.copy:.3f}",
                 f"{r.ours / r.copy:.1f}x", f"{r.gigabytes_per_second():.1f}",
                 f"{r.gigabytes_per_second('copy'):.1f}")
        lines.append(" ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    return "\n".join(lines)


def describe(device: torch.device, repeats: int) -> str:
    """The line above the table: what ran where."""
    import gumbelkit

    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
        timer = "CUDA events"
    else:
        where, timer = f"{device.type} ({gumbelkit.backend()})", "perf_counter"
    try:
        import triton

        kernels = f"triton {triton.__version__}"
    except ImportError:
        kernels = "no triton"
    return (f"device: {where}, torch {torch.__version__}, {kernels}, float32, median of "
            f"{repeats} ({timer}); sampler T={TEMPERATURE}, top-k {TOP_K}, top-p {TOP_P}")
