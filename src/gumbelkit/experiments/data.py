"""Data sets behind the experiments; nothing is ever downloaded.

The embedded default is scikit-learn's 8x8 handwritten digits (1,797 images,
pixel values 0..16), binarized at ``pixel > 7`` and split 1,437 / 360 by a
fixed permutation. Real MNIST is read from local IDX or ``.npz`` files when a
user has them (``load_mnist_binary``).
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 360


def _digits_pixels() -> np.ndarray:
    """scikit-learn's digits as float [1797, 64]: its own CSV, read without importing sklearn.

    ``load_digits().data`` is this file minus its last (label) column; reading
    it directly skips seconds of imports in every process that trains.
    """
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return np.loadtxt(path, delimiter=",", dtype=np.float64)[:, :-1]
    from sklearn.datasets import load_digits

    return load_digits().data


def load_digits_binary() -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) float32 tensors of shape [N, 64] with values in {0, 1}."""
    images = _digits_pixels()
    binary = (images > 7).astype(np.float32)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(binary))
    test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    return torch.from_numpy(binary[train]), torch.from_numpy(binary[test])


class DataError(ValueError):
    """A data file that is missing, truncated or malformed; the message is one line."""


# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
_IDX_UBYTE = 0x08
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
}


_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[^}]*)\}|(?P<name>[A-Za-z_][A-Za-z0-9_]*))")


def expand_path(text: str) -> Path:
    """``text`` with ``~`` / ``~user`` and ``$NAME`` / ``${NAME}`` expanded as a shell would.

    A shell leaves ``mnist:~/data`` unexpanded (the ``~`` is not at the start of the
    word), so ``--data`` expands it here. An unset variable is a :class:`DataError`
    rather than the empty string a shell would put in its place.

    Example:
        >>> expand_path("~/mnist") == expand_path("$HOME/mnist") == Path.home() / "mnist"
        True
    """

    def value(match: re.Match[str]) -> str:
        name = match.group("braced") if match.group("braced") is not None else match["name"]
        if name not in os.environ:
            raise DataError(f"{text}: environment variable {name} is not set")
        return os.environ[name]

    return Path(os.path.expanduser(_VARIABLE.sub(value, text)))


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    return raw


def read_idx_images(path: str | Path) -> np.ndarray:
    """The uint8 array [N, rows, cols] stored in an IDX file (gzipped or not).

    The IDX header is 4 magic bytes ``00 00 08 03`` (unsigned bytes, 3
    dimensions) and three big-endian uint32 sizes; the data must hold exactly
    ``N * rows * cols`` bytes. Anything else is a :class:`DataError`.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != _IDX_UBYTE:
        raise DataError(f"{path}: not a valid IDX image file: it starts with the bytes "
                        f"{raw[:4].hex(' ')}, an IDX file of unsigned bytes with 3 dimensions "
                        "starts with 00 00 08 03 (wrong magic number)")
    if ndim != 3:
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected 3 (images, rows, cols)")
    if len(raw) < 16:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} of 16 bytes)")
    shape = struct.unpack(">III", raw[4:16])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - 16 != expected:
        what = "truncated" if len(raw) - 16 < expected else "trailing bytes"
        raise DataError(f"{path}: {what}: the IDX header says shape {list(shape)} "
                        f"({expected} bytes) but the file holds {len(raw) - 16} data bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(shape)


def _find_idx(folder: Path, split: str) -> Path:
    for stem in MNIST_FILES[split]:
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"{folder}: no MNIST {split} images (looked for "
                    f"{MNIST_FILES[split][0]}[.gz])")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    # NumPy opens whatever is not a zip archive as a .npy file or a pickle, and then
    # speaks of pickled data: check the zip signature first to say what is wrong.
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head not in (b"PK\x03\x04", b"PK\x05\x06"):
        shown = head.hex(" ") if head else "nothing (empty file)"
        raise DataError(f"{path}: not a valid .npz file: an .npz is a zip archive (it starts "
                        f"with 50 4b 03 04), this file starts with {shown}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x_train", "x_test") if k not in archive.files]
            if missing:
                raise DataError(f"{path}: .npz lacks {', '.join(missing)} "
                                f"(has {', '.join(archive.files) or 'nothing'})")
            return archive["x_train"], archive["x_test"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        if "pickle" in first.lower():
            first = "its arrays hold Python objects, not numbers"
        raise DataError(f"{path}: not a valid .npz file ({first})") from None


def _binarize_images(images: np.ndarray, name: str, pixels: int | None) -> torch.Tensor:
    if images.ndim != 3 or min(images.shape) == 0:
        raise DataError(f"{name}: expected images of shape [N, rows, cols], got "
                        f"{list(images.shape)}")
    if pixels is not None and images.shape[1] * images.shape[2] != pixels:
        raise DataError(f"{name}: images are {images.shape[1]}x{images.shape[2]}, but the "
                        f"training images have {pixels} pixels")
    if not np.issubdtype(images.dtype, np.number):
        raise DataError(f"{name}: pixel values must be numbers, got dtype {images.dtype}")
    values = images.astype(np.float32)
    if not np.isfinite(values).all() or values.min() < 0:
        raise DataError(f"{name}: pixel values must be finite and >= 0")
    # uint8 grey levels (0..255) or intensities in [0, 1]: binarize at half the range.
    threshold = 0.5 if values.max() <= 1.0 else 127.5
    return torch.from_numpy((values > threshold).reshape(len(values), -1).astype(np.float32))


def load_mnist_binary(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) binarized MNIST as float32 [N, 784] tensors, from local files.

    ``path`` (``~`` and ``$VARIABLES`` expanded) is a folder with the IDX files
    ``train-images-idx3-ubyte`` and ``t10k-images-idx3-ubyte`` (each optionally
    ``.gz``), or an ``.npz`` with arrays ``x_train`` and ``x_test`` (the Keras
    layout). Pixels are binarized at half their range (> 127 for uint8). A
    missing, truncated or malformed file raises :class:`DataError` with a
    one-line message.
    """
    path = expand_path(str(path))
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (give an MNIST folder of IDX files or "
                        f"an .npz; nothing is downloaded)")
    if path.is_dir():
        train_path, test_path = _find_idx(path, "train"), _find_idx(path, "test")
        train_img, test_img = read_idx_images(train_path), read_idx_images(test_path)
        names = str(train_path), str(test_path)
    else:
        train_img, test_img = _read_npz(path)
        names = f"{path}[x_train]", f"{path}[x_test]"
    train = _binarize_images(train_img, names[0], None)
    return train, _binarize_images(test_img, names[1], train.shape[1])


def load_dataset(spec: str) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """(train, test, image shape) for a ``--data`` spec: ``digits`` or ``mnist:PATH``."""
    if spec == "digits":
        train, test = load_digits_binary()
        return train, test, (8, 8)
    kind, sep, rest = spec.partition(":")
    if kind == "mnist" and sep and rest:
        train, test = load_mnist_binary(rest)
        side = int(round(train.shape[1] ** 0.5))
        shape = (side, side) if side * side == train.shape[1] else (1, train.shape[1])
        return train, test, shape
    raise DataError(f"unknown data set {spec!r}: expected 'digits' or 'mnist:PATH'")
