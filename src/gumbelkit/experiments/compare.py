"""Train the VAE with several estimators over several seeds; one table and report.

Redoes the categorical-VAE column of Jang et al. 2017, Table 1 (MNIST test
-ELBO: score function 110.6, straight-through 110.9, Gumbel-Softmax 101.5,
ST Gumbel-Softmax 107.8 nats) on this machine's data with today's estimators.
Each (estimator, seed) run trains in a worker process (--threads each), --jobs
at a time. The defaults finish in under 3 minutes on 2 CPU cores; the flags
scale it up. Writes report.md (table + overlaid curves), results.json,
metrics.jsonl (one line per run) and each run's files under runs/.

The table gives each method's test -ELBO as mean ± standard error over the
seeds and its paired difference from the best method (runs with the same
seed share initial weights, minibatch order and evaluation noise), marks the
methods the seeds cannot tell from the best, and warns when the seeds are too
few to separate the methods. On a terminal it shows progress (runs done, each
running run's step, an ETA) unless --quiet; Ctrl-C stops every run at its next
step and names the runs that finished.

Examples:
  gumbelkit compare                                     # quick defaults
  gumbelkit compare --estimators st,gumbel_softmax --seeds 10 --steps 3000
  gumbelkit compare --estimators gumbel_softmax,st_gumbel --tau jang --steps 5000
  gumbelkit compare --tau exp:1.0:0.5:3e-5:1000 --steps 5000 --out runs/annealed
  gumbelkit compare --data mnist:~/data/mnist --latents 20 --classes 10 --hidden 512
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .training import RunResult, TrainConfig
from .vae import add_training_arguments, config_from_args, positive_int, set_threads

DEFAULT_ESTIMATORS = ("rloo", "st", "gumbel_softmax", "st_gumbel", "reinmax", "gumbel_rao")
DEFAULTS = TrainConfig(steps=500, eval_every=100, checkpoint_every=0)

# Jang et al. 2017, Table 1, categorical VAE on binarized MNIST (test -ELBO, nats).
JANG_2017 = {"reinforce": "110.6 (SF)", "rloo": "110.6 (SF)", "st": "110.9",
             "gumbel_softmax": "101.5", "st_gumbel": "107.8"}

# Methods whose gradient does not depend on the temperature (score function, ARM family).
TAU_FREE = frozenset({"exact", "reinforce", "rloo", "arm", "disarm"})

# Files a finished comparison writes into --out; one of them there means a report exists.
REPORT_FILES = ("report.md", "results.json", "metrics.jsonl", "config.json",
                "training_curves.png")

# Student t quantile t_{0.975, df} for df = 1..30 (two-sided 95%), from the standard tables.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df >= 1`` degrees of freedom.

    Table values for ``df <= 30``; above, the Cornish-Fisher expansion
    ``z + (z^3 + z) / (4 df) + (5 z^5 + 16 z^3 + 3 z) / (96 df^2)`` with
    ``z = 1.959964`` (error below 1e-3; Abramowitz & Stegun 26.7.5).

    Example:
        >>> t_quantile_975(2), round(t_quantile_975(1000), 3)
        (4.303, 1.962)
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be an integer >= 1, got {df!r}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Comparison:
    """Test -ELBO per method over paired seeds, and each method against the best.

    ``mean[m]`` and ``se[m]`` are the mean and its standard error
    ``stdev / sqrt(n)``; ``diff[m] = (d, h)``: ``d`` the mean over seeds of
    ``elbo[m][s] - elbo[best][s]`` and ``h`` the half-width of its 95% Student t
    interval, ``t_{0.975, n-1} stdev(d_s) / sqrt(n)``; ``tied`` the methods whose
    interval contains 0 (the seeds cannot tell them from the best). With one
    seed, ``se`` and ``h`` are NaN and nothing is tied or separated.
    """

    n_seeds: int
    best: str
    mean: dict[str, float]
    se: dict[str, float]
    diff: dict[str, tuple[float, float]]
    tied: tuple[str, ...]
    worse: tuple[str, ...]


def compare_methods(neg_elbo: dict[str, Sequence[float]]) -> Comparison:
    """Compare methods whose ``neg_elbo[m][s]`` values are paired by seed ``s`` (lower is better).

    Example:
        >>> c = compare_methods({"a": [10.0, 11.0, 12.0], "b": [10.5, 11.4, 12.6]})
        >>> c.best, round(c.diff["b"][0], 2), c.worse
        ('a', 0.5, ('b',))
    """
    counts = {len(v) for v in neg_elbo.values()}
    if not neg_elbo or len(counts) != 1 or 0 in counts:
        raise ValueError(f"every method needs the same number (>= 1) of seeds, got "
                         f"{ {m: len(v) for m, v in neg_elbo.items()} }")
    n = counts.pop()
    mean = {m: statistics.fmean(v) for m, v in neg_elbo.items()}
    se = {m: statistics.stdev(v) / math.sqrt(n) if n > 1 else math.nan
          for m, v in neg_elbo.items()}
    best = min(mean, key=mean.__getitem__)
    diff: dict[str, tuple[float, float]] = {}
    tied, worse = [], []
    for m, values in neg_elbo.items():
        if m == best:
            continue
        d = [a - b for a, b in zip(values, neg_elbo[best])]
        half = (t_quantile_975(n - 1) * statistics.stdev(d) / math.sqrt(n)) if n > 1 else math.nan
        diff[m] = (statistics.fmean(d), half)
        if n > 1:
            (worse if diff[m][0] - half > 0 else tied).append(m)
    return Comparison(n, best, mean, se, diff, tuple(tied), tuple(worse))


def conclusions(c: Comparison) -> list[str]:
    """What the table lets one conclude, and a warning when the seeds are too few."""
    n = c.n_seeds
    lines = [f"± is the standard error of the mean over {n} seed{'s' if n > 1 else ''} "
             "(standard deviation / sqrt(seeds)). Runs with the same seed start from the same "
             "weights and see the same minibatches, so each method is compared with the best "
             f"({c.best}) seed by seed: 'vs best' is the mean paired difference ± the half-width "
             f"of its 95% Student t interval ({max(n - 1, 1)} degree"
             f"{'s' if n > 2 else ''} of freedom), per comparison, not corrected for picking "
             "the best from the same runs."]
    if n == 1:
        lines.append("warning: one seed measures no seed-to-seed spread, so no difference in "
                     "this table can be told from seed noise; use --seeds 5 or more.")
    elif c.tied:
        lines.append(f"warning: with {n} seeds, {', '.join(c.tied)} cannot be told apart from "
                     f"{c.best} (their 95% interval contains 0): their order in this table is "
                     "seed noise; run more seeds (e.g. --seeds 10) to separate them.")
    else:
        lines.append(f"Every other method is worse than {c.best} at 95%.")
    return lines


def estimator_list(text: str) -> list[str]:
    from .vae import estimator_name

    names = [n.strip() for n in text.split(",")]
    if not any(names):
        raise argparse.ArgumentTypeError(f"no estimator in {text!r}")
    if "" in names:
        raise argparse.ArgumentTypeError(f"empty estimator name in {text!r} (a stray comma)")
    names = [estimator_name(n) for n in names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"estimator {', '.join(twice)} listed twice in "
                                         f"{text!r}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--estimators", type=estimator_list, default=list(DEFAULT_ESTIMATORS),
                        help=f"comma-separated methods (default {','.join(DEFAULT_ESTIMATORS)})")
    parser.add_argument("--seeds", type=positive_int, default=3,
                        help="seeds per estimator: 0, 1, ..., N-1 (default 3; the table warns "
                        "when they are too few to separate the methods)")
    add_training_arguments(parser, DEFAULTS)
    parser.add_argument("--jobs", type=positive_int, default=None,
                        help="runs trained at once, in that many processes (default: CPU count)")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"),
                        help="output folder (default runs/compare)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite a report already in --out")


def _preflight(args: argparse.Namespace) -> list[TrainConfig]:
    """Every check that needs no training: a ValueError names the bad value."""
    from ..estimators import ESTIMATORS
    from .data import load_dataset

    configs = [config_from_args(args, name, seed=seed, checkpoint_every=0)
               for name in args.estimators for seed in range(args.seeds)]
    binary = [n for n in args.estimators if ESTIMATORS[n].binary_only]
    if binary and args.classes != 2:
        many = len(binary) > 1
        raise ValueError(f"estimator{'s' if many else ''} {', '.join(binary)} "
                         f"need{'' if many else 's'} binary variables (--classes 2), got "
                         f"--classes {args.classes}")
    train_x, _, _ = load_dataset(args.data)  # a bad --data fails here, once, not per worker
    if args.batch_size > len(train_x):
        raise ValueError(f"--batch-size {args.batch_size} exceeds the {len(train_x)} training "
                         f"images of {args.data}; choose 1 to {len(train_x)}")
    out: Path = args.out  # whether it can be a folder at all: preflight.output_folder
    held = [name for name in REPORT_FILES if (out / name).exists()]
    if held and not args.force:
        raise ValueError(f"{out} already holds a report ({held[0]}); choose another --out, "
                         "or add --force to overwrite it")
    return configs


def _last_step(folder: Path) -> int:
    """The step of the last line of a running run's metrics.jsonl (0 before the first)."""
    try:
        with open(folder / "metrics.jsonl", "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            lines = handle.read().splitlines()
        complete = lines[-2:] if lines else []
        for line in reversed(complete):
            try:
                return int(json.loads(line)["step"])
            except (ValueError, KeyError):
                continue
    except OSError:
        pass
    return 0


class _Progress:
    """One status line on a terminal's stderr: runs done, each running run's step, an ETA."""

    def __init__(self, total: int, steps: int, enabled: bool) -> None:
        self.total, self.steps = total, steps
        self.enabled = enabled and sys.stderr.isatty()
        self.start = time.perf_counter()

    def show(self, done: int, running: dict[str, Path]) -> None:
        if not self.enabled:
            return
        at = {name: _last_step(folder) for name, folder in running.items()}
        progress = done * self.steps + sum(at.values())
        elapsed = time.perf_counter() - self.start
        eta = "?"
        if progress:
            left = elapsed * (self.total * self.steps - progress) / progress
            eta = f"{int(left) // 60}:{int(left) % 60:02d}"
        parts = [f"compare: {done}/{self.total} runs done"]
        parts += [f"{name} {step}/{self.steps}" for name, step in at.items()]
        parts.append(f"ETA {eta}")
        width = shutil.get_terminal_size().columns - 1
        sys.stderr.write("\r" + "; ".join(parts)[:width] + "\x1b[K")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _worker(conn: Any, stop: Any, threads: int) -> None:
    """Train the runs sent over ``conn`` one at a time; reply (index, status, payload).

    The parent starts workers with SIGINT ignored, so a Ctrl-C during start-up
    cannot kill one mid-import, and a worker ignores it between runs too: it is
    interruptible (the default handler, which ``train`` turns into a checkpoint
    and :class:`Interrupted`) only while a run trains, so a repeated Ctrl-C cannot
    cut a reply short (the parent would read the closed pipe as a dead worker).
    The parent stops the runs through the ``stop`` event, not by signalling the
    workers: ``train`` asks it between steps (a run then checkpoints as on a
    signal), and a run not started yet is skipped. A terminal's Ctrl-C reaches
    the workers as well, and either way each run stops once.
    """
    from .training import Interrupted, train

    set_threads(threads)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        index, config, folder = task
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if stop.is_set():
                reply: tuple = (index, "skipped", None)
            else:
                reply = (index, "done", train(config, folder, stop=stop.is_set)[0])
        except Interrupted as exc:
            reply = (index, "stopped", exc.step)
        except KeyboardInterrupt:
            reply = (index, "stopped", None)
        except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
            reply = (index, "error", str(exc) or type(exc).__name__)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            conn.send(reply)
        except BrokenPipeError:
            return


@dataclass
class _Outcome:
    results: dict[int, RunResult]
    stopped: dict[int, int | None]
    error: tuple[int, str] | None = None
    signum: int = 0  # the signal that stopped the comparison, 0 if none did


def _train_all(configs: list[TrainConfig], folders: list[Path], jobs: int, threads: int,
               progress: _Progress) -> _Outcome:
    """Train every run in ``jobs`` worker processes, handing a run to a worker only when it
    is idle, so that on Ctrl-C or an error no queued run starts and the running ones stop
    at their next step (with a checkpoint)."""
    from multiprocessing import get_context
    from multiprocessing.connection import wait

    ctx = get_context("spawn")
    stop = ctx.Event()
    workers = []
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through exec
    try:
        for _ in range(jobs):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(child, stop, threads), daemon=True)
            process.start()
            child.close()
            workers.append((process, parent))
    finally:
        signal.signal(signal.SIGINT, previous_int)
    outcome = _Outcome({}, {})
    queue = list(range(len(configs)))
    busy: dict[Any, int] = {}
    idle = [conn for _, conn in workers]

    def collect(timeout: float) -> None:
        for conn in wait(list(busy), timeout):
            index = busy.pop(conn)
            try:
                _, status, payload = conn.recv()
            except (EOFError, OSError):
                status, payload = "error", "its worker process died"
            else:
                idle.append(conn)
            if status == "done":
                outcome.results[index] = payload
            elif status == "stopped":  # a signal reached the worker alone: stop them all
                outcome.stopped[index] = payload
                outcome.signum = outcome.signum or signal.SIGINT
            elif status == "error" and outcome.error is None:
                outcome.error = (index, payload)

    def on_term(signum: int, frame: Any) -> None:
        outcome.signum = signum
        raise KeyboardInterrupt

    previous_term = signal.signal(signal.SIGTERM, on_term)
    try:
        while (queue or busy) and outcome.error is None and not outcome.signum:
            while idle and queue:
                conn = idle.pop()
                busy[conn] = queue.pop(0)
                conn.send((busy[conn], configs[busy[conn]], folders[busy[conn]]))
            collect(0.5)
            progress.show(len(outcome.results),
                          {folders[i].name: folders[i] for i in busy.values()})
    except KeyboardInterrupt:
        outcome.signum = outcome.signum or signal.SIGINT
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        progress.close()
        stop.set()  # the busy workers' runs stop at their next step, with a checkpoint
        try:
            deadline = time.monotonic() + 60
            while busy and time.monotonic() < deadline:
                collect(deadline - time.monotonic())
        except KeyboardInterrupt:
            outcome.signum = outcome.signum or signal.SIGINT
        for _, conn in workers:
            try:
                conn.send(None)
            except OSError:
                pass
        for process, _ in workers:
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join()
    return outcome


def _pm(mean: float, se: float) -> str:
    return f"{mean:.2f}" if math.isnan(se) else f"{mean:.2f} ± {se:.2f}"


def results_table(by_estimator: dict[str, list[RunResult]], iw_samples: int,
                  comparison: Comparison) -> str:
    """Jang et al. Table 1 layout: estimators as columns, measures as rows; best in bold."""
    from .report import markdown_table

    names = list(by_estimator)
    c = comparison
    n = c.n_seeds
    elbo = [_pm(c.mean[m], c.se[m]) for m in names]
    elbo = [f"**{cell}**" if m == c.best else cell for m, cell in zip(names, elbo)]

    def versus(m: str) -> str:
        if m == c.best:
            return "best"
        d, half = c.diff[m]
        return f"{d:+.2f}" if math.isnan(half) else f"{d:+.2f} ± {half:.2f}"

    def verdict(m: str) -> str:
        return "best" if m == c.best else "≈ best" if m in c.tied else \
            "worse" if m in c.worse else "?"

    iw = {m: [r.final["iw_bound"] for r in by_estimator[m]] for m in names}
    rows = [
        [f"test -ELBO, nats (mean ± s.e., {n} seed{'s' if n > 1 else ''})"] + elbo,
        ["vs best, paired (± 95% interval)"] + [versus(m) for m in names],
        ["distinguishable from best?"] + [verdict(m) for m in names],
        [f"test -IWAE (k={iw_samples}), mean ± s.e."]
        + [_pm(statistics.fmean(iw[m]),
               statistics.stdev(iw[m]) / math.sqrt(n) if n > 1 else math.nan) for m in names],
        ["temperature"] + ["not used" if m in TAU_FREE else by_estimator[m][0].config.tau
                           for m in names],
        ["training steps/s"]
        + [f"{statistics.fmean(r.final['steps_per_sec'] for r in by_estimator[m]):.0f}"
           for m in names],
        ["samples per example"] + [str(by_estimator[m][0].config.samples) for m in names],
        ["Jang 2017, MNIST -ELBO"] + [JANG_2017.get(m, "-") for m in names],
    ]
    return markdown_table(["measure"] + names, rows)


def _run_label(config: TrainConfig) -> str:
    return f"{config.estimator}-seed{config.seed}"


def run(args: argparse.Namespace) -> int:
    from .preflight import output_folder
    from .report import PLOTS, describe_tau, plot_curves

    try:
        configs = _preflight(args)
    except ValueError as exc:
        sys.stderr.write(f"gumbelkit compare: error: {exc}\n")
        return 2
    out: Path = output_folder(args.out)
    folders = [out / "runs" / _run_label(c) for c in configs]
    for folder in folders:  # --force: no file of an earlier run may mix with the new one
        if folder.is_dir():
            shutil.rmtree(folder)
    jobs = min(args.jobs or os.cpu_count() or 1, len(configs))
    n_est = len(args.estimators)
    print(f"training {len(configs)} runs ({n_est} estimator{'s' if n_est > 1 else ''} x "
          f"{args.seeds} seed{'s' if args.seeds > 1 else ''}, {args.steps} steps each) with "
          f"{jobs} job{'s' if jobs > 1 else ''}...",
          flush=True)
    start = time.perf_counter()
    outcome = _train_all(configs, folders, jobs, args.threads,
                         _Progress(len(configs), args.steps, enabled=not args.quiet))
    if outcome.signum or outcome.error is not None:
        finished = [_run_label(configs[i]) for i in sorted(outcome.results)]
        stopped = [_run_label(configs[i]) + (f" at step {s}" if s is not None else "")
                   for i, s in sorted(outcome.stopped.items())]
        tail = (f"; finished: {', '.join(finished) or 'none'}"
                + (f"; stopped with a checkpoint: {', '.join(stopped)}" if stopped else "")
                + f"; runs are in {out / 'runs'}")
        if outcome.error is not None:
            index, message = outcome.error
            sys.stderr.write(f"gumbelkit compare: error: run {_run_label(configs[index])}: "
                             f"{message}{tail}\n")
            return 1
        sys.stderr.write(f"gumbelkit compare: interrupted{tail}\n")
        return 128 + outcome.signum
    seconds = time.perf_counter() - start
    results = [outcome.results[i] for i in range(len(configs))]
    by_estimator: dict[str, list[RunResult]] = {n: [] for n in args.estimators}
    for result in results:  # configs are in seed order, so the lists are paired by seed
        by_estimator[result.config.estimator].append(result)
    comparison = compare_methods({m: [r.final["neg_elbo"] for r in rs]
                                  for m, rs in by_estimator.items()})
    table = results_table(by_estimator, args.iw_samples, comparison)
    notes = conclusions(comparison)
    relaxed = [m for m in args.estimators if m not in TAU_FREE]
    protocol = (f"Temperature: {', '.join(relaxed)} trained with {describe_tau(args.tau)} "
                f"(--tau {args.tau})" if relaxed else "Temperature: not used by these methods")
    free = [m for m in args.estimators if m in TAU_FREE]
    protocol += (f"; {', '.join(free)} use{'s' if len(free) == 1 else ''} no temperature."
                 if free else ".")
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
        "# Estimator comparison: categorical VAE", "", table, "", *notes, "", protocol, "",
        f"Data: `{args.data}`; latent code {args.latents} x {args.classes}; {args.steps} steps "
        f"of batch {args.batch_size}, Adam lr {args.lr}. Test -ELBO and the "
        "importance-weighted bound are in nats per image (lower is better); the best mean "
        "-ELBO is in bold. The Jang 2017 row is their MNIST result (784 pixels, 20 x 10 "
        "latents, many more steps), for orientation only: its scale is not comparable to "
        "other data.", "",
        f"{len(results)} runs in {seconds:.0f} s with {jobs} job(s); per-run files in "
        f"`runs/`.", "",
        "![training curves](training_curves.png)", "",
        PLOTS["training_curves.png"] + " One colour per estimator, mean over seeds.", ""]))
    print(table)
    for line in [*notes, protocol]:
        print(line)
    print(f"{len(results)} runs in {seconds:.0f} s")
    print(f"report: {report}")
    return 0
