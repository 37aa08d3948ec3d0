"""Reports people can read: a Markdown file with a table and its PNG plots inline.

Plots are drawn with Matplotlib's non-interactive ``Agg`` backend (no display
needed). ``write_run_report`` writes one VAE run's ``report.md`` and plots;
``compare`` reuses :func:`plot_curves` and :func:`markdown_table`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..schedules import Constant
from .training import Run, RunResult

PLOTS = {
    "training_curves.png": "Training curves: the training loss (the estimator's Monte Carlo "
                           "-ELBO, moving average) and the test -ELBO at each evaluation.",
    "temperature.png": "The temperature tau used at each training step (not drawn for a "
                       "constant tau).",
    "reconstructions.png": "Test images (top row) and their reconstructions from the most "
                           "likely code (bottom row, pixel probabilities).",
    "samples.png": "Images decoded from codes drawn from the uniform prior.",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table, columns padded so it also reads as plain text."""
    cells = [list(header)] + [list(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (so the curve starts at step 1)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_curves(runs: Sequence[tuple[str, Sequence[RunResult]]], path: Path) -> None:
    """Training loss and test -ELBO against step; one colour per label, mean over its runs."""
    plt = _pyplot()
    fig, (ax_train, ax_test) = plt.subplots(1, 2, figsize=(11, 4))
    for label, results in runs:
        steps = [t["step"] for t in results[0].train]
        losses = [sum(r.train[i]["loss"] for r in results) / len(results)
                  for i in range(len(steps))]
        window = max(1, len(steps) // 50)
        line, = ax_train.plot(steps, moving_average(losses, window), label=label, lw=1.2)
        eval_steps = [e["step"] for e in results[0].evals]
        test = [sum(r.evals[i]["neg_elbo"] for r in results) / len(results)
                for i in range(len(eval_steps))]
        ax_test.plot(eval_steps, test, "o-", color=line.get_color(), label=label, ms=3)
    ax_train.set(xlabel="step", ylabel="training loss (nats)", title="training loss")
    ax_test.set(xlabel="step", ylabel="test -ELBO (nats)", title="test -ELBO")
    for ax in (ax_train, ax_test):
        ax.grid(alpha=0.3)
    ax_test.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def describe_tau(spec: str) -> str:
    """The temperature protocol of a ``--tau`` spec in words.

    Example:
        >>> describe_tau("1.0"), describe_tau("linear:1:0.5:100")
        ('constant tau = 1', 'tau from 1 to 0.5 linearly over 100 steps, then held')
    """
    from .. import schedules

    s = schedules.parse_schedule(spec)
    if isinstance(s, schedules.Constant):
        return f"constant tau = {s.tau:g}"
    if isinstance(s, schedules.ExponentialEvery):
        return (f"tau = max({s.tau_min:g}, {s.tau0:g} exp(-{s.rate:g} t)), recomputed every "
                f"{s.every} steps (Jang et al. 2017)")
    kinds = {schedules.Linear: "linearly", schedules.Exponential: "exponentially",
             schedules.Cosine: "on a cosine"}
    if type(s) in kinds:
        return (f"tau from {s.tau_max:g} to {s.tau_min:g} {kinds[type(s)]} over {s.steps} "
                "steps, then held")
    return "tau " + ", ".join(f"{tau:g} from step {step}" for step, tau in s.milestones)


def plot_temperature(spec: str, taus: Sequence[tuple[int, float]], path: Path) -> None:
    """tau against the training step, one point per step trained (``(step, tau)`` pairs,
    drawn as held between steps), titled with the user's ``--tau`` spec."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    steps = [s for s, _ in taus]
    ax.plot(steps, [t for _, t in taus], lw=1.5, drawstyle="steps-post")
    ax.set(xlabel="step", ylabel="tau")
    ax.set_title(f"temperature: --tau {spec}", fontsize=10, loc="left", wrap=True)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_images(rows: Sequence[torch.Tensor], shape: tuple[int, int], path: Path,
                title: str) -> None:
    """A grid of grey images: each tensor in ``rows`` is ``[n, pixels]``, one grid row each."""
    plt = _pyplot()
    n = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(0.8 * n, 0.8 * len(rows) + 0.4),
                             squeeze=False)
    for i, images in enumerate(rows):
        for j in range(n):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(images):
                ax.imshow(images[j].detach().cpu().reshape(shape).numpy(), cmap="gray_r",
                          vmin=0, vmax=1, interpolation="nearest")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fmt(x: float, digits: int = 2) -> str:
    return "nan" if math.isnan(x) else f"{x:.{digits}f}"


def write_run_report(run: Run, result: RunResult) -> Path:
    """Write the plots and ``report.md`` of one VAE run into ``run.out``; return its path."""
    assert run.out is not None
    out, config = run.out, run.config
    plot_curves([(config.estimator, [result])], out / "training_curves.png")
    constant = isinstance(run.schedule, Constant)  # a flat line says nothing: not drawn
    if not constant:
        plot_temperature(config.tau, [(t["step"] - 1, t["tau"]) for t in result.train],
                         out / "temperature.png")
    shown = run.test_x[:10]
    plot_images([shown, run.model.reconstruct(shown)], run.image_shape,
                out / "reconstructions.png", "test images (top) and reconstructions (bottom)")
    prior = run.model.sample_prior(20, seed=config.seed)
    plot_images([prior[:10], prior[10:]], run.image_shape, out / "samples.png",
                "decoded samples from the uniform prior")
    final = result.final
    table = markdown_table(
        ["estimator", "tau", "steps", "test -ELBO", f"test -IWAE (k={config.iw_samples})",
         "steps/s"],
        [[config.estimator, config.tau, str(final["step"]), fmt(final["neg_elbo"]),
          fmt(final["iw_bound"]), fmt(final["steps_per_sec"], 1)]])
    settings = ", ".join(f"{k}={v}" for k, v in config.to_dict().items())
    body = [f"# Categorical VAE: {config.estimator}", "", table, "",
            f"Data: `{config.data}` ({len(run.train_x)} train / {len(run.test_x)} test images, "
            f"{run.train_x.shape[1]} binary pixels). Latent code: {config.latents} variables x "
            f"{config.classes} classes. Numbers are in nats per image (lower is better).", "",
            f"Settings: {settings}.", ""]
    body += [f"Temperature: {describe_tau(config.tau)} (--tau {config.tau}).", ""]
    for name, caption in PLOTS.items():
        if name == "temperature.png" and constant:
            body += ["No temperature plot: tau is constant over the run.", ""]
            continue
        body += [f"![{name}]({name})", "", caption, ""]
    path = out / "report.md"
    path.write_text("\n".join(body))
    return path
