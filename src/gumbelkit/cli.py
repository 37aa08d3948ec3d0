"""The ``gumbelkit`` command.

Import-light: each subcommand lives in its own module, imported only when that
subcommand runs. A subcommand module defines ``add_arguments(parser)`` and
``run(args) -> int``, and a module docstring whose first line is its help.
"""

from __future__ import annotations

import argparse
import importlib
import sys
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
    "doctor": "check this installation: sampling, gradients, numerics, fused kernel",
    "estimators": "measure every gradient estimator against the exact gradient (markdown table)",
    "bench": "time the fused kernels (or, with --reference, the PyTorch path; with --sampler, "
             "the token sampler) against PyTorch",
}


def usage_error(message: str) -> NoReturn:
    """A bad flag or value found after parsing: one line on stderr, exit code 2."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    raise SystemExit(2)


class _Parser(argparse.ArgumentParser):
    """Bad flags or values: exit 2 with a one-line message (no usage dump)."""

    def error(self, message: str) -> None:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("gumbelkit: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
