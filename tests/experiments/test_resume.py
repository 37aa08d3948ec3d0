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

from cli_helpers import assert_usage_error, run_cli
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
    assert main(["vae", "--resume", str(folder), "--quiet"]) == 0  # the flags come from the run
    assert metrics(folder) == reference


def test_resume_with_steps_extends_the_run(tmp_path):
    """A 10-step run extended to 20 trains exactly as a 20-step run (every loss and tau,
    the final weights); with the default --eval-every 0 its evaluations up to step 10
    keep the 10-step run's schedule (every step), those after it the 20-step run's."""
    flags = ["--tau", "linear:1.0:0.5:15", "--batch-size", "50", "--hidden", "16",
             "--iw-samples", "4", "--seed", "5", "--quiet"]
    short, full = tmp_path / "short", tmp_path / "full"
    assert run_cli("vae", "--out", short, "--steps", "10", *flags).returncode == 0
    proc = run_cli("vae", "--resume", short, "--steps", "20")
    assert proc.returncode == 0 and "over 20 steps" in proc.stdout, proc.stderr
    assert run_cli("vae", "--out", full, "--steps", "20", *flags).returncode == 0
    assert json.loads((short / "config.json").read_text())["steps"] == 20
    extended, uninterrupted = metrics(short), metrics(full)
    train = [m for m in extended if m["split"] == "train"]
    assert train == [m for m in uninterrupted if m["split"] == "train"]
    tests = {m["step"]: m for m in extended if m["split"] == "test"}
    reference = {m["step"]: m for m in uninterrupted if m["split"] == "test"}
    assert sorted(tests) == list(range(1, 11)) + [12, 14, 16, 18, 20]
    assert sorted(reference) == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert all(tests[s] == reference[s] for s in reference)  # same weights at every step
    assert torch.equal(*(torch.load(f / CHECKPOINT_NAME, weights_only=True)["model"][
        "encoder.0.weight"] for f in (short, full)))


def test_resume_refuses_flags_that_change_the_run(tmp_path):
    folder = tmp_path / "run"
    assert run_cli("vae", "--out", folder, "--steps", "4", "--batch-size", "50", "--hidden",
                   "16", "--iw-samples", "2", "--quiet").returncode == 0
    proc = run_cli("vae", "--resume", folder, "--lr", "0.01", "--hidden", "32", "--steps", "8")
    assert_usage_error(proc, f"checkpoint in {folder} is from a different config",
                       "hidden=16 in the checkpoint but 32 now",
                       "lr=0.003 in the checkpoint but 0.01 now")
    proc = run_cli("vae", "--resume", folder, "--steps", "3")
    assert_usage_error(proc, "--steps 3", "has 4 steps", "--steps >= 4")
    (folder / "config.json").unlink()
    proc = run_cli("vae", "--resume", folder)
    assert_usage_error(proc, f"cannot resume {folder}", "config.json")
