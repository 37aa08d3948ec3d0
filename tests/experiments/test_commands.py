"""Every command end to end at tiny sizes: files, tables, plots, exit codes."""

import json

import pytest
import torch

from gumbelkit.cli import COMMANDS, SUMMARIES, main
from gumbelkit.experiments.checkpoint import CHECKPOINT_NAME

TINY = ["--steps", "12", "--batch-size", "50", "--hidden", "16", "--iw-samples", "4",
        "--eval-every", "6", "--quiet"]
PLOTS = ("training_curves.png", "temperature.png", "reconstructions.png", "samples.png")


def is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_registry_is_consistent():
    assert set(COMMANDS) == set(SUMMARIES)
    assert {"vae", "compare", "speed", "doctor"} <= set(COMMANDS)


@pytest.mark.parametrize("command", ["vae", "compare", "speed", "doctor"])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "Examples:" in out and f"gumbelkit {command}" in out


@pytest.mark.parametrize("argv", [
    ["vae", "--steps", "0"],
    ["vae", "--steps", "ten"],
    ["vae", "--lr", "-1"],
    ["vae", "--lr", "nan"],
    ["vae", "--tau", "0"],
    ["vae", "--tau", "exp:1:2"],
    ["vae", "--estimator", "magic"],
    ["vae", "--estimator", "relax"],
    ["compare", "--estimators", "st,relax"],
    ["estimators", "--draws", "0"],
    ["estimators", "--methods", "foo"],
    ["bench", "--threads", "0"],
    ["bench", "--shapes", "64x0"],
    ["bench", "--shapes", "64by8"],
    ["bench", "--shapes", "6\u00b2x8"],
    ["bench", "--sampler", "--vocab", "0"],
    ["demo", "--draws", "0"],
    ["vae", "--no-such-flag"],
    ["compare", "--estimators", "st,magic"],
    ["compare", "--seeds", "0"],
    ["speed", "--classes", "1"],
    ["doctor", "--verbose"],
    ["nonsense"],
])
def test_bad_flags_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gumbelkit")


def test_rloo_with_one_sample_is_refused(tmp_path, capsys):
    code = main(["vae", "--estimator", "rloo", "--samples", "1", "--out", str(tmp_path), *TINY])
    assert code == 2
    assert "needs --samples >= 2" in capsys.readouterr().err


def test_vae_writes_everything(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["vae", "--estimator", "st_gumbel", "--tau", "exp:1.0:0.5:3e-2:5",
                 "--out", str(out), *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert "test -ELBO" in printed and str(out / "report.md") in printed
    config = json.loads((out / "config.json").read_text())
    assert config["estimator"] == "st_gumbel" and config["steps"] == 12
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [m for m in lines if m["split"] == "train"]
    test = [m for m in lines if m["split"] == "test"]
    assert [m["step"] for m in train] == list(range(1, 13))
    assert [m["step"] for m in test] == [6, 12]
    assert train[0]["tau"] == 1.0 and train[-1]["tau"] < 1.0  # Jang's schedule decays
    assert all(m["neg_elbo"] >= m["iw_bound"] > 0 for m in test)
    report = (out / "report.md").read_text()
    assert "| st_gumbel" in report and "test -ELBO" in report
    for name in PLOTS:
        assert is_png(out / name) and f"]({name})" in report
    state = torch.load(out / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 12


def test_resume_refuses_another_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["vae", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    code = main(["vae", "--resume", str(out), "--lr", "0.01", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "different config" in err and "lr=0.003 in the checkpoint but 0.01 now" in err
    assert main(["vae", "--resume", str(tmp_path / "none"), *TINY]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["vae", "--out", str(out), *TINY]) == 2  # never overwrite a run silently
    assert "already holds a run" in capsys.readouterr().err


def test_compare_writes_one_report(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--estimators", "st,gumbel_softmax", "--seeds", "2", "--jobs", "1",
                 "--out", str(out), *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| measure" in printed and "gumbel_softmax" in printed and "±" in printed
    assert f"report: {out / 'report.md'}" in printed
    report = (out / "report.md").read_text()
    assert "Jang 2017" in report and "101.5" in report and "](training_curves.png)" in report
    assert is_png(out / "training_curves.png")
    results = json.loads((out / "results.json").read_text())
    assert sorted((r["estimator"], r["seed"]) for r in results) == [
        ("gumbel_softmax", 0), ("gumbel_softmax", 1), ("st", 0), ("st", 1)]
    assert all(r["steps_per_sec"] > 0 and r["neg_elbo"] > 0 for r in results)


def test_speed_prints_ratios(capsys):
    code = main(["speed", "--classes", "3,5", "--steps", "2", "--rounds", "2",
                 "--batch-size", "20", "--hidden", "16"])
    assert code == 0
    out = capsys.readouterr().out
    assert "speed-up" in out and "| 3 " in out and "| 5 " in out


def test_doctor_json(capsys):
    code = main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert len(report["checks"]) == 7
    assert code == (0 if report["ok"] else 1)
    assert all(c["ok"] for c in report["checks"] if c["check"] != "the fused kernel is active")
