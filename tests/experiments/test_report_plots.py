"""The plots people read: temperature.png of a VAE run and the estimators chart."""

import matplotlib
import pytest

from gumbelkit.cli import main

matplotlib.use("Agg")

TINY = ["--steps", "12", "--batch-size", "50", "--hidden", "16", "--iw-samples", "4",
        "--eval-every", "6", "--quiet"]


@pytest.fixture
def saved(monkeypatch):
    """The figures saved during the test, by file name, kept open for inspection."""
    from matplotlib.figure import Figure

    figures = {}
    original = Figure.savefig

    def savefig(self, path, *args, **kwargs):
        figures[str(path).rsplit("/", 1)[-1]] = self
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def test_temperature_plot_shows_the_spec_and_every_step(tmp_path, saved, capsys):
    spec = "step:0=1.0,5=0.5"
    assert main(["vae", "--estimator", "st_gumbel", "--tau", spec, "--out", str(tmp_path),
                 *TINY]) == 0
    ax = saved["temperature.png"].axes[0]
    assert ax.get_title(loc="left") == f"temperature: --tau {spec}"
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == list(range(12))
    assert list(line.get_ydata()) == [1.0] * 5 + [0.5] * 7
    report = (tmp_path / "report.md").read_text()
    assert f"(--tau {spec})" in report and "](temperature.png)" in report


def test_constant_tau_draws_no_temperature_plot(tmp_path, saved, capsys):
    assert main(["vae", "--out", str(tmp_path), *TINY]) == 0
    assert "temperature.png" not in saved and not (tmp_path / "temperature.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "No temperature plot: tau is constant over the run." in report
    assert "Temperature: constant tau = 1 (--tau 1.0)." in report
    assert "](temperature.png)" not in report


def test_estimators_plot_names_every_method_on_its_own_row(tmp_path, saved, capsys):
    methods = ["st", "rloo", "gumbel_softmax", "arm"]
    path = tmp_path / "estimators.png"
    assert main(["estimators", "--methods", ",".join(methods), "--draws", "4",
                 "--plot", str(path)]) == 0
    assert path.stat().st_size > 1000
    panels = [ax for ax in saved["estimators.png"].axes if ax.get_visible() and ax.axison]
    assert len(panels) == 8
    for ax in panels:
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert sorted(labels) == sorted(m for m in methods
                                        if m != "arm" or "bernoulli" in ax.get_title()
                                        or "poly" in ax.get_title())
        assert ax.get_xscale() == "log"
