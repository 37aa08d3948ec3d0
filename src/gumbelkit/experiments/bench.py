"""time the fused CPU kernels against PyTorch and against a plain copy

Prints one table: median times (ms) of gumbelkit, of
``torch.nn.functional.gumbel_softmax`` and of ``x.clone()`` (the memory
floor: one read and one write of the input), measured side by side in one
process (in rounds that run each function in turn), and the ratios ``torch /
gumbelkit`` (speed-up) and ``gumbelkit / copy`` (distance from the memory
floor); one row per shape, mode (soft, hard,
hard forward+backward: the op's forward, then its backward for a fixed
random output gradient) and thread count, plus Gumbel-max against
``torch.multinomial(softmax(x), 1)``. ``peak MB`` is the largest extra tensor
memory alive during one forward call (outputs included, input excluded; for
the fwd+bwd rows, with autograd on, so the tensors saved for backward count).
Timings on a shared machine are noisy: compare ratios, not milliseconds.

``--reference`` times the pure-PyTorch path instead (what runs without the
kernels, and on MPS or XPU): the soft forward and the hard forward+backward
of ``gumbel_softmax`` on [4096, 1024] and ``gumbel_max`` on [64, 128000] by
default, in the same table.

``--device cuda`` prints the GPU table instead (``bench_device``): gumbelkit's
soft forward, hard forward+backward, ``gumbel_max`` and token sampler (one
seed, and one seed per row) against ``F.gumbel_softmax``,
``torch.multinomial(softmax(x), 1)``, vLLM's PyTorch sampler and a device copy,
timed with CUDA events, with the achieved GB/s, on [4096, 1024], [256, 32000],
[64, 128000] and [1, 128000] by default (``--shapes`` sets others).

Examples:
  gumbelkit bench --quick                        # smaller shapes: a fast smoke run
  gumbelkit bench --threads 1 2 --shapes 4096x1024 256x32000 --repeats 9
  gumbelkit bench --sampler --batch 64 --vocab 128000
  gumbelkit bench --reference --threads 1 2     # the pure-PyTorch path against torch
  gumbelkit bench --device cuda --repeats 20     # the GPU table
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..cli import usage_error
from .preflight import fits_in_memory

SHAPES = ((4096, 1024), (256, 32000), (64, 128000))
MODES = ("soft", "hard", "hard fwd+bwd")
REFERENCE_SHAPES = ((4096, 1024), (64, 128000))
REFERENCE_MODES = ("soft", "hard fwd+bwd")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed calls per cell, median reported (default 5)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to measure (default 1 2)")
    parser.add_argument("--shapes", nargs="+", default=None, metavar="ROWSxCOLS",
                        help="shapes to time, e.g. 65536x8 (default 4096x1024 256x32000 "
                             "64x128000; gumbel_max runs on the last)")
    parser.add_argument("--reference", action="store_true",
                        help="time the pure-PyTorch path (no kernels, as on MPS/XPU): soft and "
                             "hard fwd+bwd rows, then gumbel_max on the last shape (default "
                             "shapes 4096x1024 64x128000)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller shapes (/8 rows) for a fast smoke run")
    parser.add_argument("--sampler", action="store_true",
                        help="benchmark the token sampler (gumbelkit.sampling.sample) instead, "
                             "on [--batch, --vocab] logits, once per thread count")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the GPU table (gumbel_softmax, gumbel_max and the sampler "
                             "against PyTorch and vLLM-style baselines, CUDA events, GB/s; "
                             "default shapes 4096x1024 256x32000 64x128000 1x128000)")
    parser.add_argument("--batch", type=int, default=64,
                        help="with --sampler: rows (default 64)")
    parser.add_argument("--vocab", type=int, default=128_000,
                        help="with --sampler: vocabulary (default 128000)")


class _PeakMemory(TorchDispatchMode):
    """Peak bytes of tensor storage created by ops while active (views counted once)."""

    def __init__(self, inputs: tuple[torch.Tensor, ...] = ()) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, list[int]] = {}
        self._inputs = {t.untyped_storage().data_ptr() for t in inputs}

    def _release(self, key: int) -> None:
        entry = self._refs[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in self._inputs:
                continue
            if key not in self._refs:
                self._refs[key] = [storage.nbytes(), 0]
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
            self._refs[key][1] += 1
            weakref.finalize(t, self._release, key)
        return out


def peak_megabytes(fn: Callable[[], object], *inputs: torch.Tensor, grad: bool = False) -> float:
    with torch.set_grad_enabled(grad), _PeakMemory(inputs) as tracker:
        result = fn()
        del result
    return tracker.peak / 2**20


def median_ms(*fns: Callable[[], object], repeats: int) -> list[float]:
    """Median milliseconds of each function over ``repeats`` rounds. A round
    runs every function twice in turn and times the second call (f, f*, g, g*,
    ...): each timed call finds the caches as its own previous call left them,
    as in a loop, while load from other processes falls on all functions
    alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            fn()
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) * 1e3 for spent in times]


def _calls(x: torch.Tensor, weight: torch.Tensor, mode: str
           ) -> tuple[Callable[[], object], Callable[[], object]]:
    import gumbelkit
    hard = mode != "soft"
    if mode != "hard fwd+bwd":
        return (lambda: gumbelkit.gumbel_softmax(x, 1.0, hard=hard, seed=0),
                lambda: torch.nn.functional.gumbel_softmax(x, 1.0, hard=hard))
    leaf = x.detach().requires_grad_(True)

    def ours() -> None:
        gumbelkit.gumbel_softmax(leaf, 1.0, hard=True, seed=0).backward(weight)
        leaf.grad = None

    def reference() -> None:
        torch.nn.functional.gumbel_softmax(leaf, 1.0, hard=True).backward(weight)
        leaf.grad = None

    return ours, reference


def measure(shapes, threads, repeats: int, modes=MODES) -> list[dict]:
    rows = []
    before = torch.get_num_threads()
    try:
        for i, shape in enumerate(shapes):
            x = torch.randn(shape)
            weight = torch.randn(shape)
            for n_threads in threads:
                torch.set_num_threads(n_threads)
                for mode in modes:
                    ours, reference = _calls(x, weight, mode)
                    ours_ms, ref_ms, copy_ms = median_ms(ours, reference, x.clone,
                                                         repeats=repeats)
                    peak = _forward_peaks(x, mode)
                    rows.append(dict(shape=shape, mode=mode, threads=n_threads, ours=ours_ms,
                                     ref=ref_ms, copy=copy_ms, peak=peak))
            if i == len(shapes) - 1:
                rows.extend(_gumbel_max_rows(x, threads, repeats))
    finally:
        torch.set_num_threads(before)
    return rows


def _forward_peaks(x: torch.Tensor, mode: str) -> tuple[float, float]:
    """Peak extra MB of one forward call; with autograd on for the fwd+bwd mode."""
    import gumbelkit
    hard = mode != "soft"
    grad = mode == "hard fwd+bwd"
    leaf = x.detach().requires_grad_(grad)
    return (peak_megabytes(lambda: gumbelkit.gumbel_softmax(leaf, 1.0, hard=hard, seed=0), x,
                           grad=grad),
            peak_megabytes(lambda: torch.nn.functional.gumbel_softmax(leaf, 1.0, hard=hard), x,
                           grad=grad))


def _gumbel_max_rows(x: torch.Tensor, threads, repeats: int) -> list[dict]:
    import gumbelkit
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        ours = lambda: gumbelkit.gumbel_max(x, seed=0)  # noqa: E731
        reference = lambda: torch.multinomial(torch.softmax(x, -1), 1)  # noqa: E731
        ours_ms, ref_ms, copy_ms = median_ms(ours, reference, x.clone, repeats=repeats)
        rows.append(dict(shape=tuple(x.shape), mode="gumbel_max", threads=n_threads,
                         ours=ours_ms, ref=ref_ms, copy=copy_ms,
                         peak=(peak_megabytes(ours, x), peak_megabytes(reference, x))))
    return rows


def format_table(rows: list[dict], slowdown: bool = False) -> str:
    """The table; ``slowdown`` prints ``gk/torch`` (time ratio, for the reference
    path, which is slower than PyTorch) instead of the speed-up ``torch/gk``."""
    ratio, digits = ("gk/torch", 2) if slowdown else ("torch/gk", 1)
    header = (f"{'shape':>14} {'mode':>13} {'thr':>3} {'gumbelkit ms':>12} {'torch ms':>9} "
              f"{'copy ms':>8} {ratio:>8} {'gk/copy':>7} {'peak MB gk':>10} "
              f"{'peak MB torch':>13}")
    lines = [header, "-" * len(header)]

    def ratio_of(r: dict) -> float:
        return r["ours"] / r["ref"] if slowdown else r["ref"] / r["ours"]

    for r in rows:
        shape = "x".join(str(s) for s in r["shape"])
        gk_peak, ref_peak = (f"{p:.1f}" for p in r["peak"])
        lines.append(f"{shape:>14} {r['mode']:>13} {r['threads']:>3} {r['ours']:>12.2f} "
                     f"{r['ref']:>9.2f} {r['copy']:>8.2f} {ratio_of(r):>7.{digits}f}x "
                     f"{r['ours'] / r['copy']:>6.1f}x {gk_peak:>10} {ref_peak:>13}")
    return "\n".join(lines)


def _parse_shape(text: str) -> tuple[int, int]:
    rows, _, cols = text.partition("x")
    if not (rows.isdecimal() and cols.isdecimal() and int(rows) >= 1 and int(cols) >= 1):
        usage_error(f"gumbelkit bench: --shapes takes ROWSxCOLS with both >= 1, got {text!r}")
    return int(rows), int(cols)


# Peak bytes per float32 input element of one shape's rows (measured: 7x the input's
# bytes with the fused kernels, 42x on the pure-PyTorch path), with some margin.
BYTES_PER_ELEMENT = {"fused-cpu": 4 * 10}
BYTES_PER_ELEMENT_REFERENCE = 4 * 50


def check_memory(shapes: tuple[tuple[int, int], ...], flag: str, reference: bool = False) -> None:
    """Refuse the largest shape if timing it would not fit in the memory available
    (``reference``: timing the pure-PyTorch path)."""
    import gumbelkit

    per_element = (BYTES_PER_ELEMENT_REFERENCE if reference else
                   BYTES_PER_ELEMENT.get(gumbelkit.backend(), BYTES_PER_ELEMENT_REFERENCE))
    rows, cols = max(shapes, key=lambda s: s[0] * s[1])
    fits_in_memory(flag, f"{rows}x{cols}", rows * cols * per_element, per_element,
                   "elements (rows x cols)")


def _run_device(args: argparse.Namespace) -> int:
    """``--device cuda``: every check before any work, then the device table."""
    from ..cli import given_flags
    from . import bench_device
    from .preflight import human_bytes

    cpu_only = [f"--{name}" for name in ("reference", "sampler") if getattr(args, name)]
    cpu_only += [f"--{name}" for name in ("threads", "batch", "vocab") if name in given_flags(args)]
    if cpu_only:
        verb = "is" if len(cpu_only) == 1 else "are"
        usage_error(f"gumbelkit bench: {', '.join(cpu_only)} {verb} for the CPU tables, not "
                    "for --device cuda")
    shapes = bench_device.SHAPES
    if args.shapes is not None:
        shapes = tuple(_parse_shape(s) for s in args.shapes)
    if args.quick:
        shapes = tuple((max(r // 8, 1), c) for r, c in shapes)
    narrow = [f"{r}x{c}" for r, c in shapes if c < bench_device.TOP_K]
    if narrow:
        usage_error(f"gumbelkit bench: --device cuda needs shapes of at least "
                    f"{bench_device.TOP_K} columns (the sampler's top-k), got {narrow[0]}")
    if not torch.cuda.is_available():
        usage_error("gumbelkit bench: --device cuda: no CUDA device is available "
                    "(torch.cuda.is_available() is False)")
    device = torch.device("cuda", torch.cuda.current_device())
    free, _ = torch.cuda.mem_get_info(device)
    rows, cols = max(shapes, key=lambda s: s[0] * s[1])
    needed = rows * cols * bench_device.BYTES_PER_LOGIT
    if needed > free:
        usage_error(f"gumbelkit bench: --shapes {rows}x{cols} needs about {human_bytes(needed)} "
                    f"of GPU memory, but {human_bytes(free)} is free")
    print(bench_device.describe(device, args.repeats))
    print(bench_device.format_table(bench_device.measure(shapes, device, args.repeats)))
    return 0


def run(args: argparse.Namespace) -> int:
    import gumbelkit
    from gumbelkit.kernels import _lib
    if args.repeats < 1 or any(t < 1 for t in args.threads):
        usage_error("gumbelkit bench: --repeats and --threads must be >= 1")
    if args.device == "cuda":
        return _run_device(args)
    if args.sampler:
        from . import bench_sampler
        bench_sampler.check_arguments(args.batch, args.vocab)
        for threads in args.threads:
            bench_sampler.run(argparse.Namespace(batch=args.batch, vocab=args.vocab,
                                                 threads=threads, repeats=args.repeats, seed=0))
        return 0
    shapes = REFERENCE_SHAPES if args.reference else SHAPES
    if args.shapes is not None:
        shapes = tuple(_parse_shape(s) for s in args.shapes)
    if args.quick:
        shapes = tuple((max(r // 8, 1), c) for r, c in shapes)
    check_memory(shapes, "--shapes", reference=args.reference)
    path = (_lib.disabled() if args.reference else contextlib.nullcontext())
    with path:
        name = "pytorch reference path" if args.reference else gumbelkit.backend()
        print(f"backend: {name} ({_lib.isa() or 'no kernels'}), torch "
              f"{torch.__version__}, float32, median of {args.repeats}")
        table = measure(shapes, args.threads, args.repeats,
                        REFERENCE_MODES if args.reference else MODES)
    print(format_table(table, slowdown=args.reference))
    return 0
