"""Checkpoints that lose nothing: atomic writes, verified loads, refusal of a foreign config.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts,
so it loads with ``torch.load(path, weights_only=True)`` (no pickled code
runs). It is first written to a temporary file in the same folder, flushed to
disk, then renamed over the old one: a crash mid-write leaves the previous
checkpoint intact, and the temporary file a kill left behind is removed when
the next run starts in that folder (:func:`remove_stale_temporaries`).

Integrity: ``torch.save`` writes a zip archive that stores a CRC-32 of every
record (the pickled structure and each tensor's bytes). :func:`load_checkpoint`
checks every CRC before unpickling, so a flipped byte, a truncated file or a
file that is not a checkpoint at all is refused with a one-line
:class:`CheckpointError` naming the file, instead of loading damaged weights.
Checkpoints written by every earlier version are the same kind of archive and
are checked the same way.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"
# The entries every checkpoint holds and their types (Run.state writes them).
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": int, "config": str, "step": int, "train_seconds": (int, float), "model": dict,
    "optimizer": dict, "train": list, "evals": list}


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or from a different configuration."""


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save(state)`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | Path, name: str = CHECKPOINT_NAME) -> list[Path]:
    """Delete the temporary files :func:`save_atomic` left in ``folder`` when it was
    killed mid-write (SIGKILL, power loss); return their paths. Call it only where
    no other process is saving into ``folder``."""
    prefix = _temporary_prefix(Path(name))
    stale = [p for p in Path(folder).glob(f"{prefix}*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def verify_archive(path: Path) -> None:
    """Check that ``path`` is a zip archive whose every record matches its CRC-32."""
    damaged = f"checkpoint {path} is damaged or is not a checkpoint"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    # what zipfile raises on damaged bytes: a bad directory, a bad deflate stream, a
    # truncated file, a compression method byte that names no method, a bad header field
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        raise CheckpointError(f"{damaged} (not a valid zip archive as torch.save writes: "
                              f"{exc}); it cannot be resumed") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if bad is not None:
        raise CheckpointError(f"{damaged}: its record {bad} fails its CRC-32 check; it cannot "
                              "be resumed")


def _check_contents(state: object, path: Path) -> dict[str, Any]:
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a "
                              "gumbelkit checkpoint")
    for key, kind in _FIELDS.items():
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"checkpoint {path} is not a gumbelkit checkpoint: its "
                                  f"{key!r} entry is missing or of the wrong type")
    try:
        json.loads(state["config"])
    except ValueError:
        raise CheckpointError(f"checkpoint {path} is damaged: its config is not JSON") from None
    for name, tensor in state["model"].items():
        if not (isinstance(tensor, torch.Tensor) and bool(torch.isfinite(tensor).all())):
            raise CheckpointError(f"checkpoint {path} is damaged: weight {name} is not a finite "
                                  "tensor")
    if not (state["step"] >= 0 and math.isfinite(state["train_seconds"])):
        raise CheckpointError(f"checkpoint {path} is damaged: step {state['step']}, "
                              f"train_seconds {state['train_seconds']}")
    return state


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """The checkpoint in ``folder``: CRCs verified, loaded with ``weights_only=True``,
    entries and weights checked; any fault is a :class:`CheckpointError` naming the file."""
    path = Path(folder) / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume in {folder} (expected {path})")
    verify_archive(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means: not our checkpoint
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "weights_only" in str(exc).lower() or "unpickl" in first.lower():
            # torch's advice, weights_only=False, would run pickled code from a file that
            # is not ours: say what the file holds instead.
            first = "it holds objects other than tensors, numbers, strings, lists and dicts"
        raise CheckpointError(f"checkpoint {path} is damaged or is not a gumbelkit "
                              f"checkpoint: {first}") from None
    return _check_contents(state, path)


def check_same_config(saved: dict[str, Any], current: dict[str, Any], where: str | Path,
                      ignore: tuple[str, ...] = ()) -> None:
    """Refuse to resume when any setting but ``ignore`` differs; the message names every
    difference."""
    keys = sorted((set(saved) | set(current)) - set(ignore))
    diffs = [f"{k}={json.dumps(saved.get(k))} in the checkpoint but {json.dumps(current.get(k))} "
             f"now" for k in keys if saved.get(k) != current.get(k)]
    if diffs:
        raise CheckpointError(f"checkpoint in {where} is from a different config: "
                              + "; ".join(diffs) + " (leave out the flags that differ to "
                              "continue the run with its own)")
