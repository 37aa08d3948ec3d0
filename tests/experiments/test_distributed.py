"""DistributedDataParallel: two CPU processes with gloo on loopback, and the per-rank split."""

import json
import os
import subprocess
import sys
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


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "gumbelkit", "vae", "--out", str(out), "--steps", "16", "--batch-size", "50",
         "--hidden", "16", "--iw-samples", "4", "--eval-every", "8", "--quiet"],
        env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(2 processes)" in proc.stdout and proc.stdout.count("report:") == 1
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if m["split"] == "test"] == [8, 16]
    assert (out / "report.md").stat().st_size > 0 and (out / "training_curves.png").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 16
