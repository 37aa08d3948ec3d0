"""Memory of sparse_gumbel_softmax against the dense gumbel_softmax.

For logits of shape [8, 128, 32000] (a batch of 8 sequences of 128 positions
over a 32k vocabulary) and k = 32, each method runs forward + backward in a
fresh child process and reports:

* output: bytes of the returned tensors;
* saved: bytes autograd keeps for the backward pass (distinct storages, the
  logits themselves excluded; they exist either way);
* peak: the rise of the process's peak resident memory over its resident
  memory just before the call (CPU), or of ``torch.cuda.max_memory_allocated``
  with ``--device cuda``;
* time: wall seconds of forward + backward (one run, printed for orientation).

Ratios are dense / sparse, measured side by side in this run.

    PYTHONPATH=src python benchmarks/bench_sparse.py [--shape 8 128 32000] [--k 32]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(method: str, shape: list[int], k: int, device: str) -> dict[str, float]:
    """One method, in this process: forward + backward, memory and time."""
    import torch

    import gumbelkit

    def run(logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if method == "dense":
            return (gumbelkit.gumbel_softmax(logits, 1.0, seed=0),)
        return gumbelkit.sparse_gumbel_softmax(logits, min(k, logits.shape[-1]), 1.0, seed=0)

    logits = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(device)
    logits.requires_grad_(True)
    warm = logits[:1, :1].detach().clone().requires_grad_(True)
    run(warm)[-1].square().sum().backward()  # load kernels and allocator pools first

    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() != logits.untyped_storage().data_ptr():
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_bytes()
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run(logits)
    out[-1].square().sum().backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    elapsed = time.perf_counter() - start
    return {"output": sum(t.numel() * t.element_size() for t in out),
            "saved": sum(saved.values()), "peak": peak, "time": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[8, 128, 32000])
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--child", choices=["dense", "sparse"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.shape, args.k, args.device)))
        return 0
    results = {}
    for method in ("dense", "sparse"):
        cmd = [sys.executable, __file__, "--child", method, "--k", str(args.k),
               "--device", args.device, "--shape", *map(str, args.shape)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[method] = json.loads(done.stdout.strip().splitlines()[-1])
    import torch

    print(f"sparse_gumbel_softmax vs gumbel_softmax: logits {args.shape} float32, k={args.k}, "
          f"forward + backward, device={args.device}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    print(f"{'':<8}{'dense':>14}{'sparse':>14}{'dense/sparse':>14}")
    for key, unit in (("output", "MiB"), ("saved", "MiB"), ("peak", "MiB"), ("time", "s")):
        scale = 2**20 if unit == "MiB" else 1
        d, s = results["dense"][key] / scale, results["sparse"][key] / scale
        ratio = f"{d / s:.1f}x" if s > 0 else "-"
        print(f"{key + ' ' + unit:<8}{d:>14.2f}{s:>14.2f}{ratio:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
