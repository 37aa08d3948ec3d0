"""The ``gumbelkit`` command.

Import-light: each subcommand lives in its own module, imported only when that
subcommand runs. A subcommand module defines ``add_arguments(parser)`` and
``run(args) -> int``, and a module docstring whose first line is its help.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import NoReturn

# name -> module implementing it; adding a command is adding one entry.
COMMANDS: dict[str, str] = {
    "demo": "gumbelkit.experiments.demo",
    "vae": "gumbelkit.experiments.vae",
    "compare": "gumbelkit.experiments.compare",
    "speed": "gumbelkit.experiments.speed",
    "doctor": "gumbelkit.experiments.doctor",
    "estimators": "gumbelkit.experiments.estimators_table",
    "bench": "gumbelkit.experiments.bench",
}

# (name, first docstring line) without importing the heavy modules.
SUMMARIES: dict[str, str] = {
    "demo": "a short, honest demonstration of Gumbel-max and Gumbel-Softmax",
    "vae": "train a categorical VAE with one gradient estimator and write a report",
    "compare": "train the VAE with several estimators and seeds; one table and report",
    "speed": "time Gumbel-Softmax against exact marginalization (K = 10, 100)",
    "doctor": "check this installation: sampling, gradients, numerics, fused kernel "
              "(--cuda-compile: compile the Triton kernels for sm_80 and sm_90)",
    "estimators": "measure every gradient estimator against the exact gradient (markdown table)",
    "bench": "time the fused kernels (or, with --reference, the PyTorch path; with --sampler, "
             "the token sampler; with --device cuda, the GPU kernels) against PyTorch",
}


# Seconds a torchrun worker of rank > 0 waits before printing an error that rank 0
# prints too: rank 0 ends the job first and torchrun stops the others, so the line
# appears once. Every check runs before the process group is joined, so no worker
# waits on another before it fails.
WORKER_GRACE_S = 5.0


def report_error(message: str) -> None:
    """Write one line on stderr; under torchrun, only once for all ranks (rank 0's),
    unless the error is this rank's own (rank 0 does not end the job)."""
    if not is_main_process():
        time.sleep(WORKER_GRACE_S)
    sys.stderr.write(message.rstrip("\n") + "\n")


def usage_error(message: str) -> NoReturn:
    """A bad flag or value found after parsing: one line on stderr, exit code 2."""
    report_error(message)
    raise SystemExit(2)


GIVEN = "given_flags"  # the namespace attribute: dests of the options typed on the command line


class _Store(argparse.Action):
    """argparse's plain ``store``, which also records that the option was given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        given = getattr(namespace, GIVEN, None) or set()
        setattr(namespace, GIVEN, given | {self.dest})


def given_flags(args: argparse.Namespace) -> set[str]:
    """The dests of the value-taking options typed on the command line (not defaulted)."""
    return set(getattr(args, GIVEN, None) or ())


class _Parser(argparse.ArgumentParser):
    """Bad flags or values: exit 2 with a one-line message (no usage dump)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.register("action", None, _Store)
        self.register("action", "store", _Store)

    def error(self, message: str) -> None:
        usage_error(f"{self.prog}: error: {message}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="gumbelkit", description="Learning through discrete choices: "
                     "train and compare gradient estimators for categorical variables.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, summary in SUMMARIES.items():
        module = importlib.import_module(COMMANDS[name]) if name == command else None
        doc = module.__doc__ if module is not None else None
        p = sub.add_parser(name, help=summary, description=doc or summary,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if module is not None:
            module.add_arguments(p)
    return parser


def is_main_process() -> bool:
    """False in the workers of rank > 0 under ``torchrun``: they print no messages."""
    return os.environ.get("RANK", "0") == "0"


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit codes: 0 success, 1 failure, 2 usage error, 128 + N on signal N
    (141 when the reader of stdout went away, as for ``gumbelkit demo | head``)."""
    from .experiments.preflight import UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    try:
        parser = build_parser(command)  # imports the command's module (and torch): Ctrl-C-able
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        module = importlib.import_module(COMMANDS[args.command])
        code = int(module.run(args) or 0)
        sys.stdout.flush()
        return code
    except UsageError as exc:
        report_error(f"gumbelkit {command}: error: {exc}")
        return 2
    except KeyboardInterrupt:
        if is_main_process():
            sys.stderr.write("gumbelkit: interrupted\n")
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 128 + 13  # SIGPIPE, as a tool killed by it would report


if __name__ == "__main__":
    raise SystemExit(main())
