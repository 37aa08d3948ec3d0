"""`gumbelkit compare`: statistics, usage errors, --out/--force, progress, Ctrl-C.

The command-line tests run the installed ``gumbelkit`` command in a subprocess,
as a user would, and check the exit code, the one stderr line and that no
traceback escapes.
"""

import json
import math
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gumbelkit.experiments.compare import compare_methods, t_quantile_975
from gumbelkit.experiments.report import describe_tau
from gumbelkit.experiments.training import Interrupted, Run, TrainConfig, train

_SCRIPT = Path(sys.executable).with_name("gumbelkit")  # the installed console script
GUMBELKIT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "gumbelkit"]
TINY = ["--steps", "12", "--batch-size", "50", "--hidden", "16", "--iw-samples", "4",
        "--eval-every", "6", "--quiet"]


def gumbelkit(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*GUMBELKIT, *argv], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(done: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("gumbelkit compare: error")
    for needle in needles:
        assert needle in done.stderr


# --- statistics --------------------------------------------------------------------------

def test_t_quantile_table_joins_its_expansion():
    assert t_quantile_975(1) == 12.706 and t_quantile_975(30) == 2.042
    assert abs(t_quantile_975(31) - 2.040) < 1e-3  # tables: t_{0.975, 31} = 2.0395
    assert abs(t_quantile_975(120) - 1.980) < 1e-3
    with pytest.raises(ValueError, match="df must be an integer >= 1"):
        t_quantile_975(0)


def test_paired_comparison_against_the_best():
    # b is worse than a by 0.5 +- 0.1 on every seed: separated, although the seed-to-seed
    # spread of each method (1 nat) is ten times the difference.
    # c differs from a by +2, -2, +1: its interval contains 0.
    c = compare_methods({"a": [10.0, 11.0, 12.0], "b": [10.5, 11.4, 12.6],
                         "c": [12.0, 9.0, 13.0]})
    assert c.best == "a" and c.n_seeds == 3
    assert math.isclose(c.se["a"], 1 / math.sqrt(3))
    d, half = c.diff["b"]
    assert math.isclose(d, 0.5) and math.isclose(half, 4.303 * 0.1 / math.sqrt(3))
    assert c.worse == ("b",) and c.tied == ("c",)


def test_one_seed_concludes_nothing():
    c = compare_methods({"a": [10.0], "b": [11.0]})
    assert math.isnan(c.se["a"]) and math.isnan(c.diff["b"][1])
    assert c.tied == () and c.worse == ()
    with pytest.raises(ValueError, match="same number"):
        compare_methods({"a": [1.0, 2.0], "b": [1.0]})


def test_runs_of_one_seed_start_from_the_same_weights():
    """What makes the paired comparison valid: the estimator does not change the start."""
    def initial(estimator: str, seed: int, samples: int = 1) -> dict:
        config = TrainConfig(estimator=estimator, seed=seed, samples=samples, hidden=16)
        return Run(config, None).model.state_dict()

    a, b, c = initial("st", 0), initial("gumbel_softmax", 0), initial("rloo", 0, samples=2)
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    other = initial("st", 1)
    assert not all(torch.equal(a[k], other[k]) for k in a)


def test_a_run_stops_when_asked_between_steps(tmp_path):
    """How compare's parent stops its workers' runs (no second signal): ``stop`` is asked
    between steps, and a True answer checkpoints like a Ctrl-C."""
    asked = []

    def stop() -> bool:
        asked.append(len(asked))
        return len(asked) > 3

    config = TrainConfig(estimator="st", hidden=16, steps=100, eval_every=0)
    with pytest.raises(Interrupted) as stopped:
        train(config, tmp_path / "run", stop=stop)
    assert stopped.value.step == 3 and len(asked) == 4
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 3


def test_describe_tau_names_the_protocol():
    assert describe_tau("1.0") == "constant tau = 1"
    assert describe_tau("jang") == ("tau = max(0.5, 1 exp(-0.0001 t)), recomputed every 500 "
                                    "steps (Jang et al. 2017)")
    assert "linearly over 100 steps" in describe_tau("linear:1:0.5:100")


# --- the command -------------------------------------------------------------------------

@pytest.mark.slow
def test_compare_states_what_it_can_conclude(tmp_path):
    out = tmp_path / "cmp"
    done = gumbelkit("compare", "--estimators", "rloo,st,gumbel_softmax", "--seeds", "2",
                     "--jobs", "2", "--tau", "jang", "--out", str(out), *TINY)
    assert done.returncode == 0, done.stderr
    printed = done.stdout
    assert "mean ± s.e., 2 seeds" in printed and "vs best, paired" in printed
    assert "standard error of the mean over 2 seeds" in printed
    assert "distinguishable from best?" in printed
    assert ("warning: with 2 seeds" in printed) == ("≈ best" in printed)
    assert "Temperature: st, gumbel_softmax trained with tau = max(0.5, 1 exp(-0.0001 t))" \
        in printed and "(--tau jang); rloo uses no temperature." in printed
    report = (out / "report.md").read_text()
    assert "vs best, paired" in report and "(--tau jang)" in report
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 6


def test_one_seed_warns(tmp_path):
    done = gumbelkit("compare", "--estimators", "st,st_gumbel", "--seeds", "1", "--jobs", "1",
                     "--out", str(tmp_path / "cmp"), *TINY)
    assert done.returncode == 0, done.stderr
    assert "warning: one seed measures no seed-to-seed spread" in done.stdout


@pytest.mark.parametrize("argv,needles", [
    (["--estimators", "arm"], ["arm needs binary variables (--classes 2)", "--classes 4"]),
    (["--batch-size", "100000"], ["--batch-size 100000 exceeds the", "choose 1 to"]),
])
def test_bad_values_found_before_training_exit_2(tmp_path, argv, needles):
    out = tmp_path / "cmp"
    done = gumbelkit("compare", "--seeds", "1", "--jobs", "1", "--out", str(out), *TINY, *argv)
    assert_one_line_error(done, 2, *needles)
    assert not out.exists()  # refused before any work


@pytest.mark.parametrize("value,needle", [
    ("st,,st", "empty estimator name in 'st,,st'"),
    ("st,", "empty estimator name in 'st,'"),
    ("st,rloo,st", "estimator st listed twice"),
])
def test_estimator_list_errors(value, needle):
    done = gumbelkit("compare", "--estimators", value)
    assert_one_line_error(done, 2, needle)


@pytest.mark.slow
def test_existing_report_is_kept_unless_force(tmp_path):
    out = tmp_path / "cmp"
    argv = ["compare", "--estimators", "st", "--seeds", "1", "--jobs", "1", "--out", str(out),
            *TINY]
    assert gumbelkit(*argv).returncode == 0
    report = (out / "report.md").read_text()
    done = gumbelkit(*argv, "--steps", "6")
    assert_one_line_error(done, 2, f"{out} already holds a report", "--force")
    assert (out / "report.md").read_text() == report
    done = gumbelkit(*argv, "--steps", "6", "--force")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "results.json").read_text())[0]["step"] == 6


def _wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _started(folder: Path) -> bool:
    metrics = folder / "metrics.jsonl"
    return metrics.exists() and metrics.stat().st_size > 0


def _interrupt(argv: list[str], ready) -> subprocess.CompletedProcess:
    """Start compare in its own process group, wait for ``ready()``, press Ctrl-C (SIGINT to
    the group, as a terminal does)."""
    process = subprocess.Popen([*GUMBELKIT, *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(ready)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


@pytest.mark.slow
def test_ctrl_c_starts_no_queued_run(tmp_path):
    out = tmp_path / "cmp"
    runs = out / "runs"
    argv = ["compare", "--estimators", "st", "--seeds", "4", "--jobs", "2", "--steps", "50000",
            "--hidden", "16", "--eval-every", "0", "--quiet", "--out", str(out)]
    done = _interrupt(argv, lambda: _started(runs / "st-seed0") and _started(runs / "st-seed1"))
    assert done.returncode == 130 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert "interrupted; finished: none; stopped with a checkpoint: st-seed0 at step" in \
        done.stderr
    assert not (runs / "st-seed2").exists() and not (runs / "st-seed3").exists()
    for seed in (0, 1):
        state = torch.load(runs / f"st-seed{seed}" / "checkpoint.pt", weights_only=True)
        assert 0 < state["step"] < 50000


@pytest.mark.slow
def test_ctrl_c_names_only_the_finished_runs(tmp_path):
    out = tmp_path / "cmp"
    runs = out / "runs"
    argv = ["compare", "--estimators", "st", "--seeds", "3", "--jobs", "1", "--steps", "1500",
            "--hidden", "16", "--eval-every", "0", "--quiet", "--out", str(out)]
    done = _interrupt(argv, lambda: _started(runs / "st-seed1"))
    assert done.returncode == 130 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert "; finished: st-seed0; stopped with a checkpoint: st-seed1 at step" in done.stderr
    assert "st-seed2" not in done.stderr and not (runs / "st-seed2").exists()


@pytest.mark.slow
def test_progress_on_a_terminal(tmp_path):
    """stderr is a pseudo-terminal: a status line with runs done and an ETA; --quiet: none."""
    def stderr_of(*extra: str) -> str:
        leader, follower = pty.openpty()
        argv = ["compare", "--estimators", "st", "--seeds", "2", "--jobs", "1", "--steps", "600",
                "--hidden", "16", "--eval-every", "0", "--out", str(tmp_path / "cmp"),
                "--force", *extra]
        process = subprocess.Popen([*GUMBELKIT, *argv], stdout=subprocess.DEVNULL,
                                   stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    data = os.read(leader, 4096)
                except OSError:  # the terminal closed with the process
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        process.wait(timeout=120)
        os.close(leader)
        assert process.returncode == 0
        return b"".join(chunks).decode(errors="replace")

    shown = stderr_of()
    assert "compare: 0/2 runs done; st-seed0 " in shown and "ETA " in shown
    assert "1/2 runs done" in shown and "Traceback" not in shown
    assert stderr_of("--quiet") == ""
