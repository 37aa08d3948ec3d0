"""DistributedDataParallel: two CPU processes with gloo on loopback, and the per-rank split."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gumbelkit.experiments.distributed import Dist
from gumbelkit.experiments.training import _Batches, derive_seed

SRC = Path(__file__).resolve().parents[2] / "src"


def test_ranks_get_disjoint_shards_of_one_global_batch():
    data = torch.arange(40.0).unsqueeze(1)
    single = _Batches(data, 10, seed=7, ctx=Dist(0, 1))
    ranks = [_Batches(data, 5, seed=7, ctx=Dist(r, 2)) for r in range(2)]
    for step in range(9):  # crosses epochs (4 global batches per epoch)
        shards = [b(step) for b in ranks]
        assert not set(shards[0].flatten().tolist()) & set(shards[1].flatten().tolist())
        assert len(torch.cat(shards).unique()) == 10
    epoch = torch.cat([torch.cat([b(s) for b in ranks]) for s in range(4)])
    assert sorted(epoch.flatten().tolist()) == list(range(40))
    assert torch.equal(single(0), torch.cat([ranks[0](0)[:5], ranks[1](0)[:5]]))
    assert derive_seed(7, 3, 0) != derive_seed(7, 3, 1)  # distinct noise per rank


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "gumbelkit", "vae"]


def torchrun_env() -> dict[str, str]:
    return {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [*TORCHRUN, "--out", str(out), "--steps", "16", "--batch-size", "50",
         "--hidden", "16", "--iw-samples", "4", "--eval-every", "8", "--quiet"],
        env=torchrun_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(2 processes)" in proc.stdout and proc.stdout.count("report:") == 1
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if m["split"] == "test"] == [8, 16]
    assert (out / "report.md").stat().st_size > 0 and (out / "training_curves.png").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 16


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["--out", "/dev/null/x"], "gumbelkit vae: error: --out /dev/null/x"),
    (["--steps", "0"], "gumbelkit vae: error: argument --steps"),
])
def test_torchrun_usage_error_is_printed_once(argv, message):
    """Every worker finds the error before joining the process group and exits 2; only
    rank 0 prints it (torchrun then adds its own summary of the failed workers)."""
    proc = subprocess.run([*TORCHRUN, *argv, "--quiet"], env=torchrun_env(),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert proc.stderr.count(message) == 1, proc.stderr[-3000:]
    assert "exitcode  : 2" in proc.stderr  # torchrun's summary: the worker's own exit code


@pytest.mark.slow
def test_torchrun_interrupt_is_reported_once(tmp_path):
    out = tmp_path / "ddp"
    proc = subprocess.Popen([*TORCHRUN, "--out", str(out), "--steps", "100000", "--batch-size",
                             "50", "--hidden", "16", "--iw-samples", "2", "--quiet"],
                            env=torchrun_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = out / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # torchrun forwards it to both workers
    _, err = proc.communicate(timeout=120)
    assert err.count("gumbelkit vae: interrupted by SIGINT") == 1, err[-3000:]
    assert "torchrun --nproc_per_node=2 -m gumbelkit vae --resume" in err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] >= 5
