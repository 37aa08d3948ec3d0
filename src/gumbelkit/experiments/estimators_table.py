"""Measure every gradient estimator against the exact gradient and print a markdown table.

For each problem of the registry (gumbelkit.experiments.problems) and each
method of gumbelkit.estimate, draws independent gradient estimates with fixed
seeds and reports their bias, standard deviation, relative bias, mean cosine
similarity to the exact gradient and time per draw; saves a bias-versus-
standard-deviation plot.

Example:
    gumbelkit estimators --draws 1000 --seed 0 --plot estimators.png
"""

from __future__ import annotations

import argparse
import math
import time

from ..cli import usage_error
from .preflight import fits_in_memory, plot_file, seed_value

# Peak bytes per gradient draw over the whole table (measured: about 0.62 MB, set by
# the largest problem's replicated draws), with margin.
BYTES_PER_DRAW = 2**20

# (problem name, factory parameters): the rows of the table, in order.
PROBLEM_ROWS: tuple[tuple[str, dict], ...] = (
    ("bernoulli_toy", {"t": 0.45}),
    ("bernoulli_toy", {"t": 0.499}),
    ("poly", {"p": 1.5}),
    ("poly", {"p": 2.0}),
    ("poly", {"p": 3.0}),
    ("simplex_qp", {}),
    ("categorical_toy", {}),
    ("small_vae", {}),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--draws", type=int, default=1000,
                        help="independent gradient draws per cell (default 1000)")
    parser.add_argument("--seed", type=seed_value, default=0,
                        help="seed of the draws, in [0, 2**64) (default 0)")
    parser.add_argument("--tau", type=float, default=1.0,
                        help="temperature of the relaxed methods (default 1)")
    parser.add_argument("--plot", default="estimators.png",
                        help="where to save the bias-vs-std plot, an image file name such as "
                             "x.png, x.pdf or x.svg (default estimators.png; '' for none)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the counter-based noise is fastest "
                             "single-threaded on a shared machine)")
    parser.add_argument("--methods", default="",
                        help="comma-separated subset of methods (default: all)")


def _cell(value: float, digits: int = 3) -> str:
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def _plot(results: dict[str, list], path: str) -> None:
    """One panel per problem: every method on its own labelled row, sorted by bias (least
    at the top), with its bias (dot), standard deviation (diamond) and the Monte Carlo
    floor of the bias (bar) on one log axis, so no two labels share a place."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    names = list(results)
    cols = 4
    rows = math.ceil(len(names) / cols)
    most = max((len(results[n]) for n in names), default=1)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 0.26 * most * rows + 1.6 * rows),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        stats = sorted((s for s in results[name] if s.method != "exact"),
                       key=lambda s: (s.bias, s.std))
        y = range(len(stats))
        for i, s in zip(y, stats):
            low, high = min(v for v in (s.bias, s.std, s.bias_floor) if v > 0), max(s.bias, s.std)
            ax.plot([low, high], [i, i], color="0.85", lw=1, zorder=1)
            if s.bias_floor > 0:
                ax.plot([s.bias_floor], [i], "|", color="0.45", ms=9, mew=1.5, zorder=2)
            if s.std > 0:
                ax.plot([s.std], [i], "D", color="tab:orange", ms=5, mfc="none", mew=1.4, zorder=3)
            if s.bias > 0:
                ax.plot([s.bias], [i], "o", color="tab:blue", ms=5, zorder=4)
        ax.set_yticks(list(y), [s.method for s in stats], fontsize=8)
        ax.set_ylim(len(stats) - 0.5, -0.5)  # least biased at the top
        ax.set_xscale("log")
        ax.tick_params(axis="x", labelsize=8, which="both")
        ax.grid(axis="x", alpha=0.3, which="major")
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    legend = [Line2D([], [], marker="o", ls="", color="tab:blue", label="bias ||mean - exact||"),
              Line2D([], [], marker="D", ls="", color="tab:orange", mfc="none",
                     label="standard deviation of one draw"),
              Line2D([], [], marker="|", ls="", color="0.45", ms=9, mew=1.5,
                     label="bias floor std/sqrt(draws): a smaller bias is noise")]
    fig.legend(handles=legend, loc="upper center", ncol=3, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.995))
    fig.suptitle("Gradient estimators against the exact gradient, one panel per problem "
                 "(rows sorted by bias, least at the top; log scale)", fontsize=10, y=0.965)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _warm_up(methods: list[str], seed: int, tau: float) -> None:
    """One untimed call of every method, so one-time start-up costs (kernel library,
    autograd and dispatcher caches) stay out of the first rows' time/draw."""
    from gumbelkit.experiments.measurement import draw_gradients
    from gumbelkit.experiments.problems import make_problem

    binary = make_problem("bernoulli_toy")
    for method in methods:
        if method != "relax":  # relax's start-up is fitting its control, timed apart
            draw_gradients(method, binary, 2, seed,
                           tau=max(tau, 1.0) if method == "reinmax" else tau)


def run(args: argparse.Namespace) -> int:
    import torch

    from gumbelkit.estimators import ESTIMATORS
    from gumbelkit.experiments.measurement import gradient_stats
    from gumbelkit.experiments.problems import make_problem

    if args.draws < 2:
        usage_error("gumbelkit estimators: --draws must be >= 2")
    if not (args.tau > 0 and math.isfinite(args.tau)):
        usage_error(f"gumbelkit estimators: --tau must be > 0 and finite, got {args.tau}")
    if args.threads < 1:
        usage_error(f"gumbelkit estimators: --threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m] or list(ESTIMATORS)
    unknown = [m for m in methods if m not in ESTIMATORS]
    if unknown:
        usage_error(f"gumbelkit estimators: unknown method(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(ESTIMATORS)}")
    fits_in_memory("--draws", args.draws, args.draws * BYTES_PER_DRAW, BYTES_PER_DRAW, "draws")
    if args.plot:
        plot_file(args.plot)
    start = time.perf_counter()
    print(f"Gradient estimators against the exact gradient: {args.draws} draws per cell, "
          f"seed {args.seed}, tau {args.tau} (reinmax: max(tau, 1)), one sample per draw "
          f"(rloo: 2; arm/disarm: one antithetic pair; relax: control eta f + linear, fitted "
          f"first), torch threads {torch.get_num_threads()}.")
    print("bias = ||mean - exact||, std = sqrt(trace cov), cosine = mean over draws of "
          "cos(g, exact); a bias below 'floor' = std/sqrt(draws) is Monte Carlo noise.")
    _warm_up(methods, args.seed, args.tau)
    results: dict[str, list] = {}
    for name, params in PROBLEM_ROWS:
        problem = make_problem(name, **params)
        n_categories = problem.logits.shape[-1]
        print(f"\n### {problem.name}: {problem.description}\n")
        print("| method | bias | floor | std | rel. bias | cosine | time/draw (us) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        rows = []
        for method in methods:
            entry = ESTIMATORS[method]
            if entry.binary_only and n_categories != 2:
                print(f"| {method} | n/a (K={n_categories}; binary only) | | | | | |")
                continue
            if method == "exact" and not problem.enumerable:
                print(f"| {method} | refused (too many configurations) | | | | | |")
                continue
            tau = max(args.tau, 1.0) if method == "reinmax" else args.tau
            s = gradient_stats(method, problem, n_draws=args.draws, seed=args.seed, tau=tau)
            rows.append(s)
            print(f"| {method} | {_cell(s.bias)} | {_cell(s.bias_floor)} | {_cell(s.std)} | "
                  f"{_cell(s.relative_bias)} | {s.cosine:.3f} | {s.time_per_draw * 1e6:.1f} |")
        results[problem.name] = rows
    if args.plot:
        _plot(results, args.plot)
        print(f"\nplot: {args.plot}")
    print(f"total time {time.perf_counter() - start:.1f} s")
    return 0
