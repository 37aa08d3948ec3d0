"""DistributedDataParallel set-up from the environment ``torchrun`` provides.

``torchrun --nproc_per_node=N -m gumbelkit vae ...`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; the
process group uses gloo on CPU and NCCL on CUDA (one GPU per local rank).
Without those variables training runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """Where this process sits: ``rank`` in ``[0, world)``; rank 0 writes the outputs."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (so all ranks stop together)."""
        if self.world == 1:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


def world_size() -> int:
    """The number of processes ``torchrun`` started (``WORLD_SIZE``), 1 without it.

    Read before the process group is joined, so that every check that depends on it
    runs before any worker waits for the others."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        return max(int(text), 1)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={text!r} in the environment is not an integer") from None


def backend(device: str) -> str:
    """The process group's backend for training on ``device`` ('cpu' or 'cuda'): NCCL
    between GPUs, gloo between CPU processes."""
    return "nccl" if device == "cuda" else "gloo"


def rank_device(device: str) -> torch.device:
    """The device this process trains on: the CPU, or on CUDA the GPU of its
    ``LOCAL_RANK`` (torchrun numbers the processes of one machine 0, 1, ...; 0
    without torchrun). A ``ValueError`` names what is missing: no CUDA device, or
    a ``LOCAL_RANK`` outside ``[0, torch.cuda.device_count())``."""
    if device != "cuda":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch.cuda.is_available() is False")
    text = os.environ.get("LOCAL_RANK", "0")
    count = torch.cuda.device_count()
    try:
        local = int(text)
    except ValueError:
        local = -1
    if not 0 <= local < count:
        raise ValueError(f"LOCAL_RANK={text!r} in the environment is not a GPU of this machine "
                         f"(expected an integer in [0, {count}); start at most {count} "
                         "processes per node with --device cuda)")
    return torch.device("cuda", local)


def setup(device: str) -> Dist:
    """Join the process group when launched by torchrun (:func:`backend`, each rank on
    its :func:`rank_device`); else a single-process ``Dist`` on ``device``."""
    world = world_size()
    dev = rank_device(device)
    if world <= 1:
        return Dist(0, 1, dev)
    rank = int(os.environ["RANK"])
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend(device))
    return Dist(rank, world, dev)


def teardown(ctx: Dist) -> None:
    if ctx.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
