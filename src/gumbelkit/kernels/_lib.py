"""Load the compiled kernels (a plain shared library called through ctypes).

The library is built by the package's setup (``setup.py``) as the extension
module ``gumbelkit.kernels._gk``. If it is missing (no C compiler at install
time, or ``GUMBELKIT_NO_EXT=1``), gumbelkit warns once and runs on its
pure-PyTorch path; ``gumbelkit.backend()`` says which path is active.
Setting ``GUMBELKIT_DISABLE_KERNELS=1`` at run time forces the PyTorch path.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import warnings
from functools import cache

KINDS = {"exponential": 1, "gumbel": 2, "logistic": 3}


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, u32, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint32, ctypes.c_int
    for name in ("gk_noise_fill_f32", "gk_noise_fill_f64"):
        fn = getattr(lib, name)
        fn.argtypes = [p, p, p, i64, i64, u32, c_int]
        fn.restype = None


@cache
def library() -> ctypes.CDLL | None:
    """The kernel library, or None when the PyTorch path is in use."""
    if os.environ.get("GUMBELKIT_DISABLE_KERNELS", "") not in ("", "0"):
        return None
    spec = importlib.util.find_spec("gumbelkit.kernels._gk")
    if spec is None or spec.origin is None:
        warnings.warn("gumbelkit: the fused CPU kernels are not built (no C compiler at install "
                      "time, or GUMBELKIT_NO_EXT=1); using the slower pure-PyTorch path",
                      RuntimeWarning, stacklevel=3)
        return None
    lib = ctypes.CDLL(spec.origin)
    _declare(lib)
    return lib


def backend() -> str:
    """``"fused-cpu"`` when the compiled kernels are loaded, else ``"pytorch"``."""
    return "fused-cpu" if library() is not None else "pytorch"
