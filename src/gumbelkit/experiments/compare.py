"""Train the VAE with several estimators over several seeds; one table and report.

Redoes the categorical-VAE column of Jang et al. 2017, Table 1 (MNIST test
-ELBO: score function 110.6, straight-through 110.9, Gumbel-Softmax 101.5,
ST Gumbel-Softmax 107.8 nats) on this machine's data with today's estimators.
Each (estimator, seed) run trains in a worker process (--threads each), --jobs
at a time. The defaults finish in under 3 minutes on 2 CPU cores; the flags
scale it up. Writes report.md (table + overlaid curves), results.json,
metrics.jsonl (one line per run) and each run's files under runs/.

Examples:
  gumbelkit compare                                     # quick defaults
  gumbelkit compare --estimators st,gumbel_softmax --seeds 5 --steps 3000
  gumbelkit compare --tau exp:1.0:0.5:3e-5:1000 --steps 5000 --out runs/annealed
  gumbelkit compare --data mnist:~/data/mnist --latents 20 --classes 10 --hidden 512
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from .training import Interrupted, RunResult, TrainConfig
from .vae import add_training_arguments, config_from_args, positive_int, set_threads

DEFAULT_ESTIMATORS = ("rloo", "st", "gumbel_softmax", "st_gumbel", "reinmax", "gumbel_rao")
DEFAULTS = TrainConfig(steps=500, eval_every=100, checkpoint_every=0)

# Jang et al. 2017, Table 1, categorical VAE on binarized MNIST (test -ELBO, nats).
JANG_2017 = {"reinforce": "110.6 (SF)", "rloo": "110.6 (SF)", "st": "110.9",
             "gumbel_softmax": "101.5", "st_gumbel": "107.8"}


def estimator_list(text: str) -> list[str]:
    from .vae import estimator_name

    names = [estimator_name(n.strip()) for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"no estimator in {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"estimator listed twice in {text!r}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--estimators", type=estimator_list, default=list(DEFAULT_ESTIMATORS),
                        help=f"comma-separated methods (default {','.join(DEFAULT_ESTIMATORS)})")
    parser.add_argument("--seeds", type=positive_int, default=3,
                        help="seeds per estimator: 0, 1, ..., N-1 (default 3)")
    add_training_arguments(parser, DEFAULTS)
    parser.add_argument("--jobs", type=positive_int, default=None,
                        help="runs trained at once, in that many processes (default: CPU count)")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"),
                        help="output folder (default runs/compare)")


def _train_one(config: TrainConfig, out: Path, threads: int) -> RunResult:
    from .training import train

    set_threads(threads)
    return train(config, out)[0]


def _train_all(configs: list[TrainConfig], folders: list[Path], jobs: int,
               threads: int) -> list[RunResult]:
    """Train every run: in this process for one job, else in spawned worker processes."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from .training import train

    if jobs == 1:
        set_threads(threads)
        return [train(c, f)[0] for c, f in zip(configs, folders)]
    pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"))
    try:
        futures = [pool.submit(_train_one, c, f, threads) for c, f in zip(configs, folders)]
        results = [f.result() for f in futures]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def results_table(by_estimator: dict[str, list[RunResult]], iw_samples: int) -> str:
    """Jang et al. Table 1 layout: estimators as columns, measures as rows; best in bold."""
    from .report import markdown_table

    names = list(by_estimator)
    means = {n: statistics.fmean(r.final["neg_elbo"] for r in rs)
             for n, rs in by_estimator.items()}
    best = min(means, key=means.__getitem__)
    n_seeds = len(next(iter(by_estimator.values())))
    elbo = [_mean_std([r.final["neg_elbo"] for r in by_estimator[n]]) for n in names]
    elbo = [f"**{cell}**" if n == best else cell for n, cell in zip(names, elbo)]
    rows = [
        [f"test -ELBO, nats ({n_seeds} seed{'s' if n_seeds > 1 else ''})"] + elbo,
        [f"test -IWAE (k={iw_samples})"]
        + [_mean_std([r.final["iw_bound"] for r in by_estimator[n]]) for n in names],
        ["training steps/s"]
        + [f"{statistics.fmean(r.final['steps_per_sec'] for r in by_estimator[n]):.0f}"
           for n in names],
        ["samples per example"] + [str(by_estimator[n][0].config.samples) for n in names],
        ["Jang 2017, MNIST -ELBO"] + [JANG_2017.get(n, "-") for n in names],
    ]
    return markdown_table(["measure"] + names, rows)


def run(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .preflight import output_folder
    from .report import PLOTS, plot_curves

    try:
        configs = [config_from_args(args, name, seed=seed, checkpoint_every=0)
                   for name in args.estimators for seed in range(args.seeds)]
        load_dataset(args.data)  # a bad --data fails here, once, not in every worker
    except ValueError as exc:
        sys.stderr.write(f"gumbelkit compare: error: {exc}\n")
        return 2
    out: Path = output_folder(args.out)
    jobs = min(args.jobs or os.cpu_count() or 1, len(configs))
    print(f"training {len(configs)} runs ({len(args.estimators)} estimators x {args.seeds} "
          f"seeds, {args.steps} steps each) with {jobs} job{'s' if jobs > 1 else ''}...",
          flush=True)
    start = time.perf_counter()
    folders = [out / "runs" / f"{c.estimator}-seed{c.seed}" for c in configs]
    try:
        results = _train_all(configs, folders, jobs, args.threads)
    except (KeyboardInterrupt, Interrupted):
        sys.stderr.write(f"gumbelkit compare: interrupted; finished runs are in {out / 'runs'}\n")
        return 130
    except (ValueError, FloatingPointError) as exc:
        sys.stderr.write(f"gumbelkit compare: error: {exc}\n")
        return 1
    seconds = time.perf_counter() - start
    by_estimator: dict[str, list[RunResult]] = {n: [] for n in args.estimators}
    for result in results:
        by_estimator[result.config.estimator].append(result)
    table = results_table(by_estimator, args.iw_samples)
    plot_curves(list(by_estimator.items()), out / "training_curves.png")
    settings = {k: v for k, v in configs[0].to_dict().items() if k not in ("estimator", "seed")}
    (out / "config.json").write_text(json.dumps(
        {"estimators": args.estimators, "seeds": args.seeds, "jobs": jobs, **settings},
        indent=2) + "\n")
    finals = [{"estimator": r.config.estimator, "seed": r.config.seed, **r.final}
              for r in results]
    (out / "results.json").write_text(json.dumps(finals, indent=2) + "\n")
    with open(out / "metrics.jsonl", "w") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in finals)
    report = out / "report.md"
    report.write_text("\n".join([
        "# Estimator comparison: categorical VAE", "", table, "",
        f"Data: `{args.data}`; latent code {args.latents} x {args.classes}; {args.steps} steps "
        f"of batch {args.batch_size}, Adam lr {args.lr}, tau {args.tau}. Test -ELBO and the "
        "importance-weighted bound are in nats per image (lower is better), mean ± standard "
        "deviation over seeds; the best mean -ELBO is in bold. The Jang 2017 row is their "
        "MNIST result (784 pixels, 20 x 10 latents, many more steps), for orientation only: "
        "its scale is not comparable to other data.", "",
        f"{len(results)} runs in {seconds:.0f} s with {jobs} job(s); per-run files in "
        f"`runs/`.", "",
        "![training curves](training_curves.png)", "",
        PLOTS["training_curves.png"] + " One colour per estimator, mean over seeds.", ""]))
    print(table)
    print(f"{len(results)} runs in {seconds:.0f} s")
    print(f"report: {report}")
    return 0
