"""Every subcommand's --help shows at least one example, and every example parses."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gumbelkit.cli import COMMANDS, build_parser

_SCRIPT = Path(sys.executable).with_name("gumbelkit")  # the installed console script
GUMBELKIT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "gumbelkit"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_examples_that_parse(command):
    done = subprocess.run([*GUMBELKIT, command, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stderr == ""
    assert re.search(r"^Examples?:$", done.stdout, re.MULTILINE), done.stdout
    examples = [line.split("#")[0].strip() for line in done.stdout.splitlines()
                if line.strip().startswith(f"gumbelkit {command}")]
    assert examples, f"no 'gumbelkit {command} ...' line in its --help"
    for example in examples:
        argv = shlex.split(example)[1:]
        args = build_parser(command).parse_args(argv)  # a stale flag exits 2 here
        assert args.command == command
