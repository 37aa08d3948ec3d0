"""User errors of every command, through the real ``gumbelkit`` command in a subprocess.

Each must end with one line on stderr that names the value and what is allowed,
exit code 2 and no traceback, and must be found before any work starts.
"""

import subprocess

import numpy as np
import pytest

from cli_helpers import COMMAND, assert_usage_error, run_cli

TINY = ["--steps", "2", "--batch-size", "50", "--hidden", "16", "--iw-samples", "2",
        "--eval-every", "2", "--quiet"]
TOO_LARGE_SEED = str(2**64)
LARGEST_SEED = str(2**64 - 1)


@pytest.mark.parametrize("command", [
    ["vae", *TINY],
    ["compare", "--estimators", "st", "--seeds", "1", "--jobs", "1", *TINY],
])
def test_out_that_cannot_be_a_folder(tmp_path, command):
    proc = run_cli(*command, "--out", "/dev/null/x")
    assert_usage_error(proc, "--out /dev/null/x", "/dev/null is a file, not a folder")
    assert proc.stdout == ""  # refused before "training N runs" is printed
    afile = tmp_path / "afile"
    afile.write_text("")
    proc = run_cli(*command, "--out", afile)
    assert_usage_error(proc, f"--out {afile}", "exists and is not a folder")


@pytest.mark.parametrize("plot, message", [
    ("x.txt", "'.txt' is not an image format"),
    ("noext", "no image format suffix"),
    ("/dev/null/x.png", "/dev/null exists and is not a folder"),
])
def test_bad_plot_path_is_refused_before_the_table(tmp_path, plot, message):
    proc = run_cli("estimators", "--draws", "2", "--methods", "st", "--plot", plot,
                   cwd=tmp_path)
    line = assert_usage_error(proc, f"--plot {plot}", message)
    assert ".png" in line or "/dev/null" in line
    assert proc.stdout == ""


def test_plot_in_a_new_folder_is_written(tmp_path):
    proc = run_cli("estimators", "--draws", "2", "--methods", "st", "--plot",
                   tmp_path / "new" / "e.svg")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "new" / "e.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("command, seed", [
    (["vae", *TINY], TOO_LARGE_SEED), (["vae", *TINY], "-1"), (["demo"], TOO_LARGE_SEED),
    (["speed"], TOO_LARGE_SEED), (["estimators", "--plot", ""], TOO_LARGE_SEED)])
def test_seed_outside_64_bits(tmp_path, command, seed):
    proc = run_cli(*command, "--seed", seed, cwd=tmp_path)
    assert_usage_error(proc, "--seed", "[0, 2**64)", seed)


def test_largest_seed_works(tmp_path):
    proc = run_cli("demo", "--draws", "1000", "--seed", LARGEST_SEED)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    proc = run_cli("speed", "--classes", "3", "--steps", "1", "--rounds", "1", "--batch-size",
                   "20", "--hidden", "8", "--seed", LARGEST_SEED)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    proc = run_cli("vae", "--out", tmp_path / "run", "--seed", LARGEST_SEED, *TINY)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("argv, flag", [
    (["demo", "--draws", str(10**13)], f"--draws {10**13}"),
    (["bench", "--shapes", "100000000x1000", "--threads", "1"], "--shapes 100000000x1000"),
    (["bench", "--quick", "--shapes", "800000000x1000", "--threads", "1"],
     "--shapes 100000000x1000"),
    (["bench", "--sampler", "--batch", "100000", "--vocab", "100000000", "--threads", "1"],
     "--batch x --vocab 100000x100000000"),
    (["estimators", "--draws", str(10**9), "--plot", ""], f"--draws {10**9}"),
])
def test_sizes_beyond_memory_are_refused_up_front(argv, flag):
    proc = run_cli(*argv)
    assert_usage_error(proc, flag, "of memory", "is available: at most about")
    assert proc.stdout == ""


@pytest.mark.parametrize("argv, flag", [
    (["--hidden", str(10**9)], f"--hidden {10**9} --latents 4"),
    (["--samples", str(10**8)], f"--samples {10**8} on 64-pixel images"),
])
def test_model_beyond_memory_is_refused_before_training(tmp_path, argv, flag):
    """vae refuses sizes it cannot train before creating anything; speed likewise."""
    proc = run_cli("vae", *argv, "--steps", "1", "--quiet", cwd=tmp_path)
    assert_usage_error(proc, flag, "of memory to train", "choose smaller sizes")
    assert list(tmp_path.iterdir()) == []  # not even the output folder was created


def test_speed_sizes_beyond_memory_are_refused():
    proc = run_cli("speed", "--classes", f"10,{10**8}")
    assert_usage_error(proc, f"--classes {10**8} --hidden 256", "of memory")
    proc = run_cli("speed", "--batch-size", "5000")
    assert_usage_error(proc, "--batch-size 5000 exceeds the 1437 images")


def test_closed_stdout_is_not_a_traceback():
    """``gumbelkit demo | head``: the reader is gone before the demo prints."""
    proc = subprocess.Popen([*COMMAND, "demo", "--draws", "1000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # long before the interpreter has even imported torch
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 128 + 13  # as if killed by SIGPIPE
    assert err == ""


def write_tiny_mnist(path):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (100, 28, 28), dtype=np.uint8),
             x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8))


@pytest.mark.parametrize("spec", ["mnist:~/data/mnist.npz", "mnist:$GK_DATA/mnist.npz",
                                  "mnist:${GK_DATA}/mnist.npz"])
def test_data_path_expands_home_and_variables(tmp_path, spec):
    (tmp_path / "data").mkdir()
    write_tiny_mnist(tmp_path / "data" / "mnist.npz")
    env = {"HOME": str(tmp_path), "GK_DATA": str(tmp_path / "data")}
    proc = run_cli("vae", "--data", spec, "--out", tmp_path / "run", *TINY, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "test -ELBO" in proc.stdout


def test_data_path_with_an_unset_variable(tmp_path):
    proc = run_cli("vae", "--data", "mnist:$GK_NO_SUCH_VARIABLE/m.npz", "--out",
                   tmp_path / "run", *TINY)
    assert_usage_error(proc, "GK_NO_SUCH_VARIABLE is not set")


def test_random_bytes_npz_is_named_as_not_an_npz(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    proc = run_cli("vae", "--data", f"mnist:{path}", "--out", tmp_path / "run", *TINY)
    line = assert_usage_error(proc, str(path), "not a valid .npz file")
    assert "pickle" not in line and "unsafe" not in line


def test_idx_with_a_wrong_magic_number_is_named_as_not_idx(tmp_path):
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (tmp_path / name).write_bytes(b"\x12\x34\x08\x03" + bytes(12 + 28 * 28))
    proc = run_cli("vae", "--data", f"mnist:{tmp_path}", "--out", tmp_path / "run", *TINY)
    line = assert_usage_error(proc, "not a valid IDX image file", "12 34 08 03",
                              "starts with 00 00 08 03")
    assert "0x00000" not in line


def test_iw_samples_beyond_memory_are_evaluated_in_calls(tmp_path):
    """--iw-samples 20000 needs about 2.4 GB in one call for 100 test images; under a
    2 GiB address-space limit it failed after training, now it runs in 256 MiB calls."""
    import resource

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 2, (100, 8, 8), dtype=np.uint8),
             x_test=rng.integers(0, 2, (100, 8, 8), dtype=np.uint8))
    limit = 2 * 2**30
    proc = subprocess.run(
        [*COMMAND, "vae", "--data", f"mnist:{tmp_path / 'd.npz'}", "--out", str(tmp_path / "r"),
         "--steps", "1", "--batch-size", "50", "--hidden", "16", "--iw-samples", "20000",
         "--quiet"], capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "-IWAE(k=20000)" in proc.stdout
