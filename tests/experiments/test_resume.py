"""A run killed mid-way by a real signal and resumed ends exactly like an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gumbelkit.cli import main
from gumbelkit.experiments.checkpoint import CHECKPOINT_NAME
from gumbelkit.experiments.training import Run

SRC = Path(__file__).resolve().parents[2] / "src"
STEPS = 100
FLAGS = ["--estimator", "gumbel_softmax", "--tau", f"linear:1.0:0.5:{STEPS}", "--steps",
         str(STEPS), "--batch-size", "50", "--hidden", "16", "--iw-samples", "4",
         "--eval-every", "20", "--checkpoint-every", "30", "--seed", "3", "--quiet"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    """The metrics of the same run, never interrupted."""
    folder = tmp_path_factory.mktemp("reference")
    assert main(["vae", "--out", str(folder), *FLAGS]) == 0
    return metrics(folder)


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def trained_steps(folder: Path) -> int:
    try:
        lines = (folder / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return len(lines)


@pytest.mark.slow
def test_ctrl_c_to_a_subprocess_then_resume_matches_uninterrupted(tmp_path, reference, capsys):
    signum = signal.SIGINT
    interrupted = tmp_path / "interrupted"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "gumbelkit", "vae", "--out", str(interrupted),
                             *FLAGS], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while trained_steps(interrupted) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "checkpoint saved" in err and "Traceback" not in err
    state = torch.load(interrupted / CHECKPOINT_NAME, weights_only=True)
    assert 5 <= state["step"] < STEPS  # stopped mid-way, between two steps

    assert main(["vae", "--resume", str(interrupted), *FLAGS]) == 0
    capsys.readouterr()
    assert metrics(interrupted) == reference  # every loss, tau and test score, exactly
    assert torch.load(interrupted / CHECKPOINT_NAME, weights_only=True)["step"] == STEPS


def test_sigterm_mid_run_then_resume_matches_uninterrupted(tmp_path, reference, monkeypatch,
                                                           capsys):
    """SIGTERM sent to this process right after step 37 (deterministic, still a real signal)."""
    folder = tmp_path / "terminated"
    original = Run._step

    def step_then_signal(self, net, bar):
        original(self, net, bar)
        if self.result.step == 37:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Run, "_step", step_then_signal)
    assert main(["vae", "--out", str(folder), *FLAGS]) == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM at step 37" in capsys.readouterr().err
    assert torch.load(folder / CHECKPOINT_NAME, weights_only=True)["step"] == 37
    monkeypatch.setattr(Run, "_step", original)
    assert main(["vae", "--resume", str(folder), *FLAGS]) == 0
    assert metrics(folder) == reference
