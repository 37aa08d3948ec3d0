"""Checkpoints that lose nothing: atomic writes, safe loads, refusal of a foreign config.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts,
so it loads with ``torch.load(path, weights_only=True)`` (no pickled code
runs). It is first written to a temporary file in the same folder, flushed to
disk, then renamed over the old one: a crash mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or from a different configuration."""


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save(state)`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """The checkpoint in ``folder``, loaded with ``weights_only=True``."""
    path = Path(folder) / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume in {folder} (expected {path})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means: not our checkpoint
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot load checkpoint {path}: {first}") from None


def check_same_config(saved: dict[str, Any], current: dict[str, Any], where: str | Path) -> None:
    """Refuse to resume when any setting differs; the message names every difference."""
    keys = sorted(set(saved) | set(current))
    diffs = [f"{k}={json.dumps(saved.get(k))} in the checkpoint but {json.dumps(current.get(k))} "
             f"now" for k in keys if saved.get(k) != current.get(k)]
    if diffs:
        raise CheckpointError(f"checkpoint in {where} is from a different config: "
                              + "; ".join(diffs) + " (rerun with the same flags to resume)")
