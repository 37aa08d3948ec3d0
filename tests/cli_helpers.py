"""Run the installed ``gumbelkit`` command in a subprocess and check how it failed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("gumbelkit")
# The installed console script, else the module run by this interpreter.
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "gumbelkit"]


def run_cli(*argv: object, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``gumbelkit ARGV...`` (the console script beside this Python, else ``-m gumbelkit``)."""
    return subprocess.run([*COMMAND, *map(str, argv)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)


def assert_usage_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 2, no traceback, exactly one line on stderr holding every fragment."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
