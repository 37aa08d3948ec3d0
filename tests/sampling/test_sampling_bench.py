"""`gumbelkit bench --sampler` runs end to end on a tiny problem (timings are never asserted)."""

import pytest

import gumbelkit
from gumbelkit.cli import main


def test_bench_sampler_prints_its_table(capsys):
    assert main(["bench", "--sampler", "--batch", "3", "--vocab", "64", "--repeats", "1",
                 "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("token sampler, logits [3, 64] float32")
    ours = [line for line in lines if "gumbelkit.sampling.sample" in line]
    cases = [line.split("  ")[0] for line in ours]
    assert len(ours) == 11 and sum(line.rstrip().endswith("x") for line in lines) == 12
    for scale in ("0.3", "1", "3", "10"):
        assert f"T=0.8, top-p 0.9, N(0, {scale}^2)" in cases
    assert "T=0.8, top-p 0.9, all equal" in cases
    assert "T=0.8, min-p 0.05, N(0, 1^2)" in cases


def test_bench_sampler_rejects_bad_sizes(capsys):
    for argv, message in ((["--vocab", "10"], "--vocab must be >= 50"),
                          (["--batch", "0"], "--batch must be >= 1")):
        with pytest.raises(SystemExit) as info:
            main(["bench", "--sampler", *argv])
        assert info.value.code == 2
        assert message in capsys.readouterr().err


def test_public_exports():
    assert "sampling" in gumbelkit.__all__
    assert gumbelkit.sampling.__all__ == ["BeamSearchOutput", "SamplerOutput", "StepFn",
                                          "beam_estimate", "sample",
                                          "sample_without_replacement",
                                          "stochastic_beam_search"]
