"""Train a categorical VAE with one gradient estimator and write a report.

The model: N latent variables x K classes, MLP encoder and decoder,
Bernoulli pixels, KL to a uniform prior (Jang et al. 2017, Section 4.2).
Writes config.json, metrics.jsonl, report.md and PNG plots to --out, and a
checkpoint every --checkpoint-every steps and on Ctrl-C / SIGTERM.
--resume DIR continues the run in DIR with the flags in DIR/config.json;
--steps N (N above the run's steps) extends it; any other flag that differs
from the run's is refused (see docs/training.md).

Examples:
  gumbelkit vae --estimator gumbel_softmax --tau 1.0 --steps 2000 --out runs/gs
  gumbelkit vae --estimator st_gumbel --tau exp:1.0:0.5:3e-5:1000 --out runs/stgs
  gumbelkit vae --estimator rloo --samples 4 --lr 3e-4 --out runs/rloo
  gumbelkit vae --data mnist:~/data/mnist --latents 20 --hidden 512 --out runs/mnist
  gumbelkit vae --resume runs/stgs                                        # after Ctrl-C
  gumbelkit vae --resume runs/stgs --steps 4000                           # extend the run
  torchrun --nproc_per_node=2 -m gumbelkit vae --out runs/ddp             # DDP, gloo on CPU
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .preflight import seed_value
from .training import TrainConfig

DEFAULTS = TrainConfig()


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``, else a one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def tau_spec(text: str) -> str:
    from ..schedules import parse_schedule

    try:
        parse_schedule(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def estimator_name(text: str) -> str:
    from ..estimators import METHODS

    usable = sorted(set(METHODS) - {"relax"})
    if text == "relax":
        raise argparse.ArgumentTypeError("relax needs a learnable control variate, which only "
                                         "the Python API takes (gumbelkit.estimate(..., "
                                         "control=...)); choose from " + ", ".join(usable))
    if text not in METHODS:
        raise argparse.ArgumentTypeError(f"unknown estimator {text!r}; choose from "
                                         f"{', '.join(usable)}")
    return text


def device_name(text: str) -> str:
    import torch

    if text not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected 'cpu' or 'cuda', got {text!r}")
    if text == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("cuda is not available on this machine")
    return text


def set_threads(n: int) -> None:
    """Intra-op CPU threads; tiny ops pay more in thread hand-offs than they gain."""
    import torch

    torch.set_num_threads(n)


def add_training_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """Flags shared by ``vae`` and ``compare`` (the model, data and optimizer)."""
    d = defaults
    parser.add_argument("--data", default=d.data, help="'digits' (embedded 8x8 digits) or "
                        f"'mnist:PATH' (IDX folder or .npz) (default {d.data})")
    parser.add_argument("--tau", type=tau_spec, default=d.tau,
                        help="temperature: a number or a schedule, e.g. jang (Jang et al. "
                        "2017's protocol, jang:1:0.5:1e-4:500), exp:1.0:0.5:3e-5:1000, "
                        f"linear:1:0.5:1000, cos:1:0.5:1000 (default {d.tau})")
    parser.add_argument("--samples", type=positive_int, default=None,
                        help="samples per example for the estimator (default: the fewest it "
                        "takes, 1, or 2 for rloo)")
    parser.add_argument("--latents", type=positive_int, default=d.latents,
                        help=f"number of categorical latent variables N (default {d.latents})")
    parser.add_argument("--classes", type=int_at_least(2), default=d.classes,
                        help=f"classes per latent variable K >= 2 (default {d.classes})")
    parser.add_argument("--hidden", type=int_at_least(2), default=d.hidden,
                        help=f"width of the first hidden layer (default {d.hidden})")
    parser.add_argument("--steps", type=positive_int, default=d.steps,
                        help=f"training steps (default {d.steps})")
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                        help=f"images per step and process (default {d.batch_size})")
    parser.add_argument("--lr", type=positive_float, default=d.lr,
                        help=f"Adam learning rate (default {d.lr})")
    parser.add_argument("--iw-samples", type=positive_int, default=d.iw_samples,
                        help="samples per test image for -ELBO and the importance-weighted "
                        f"bound (default {d.iw_samples})")
    parser.add_argument("--eval-every", type=nonnegative_int, default=d.eval_every,
                        help="evaluate the test set every this many steps (default 0: ten "
                        "times per run)")
    parser.add_argument("--device", type=device_name, default=d.device,
                        help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="CPU threads per process (default 1: these small models run "
                        "fastest on one; more only helps wide --hidden)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (it is also off when stderr is not a terminal)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--estimator", type=estimator_name, default=DEFAULTS.estimator,
                        help=f"any method of gumbelkit.estimate (default {DEFAULTS.estimator})")
    add_training_arguments(parser, DEFAULTS)
    parser.add_argument("--seed", type=seed_value, default=DEFAULTS.seed,
                        help="seed of the weights, minibatch order and noise, in [0, 2**64) "
                        "(default 0)")
    parser.add_argument("--checkpoint-every", type=nonnegative_int,
                        default=DEFAULTS.checkpoint_every,
                        help="checkpoint every this many steps; 0: only on Ctrl-C/SIGTERM and "
                        f"at the end (default {DEFAULTS.checkpoint_every})")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default runs/vae-ESTIMATOR)")
    parser.add_argument("--resume", type=Path, default=None, metavar="DIR",
                        help="continue the run checkpointed in DIR with its flags (from "
                        "DIR/config.json); --steps N above its steps extends it")


def config_from_args(args: argparse.Namespace, estimator: str, **overrides: object
                     ) -> TrainConfig:
    """The run's config from the shared flags; ``--samples`` defaults to the estimator's minimum."""
    from ..estimators import ESTIMATORS

    fields = {name: getattr(args, name) for name in (
        "data", "tau", "latents", "classes", "hidden", "steps", "batch_size", "lr",
        "iw_samples", "eval_every", "device")}
    least = ESTIMATORS[estimator].min_samples
    samples = least if args.samples is None else args.samples
    if samples < least:
        raise ValueError(f"estimator {estimator} needs --samples >= {least}, got {samples}")
    return TrainConfig(estimator=estimator, samples=samples, **fields, **overrides)


# The flags that set a TrainConfig field of the same name (world_size comes from torchrun).
RUN_FLAGS = ("estimator", "data", "tau", "samples", "latents", "classes", "hidden", "steps",
             "batch_size", "lr", "iw_samples", "eval_every", "device", "seed",
             "checkpoint_every")


def resumed_config(folder: Path, args: argparse.Namespace, world: int) -> TrainConfig:
    """The config of the run in ``folder`` (its ``config.json``), with the flags typed now.

    ``--steps`` may grow (the run is extended); any other flag that differs from the
    checkpoint's config is refused, naming every difference. The checkpoint is verified
    here, before any work starts.
    """
    from ..cli import given_flags
    from .checkpoint import CheckpointError, check_same_config, load_checkpoint
    from .preflight import UsageError

    state = load_checkpoint(folder)
    path = folder / "config.json"
    try:
        saved = TrainConfig(**json.loads(path.read_text()))
    except OSError as exc:
        raise CheckpointError(f"cannot resume {folder}: cannot read {path} "
                              f"({exc.strerror or exc})") from None
    except (ValueError, TypeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot resume {folder}: {path} is not a vae config "
                              f"({first})") from None
    fields = saved.to_dict()
    fields.update({name: getattr(args, name) for name in given_flags(args) & set(RUN_FLAGS)})
    fields["world_size"] = world
    if fields["steps"] < saved.steps:
        raise UsageError(f"--steps {fields['steps']}: the run in {folder} has {saved.steps} "
                         f"steps; a resumed run keeps them or is extended (--steps >= "
                         f"{saved.steps})")
    config = TrainConfig(**fields)
    check_same_config(json.loads(state["config"]), config.resume_key(), folder,
                      ignore=("steps",))
    return config


def check_memory(config: TrainConfig, n_pixels: int) -> None:
    """Refuse model and batch sizes whose training cannot fit in the memory available."""
    from .preflight import UsageError, available_memory, human_bytes
    from .training import training_bytes

    needed, free = training_bytes(config, n_pixels), available_memory()
    if free is not None and needed > free:
        raise UsageError(f"--hidden {config.hidden} --latents {config.latents} --classes "
                         f"{config.classes} --batch-size {config.batch_size} --samples "
                         f"{config.samples} on {n_pixels}-pixel images need about "
                         f"{human_bytes(needed)} of memory to train, but {human_bytes(free)} "
                         "is available; choose smaller sizes")


def run(args: argparse.Namespace) -> int:
    from ..cli import is_main_process
    from . import distributed
    from .checkpoint import CHECKPOINT_NAME
    from .data import load_dataset
    from .preflight import UsageError, output_folder
    from .report import fmt, write_run_report
    from .training import Interrupted, batches_per_epoch, train

    if args.resume is not None and args.out is not None and args.resume != args.out:
        raise UsageError(f"--resume {args.resume} and --out {args.out} differ (a resumed run "
                         "writes into its own folder)")
    out = args.resume or args.out or Path("runs") / f"vae-{args.estimator}"
    try:
        world = distributed.world_size()
        if args.resume is None:
            if (out / CHECKPOINT_NAME).exists():
                raise UsageError(f"--out {out} already holds a run; continue it with "
                                 f"--resume {out}, or choose another --out")
            config = config_from_args(args, args.estimator, seed=args.seed,
                                      checkpoint_every=args.checkpoint_every, world_size=world)
        else:
            config = resumed_config(out, args, world)
        distributed.rank_device(config.device)  # a resumed CUDA run on a machine without one
        data = load_dataset(config.data)
        batches_per_epoch(len(data[0]), config.batch_size, world)
        check_memory(config, data[0].shape[1])
        output_folder(out, "--resume" if args.resume is not None else "--out")  # creates it
    except UsageError:
        raise
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    set_threads(args.threads)
    ctx = distributed.Dist()
    try:
        ctx = distributed.setup(config.device)
        try:
            result, job = train(config, out, resume=args.resume is not None,
                                progress=not args.quiet, ctx=ctx, data=data)
        finally:
            distributed.teardown(ctx)
    except Interrupted as exc:
        if ctx.main and is_main_process():
            launcher = (f"torchrun --nproc_per_node={ctx.world} -m gumbelkit" if ctx.world > 1
                        else "gumbelkit")
            sys.stderr.write(f"gumbelkit vae: {exc}; checkpoint saved in {out}; continue with "
                             f"{launcher} vae --resume {out}\n")
        return 128 + exc.signum
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except FloatingPointError as exc:
        sys.stderr.write(f"gumbelkit vae: {exc}\n")
        return 1
    if not ctx.main:
        return 0
    path = write_run_report(job, result)
    final = result.final
    print(f"{config.estimator}: test -ELBO {fmt(final['neg_elbo'])} nats, "
          f"-IWAE(k={config.iw_samples}) {fmt(final['iw_bound'])} nats, "
          f"{fmt(final['steps_per_sec'], 1)} steps/s over {final['step']} steps "
          f"({ctx.world} process{'es' if ctx.world > 1 else ''})")
    print(f"report: {path}")
    return 0
