"""MNIST loading from local files: formats that work, and one-line errors for bad files."""

import gzip
import struct

import numpy as np
import pytest
import torch

from gumbelkit.cli import main
from gumbelkit.experiments.data import (
    DataError,
    load_dataset,
    load_digits_binary,
    load_mnist_binary,
    read_idx_images,
)


def idx_bytes(images: np.ndarray, magic: bytes = b"\x00\x00\x08\x03") -> bytes:
    return magic + struct.pack(">III", *images.shape) + images.astype(np.uint8).tobytes()


@pytest.fixture
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (7, 28, 28)), rng.integers(0, 256, (3, 28, 28))


def write_idx(folder, train, test, gz: bool) -> None:
    for stem, arr in (("train-images-idx3-ubyte", train), ("t10k-images-idx3-ubyte", test)):
        data = idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_loads_and_binarizes(tmp_path, images, gz):
    train, test = images
    write_idx(tmp_path, train, test, gz)
    got_train, got_test = load_mnist_binary(tmp_path)
    assert got_train.shape == (7, 784) and got_test.shape == (3, 784)
    assert torch.equal(got_train, torch.from_numpy((train > 127).reshape(7, -1)).float())
    assert torch.equal(got_test, torch.from_numpy((test > 127).reshape(3, -1)).float())
    _, _, shape = load_dataset(f"mnist:{tmp_path}")
    assert shape == (28, 28)


def test_npz_loads(tmp_path, images):
    train, test = images
    np.savez(tmp_path / "mnist.npz", x_train=train.astype(np.uint8), x_test=test.astype(np.uint8))
    got_train, got_test = load_mnist_binary(tmp_path / "mnist.npz")
    assert torch.equal(got_train, torch.from_numpy((train > 127).reshape(7, -1)).float())
    assert got_test.shape == (3, 784)


def test_digits_split_is_unchanged():
    from sklearn.datasets import load_digits

    train, test = load_digits_binary()
    assert train.shape == (1437, 64) and test.shape == (360, 64)
    assert set(train.unique().tolist()) == {0.0, 1.0}
    binary = (load_digits().data > 7).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(binary))
    assert torch.equal(test, torch.from_numpy(binary[order[:360]]))
    assert torch.equal(train, torch.from_numpy(binary[order[360:]]))


@pytest.mark.parametrize("corrupt, message", [
    (lambda raw: raw[:-100], "truncated"),
    (lambda raw: raw[:10], "truncated IDX header"),
    (lambda raw: raw[:2], "truncated IDX file"),
    (lambda raw: raw + b"\x00" * 5, "trailing bytes"),
    (lambda raw: b"\x00\x00\x08\x01" + raw[4:], "has 1 dimensions, expected 3"),
    (lambda raw: b"\x12\x34\x08\x03" + raw[4:], "wrong magic number"),
    (lambda raw: b"\x00\x00\x0d\x03" + raw[4:], "wrong magic number"),
])
def test_malformed_idx_is_one_line_error(tmp_path, images, corrupt, message):
    path = tmp_path / "x.idx"
    path.write_bytes(corrupt(idx_bytes(images[0])))
    with pytest.raises(DataError, match=message) as info:
        read_idx_images(path)
    assert "\n" not in str(info.value)


def test_truncated_gzip_is_one_line_error(tmp_path, images):
    write_idx(tmp_path, *images, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match="gzip") as info:
        load_mnist_binary(tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.zeros((4, 784)), "x_test": np.zeros((2, 784))}, "shape \\[N, rows, cols\\]"),
    ({"x_train": np.zeros((4, 28, 28)), "x_test": np.zeros((2, 20, 20))}, "784 pixels"),
    ({"x_train": np.zeros((4, 28, 28))}, "lacks x_test"),
    ({"x_train": -np.ones((4, 28, 28)), "x_test": np.zeros((2, 28, 28))}, ">= 0"),
])
def test_wrong_npz_shapes_are_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_mnist_binary(tmp_path / "m.npz")


def test_missing_and_unreadable_files(tmp_path, images):
    with pytest.raises(DataError, match="no such file"):
        load_mnist_binary(tmp_path / "absent")
    with pytest.raises(DataError, match="no MNIST train images"):
        load_mnist_binary(tmp_path)
    (tmp_path / "bad.npz").write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match="not a valid .npz file"):
        load_mnist_binary(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="unknown data set"):
        load_dataset("cifar")


def test_cli_reports_bad_data_in_one_line(tmp_path, images, capsys):
    write_idx(tmp_path, *images, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:500])
    code = main(["vae", "--data", f"mnist:{tmp_path}", "--steps", "2", "--out",
                 str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "truncated" in err and "Traceback" not in err
