"""Damaged checkpoints are refused by name; stale temporary files are cleaned up.

Every case runs the real ``gumbelkit`` command in a subprocess.
"""

import zipfile

import numpy as np
import pytest
import torch

from cli_helpers import assert_usage_error, run_cli
from gumbelkit.experiments.checkpoint import CHECKPOINT_NAME

TINY = ["--steps", "4", "--batch-size", "50", "--hidden", "16", "--iw-samples", "2",
        "--eval-every", "2", "--quiet"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 4-step run; tests copy its folder."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    proc = run_cli("vae", "--out", folder, *TINY)
    assert proc.returncode == 0, proc.stderr
    return folder


def copy_run(source, target):
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def flip_weight_byte(path):
    """Flip one byte in the middle of the largest tensor record (``archive/data/N``)."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = (int.from_bytes(raw[info.header_offset + k:info.header_offset + k + 2],
                                          "little") for k in (26, 28))
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, message", [
    (flip_weight_byte, "fails its CRC-32 check"),
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not a valid zip archive"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "not a valid zip archive"),
    (lambda p: p.write_bytes(b""), "not a valid zip archive"),
])
def test_damaged_checkpoint_is_refused_naming_the_file(tmp_path, finished, damage, message):
    folder = copy_run(finished, tmp_path / "run")
    damage(folder / CHECKPOINT_NAME)
    # the same flags as the run: before checksums, this loaded the damaged weights
    proc = run_cli("vae", "--resume", folder, *TINY)
    line = assert_usage_error(proc, str(folder / CHECKPOINT_NAME), "damaged", message)
    assert "weights_only" not in line


def test_checkpoint_without_the_expected_entries(tmp_path, finished):
    folder = copy_run(finished, tmp_path / "run")
    torch.save({"model": {}}, folder / CHECKPOINT_NAME)
    proc = run_cli("vae", "--resume", folder)
    assert_usage_error(proc, str(folder / CHECKPOINT_NAME), "not a gumbelkit checkpoint")


@pytest.mark.parametrize("resume", [True, False])
def test_stale_temporary_files_are_removed_on_the_next_start(tmp_path, finished, resume):
    """A run killed by SIGKILL inside save_atomic leaves ``.checkpoint.pt.XXXX.tmp``."""
    if resume:
        folder = copy_run(finished, tmp_path / "run")
        argv = ["--resume", folder, "--steps", "6"]
    else:
        folder = tmp_path / "run"
        folder.mkdir()
        argv = ["--out", folder, *TINY]
    stale = [folder / ".checkpoint.pt.k2j4_x9.tmp", folder / ".checkpoint.pt.abc123.tmp"]
    stale[0].write_bytes(b"")
    stale[1].write_bytes(b"PK\x03\x04 partial")
    unrelated = folder / "notes.tmp"
    unrelated.write_text("kept")
    proc = run_cli("vae", *argv)
    assert proc.returncode == 0, proc.stderr
    assert not any(p.exists() for p in stale) and unrelated.exists()
