"""The `gumbelkit estimators` command: a markdown table per problem and a plot."""

from gumbelkit.cli import main


def test_estimators_command_prints_table_and_saves_plot(tmp_path, capsys):
    plot = tmp_path / "bias_std.png"
    code = main(["estimators", "--draws", "3", "--methods", "exact,st,arm", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0
    assert "| method | bias | floor | std | rel. bias | cosine | time/draw (us) |" in out
    for name in ("bernoulli_toy(t=0.45)", "poly(p=3.0)", "simplex_qp", "small_vae"):
        assert f"### {name}" in out
    assert "| exact | refused" in out and "| arm | n/a (K=8; binary only)" in out
    assert "| exact | 0 | 0 | 0 | 0 | 1.000 |" in out
    assert plot.stat().st_size > 1000


def test_estimators_command_rejects_bad_arguments(capsys):
    for argv in (["--draws", "1"], ["--methods", "nope"], ["--tau", "0"], ["--threads", "0"]):
        try:
            main(["estimators", *argv])
        except SystemExit as exit_:
            assert exit_.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
