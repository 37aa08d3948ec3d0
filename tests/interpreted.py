"""``run_interpreted``: a Triton check script run in Triton's interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_interpreted(script: Path, timeout: float = 900) -> str:
    """Run ``script`` with ``TRITON_INTERPRET=1`` and ``GUMBELKIT_BACKEND=triton`` (CPU
    tensors through the Triton kernels) in a subprocess, since the interpreter is chosen
    before Triton is imported; assert that it exited 0 and return its stripped stdout."""
    env = dict(os.environ, TRITON_INTERPRET="1", GUMBELKIT_BACKEND="triton")
    result = subprocess.run([sys.executable, "-W", "ignore", str(script)], capture_output=True,
                            text=True, env=env, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()
