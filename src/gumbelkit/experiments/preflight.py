"""Checks every command runs on its arguments before any work starts.

A command that would fail after minutes of training because its output
folder cannot be created, its plot cannot be saved, or its tensors do not fit
in memory is refused up front instead: each check raises :class:`UsageError`,
which ``gumbelkit`` prints as one line on stderr with exit code 2.

Example:
    >>> seed_value("7")
    7
    >>> seed_value("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected an integer in [0, 2**64), got '-1'
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

SEED_LIMIT = 2**64


class UsageError(ValueError):
    """A bad argument found after parsing; the message is one line naming the value."""


def seed_value(text: str) -> int:
    """An argparse type: a seed, an integer in ``[0, 2**64)`` (the noise takes 64-bit seeds)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**64), got {text!r}")
    return value


def offset_seed(seed: int, offset: int) -> int:
    """``seed + offset`` wrapped into ``[0, 2**64)``, so derived seeds stay valid seeds."""
    return (seed + offset) % SEED_LIMIT


def _probe(folder: Path, flag: str, value: object) -> None:
    """Create and delete a file in ``folder``: the only test of writability that
    also holds for read-only mounts and access control lists."""
    try:
        fd, name = tempfile.mkstemp(prefix=".write-test-", dir=folder)
    except OSError as exc:
        raise UsageError(f"{flag} {value}: cannot write in {folder} "
                         f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(name)


def _make_folder(folder: Path, flag: str, value: object) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{flag} {value}: {folder} exists and is not a folder") from None
    except NotADirectoryError:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()),
                       folder)
        raise UsageError(f"{flag} {value}: cannot create the folder, {blocker} is a file, "
                         "not a folder") from None
    except OSError as exc:
        raise UsageError(f"{flag} {value}: cannot create the folder "
                         f"({exc.strerror or exc})") from None


def output_folder(folder: str | Path, flag: str = "--out") -> Path:
    """Create ``folder`` (and its parents) now and check that files can be written in it."""
    folder = Path(folder)
    _make_folder(folder, flag, folder)
    _probe(folder, flag, folder)
    return folder


def image_formats() -> dict[str, str]:
    """Matplotlib's file formats: suffix without the dot -> description."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    return FigureCanvasBase.get_supported_filetypes()


def plot_file(path: str | Path, flag: str = "--plot") -> Path:
    """Check that a plot can be saved at ``path``: a known image format, a folder
    that exists or can be created, and write access there."""
    path = Path(path)
    formats = image_formats()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        allowed = ", ".join(f".{s}" for s in sorted(formats))
        what = f"'.{suffix}' is not an image format" if suffix else "no image format suffix"
        raise UsageError(f"{flag} {path}: {what} that matplotlib can write; use one of "
                         f"{allowed}")
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file name such as "
                         f"{path / 'plot.png'}")
    folder = path.parent
    _make_folder(folder, flag, path)
    _probe(folder, flag, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {path}: the file exists and is not writable")
    return path


def available_memory() -> int | None:
    """Bytes of memory available to new allocations now (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def fits_in_memory(flag: str, value: object, needed: int, per_unit: int, unit: str) -> None:
    """Refuse ``flag value`` when its ``needed`` bytes exceed the memory available,
    naming the largest count of ``unit`` (each ``per_unit`` bytes) that fits."""
    free = available_memory()
    if free is None or needed <= free:
        return
    raise UsageError(f"{flag} {value} needs about {human_bytes(needed)} of memory, but "
                     f"{human_bytes(free)} is available: at most about "
                     f"{free // max(per_unit, 1):,} {unit} fit")
