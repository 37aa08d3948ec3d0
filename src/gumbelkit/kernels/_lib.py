"""Load the compiled kernels (a plain shared library called through ctypes).

The library is built by the package's setup (``setup.py``) as the extension
module ``gumbelkit.kernels._gk``. If it is missing (no C compiler at install
time, or ``GUMBELKIT_NO_EXT=1``), gumbelkit warns once and runs on its
pure-PyTorch path; ``gumbelkit.backend()`` says which path is active.
Setting ``GUMBELKIT_DISABLE_KERNELS=1`` at run time forces the PyTorch path.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import warnings
from collections.abc import Iterator

# Noise kinds, numbered as enum gk_noise_kind in csrc/noise.h (a test checks both agree).
KINDS = {"gumbel": 0, "exponential": 1, "logistic": 2}


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, u32, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint32, ctypes.c_int
    f64 = ctypes.c_double
    signatures = {
        "gk_noise_fill": [p, p, p, i64, i64, u32, c_int],
        # x, dtype, row/col stride, rows, cols, tau, tau stride, seeds, seed stride, keys,
        # key stride, stream, y, soft, hard, index, threads, status
        "gk_gumbel_softmax": [p, c_int, i64, i64, i64, i64, p, i64, p, i64, p, i64, u32,
                              p, p, c_int, p, c_int, p],
        # g, dtype, row/col stride, y, rows, cols, tau, tau stride, gx, gtau, threads
        "gk_gumbel_softmax_backward": [p, c_int, i64, i64, p, i64, i64, p, i64, p, p, c_int],
        # x, dtype, row/col stride, rows, cols, tau, tau row/col stride, seeds, seed stride,
        # keys, key stride, stream, y, soft, mode, gamma, span, threads, status
        "gk_concrete": [p, c_int, i64, i64, i64, i64, p, i64, i64, p, i64, p, i64, u32,
                        p, p, c_int, f64, f64, c_int, p],
        # g, dtype, row/col stride, saved, rows, cols, tau, tau row/col stride, mode,
        # gamma, span, gx, gtau, threads
        "gk_concrete_backward": [p, c_int, i64, i64, p, i64, i64, p, i64, i64, c_int, f64, f64,
                                 p, p, c_int],
    }
    # logits, rows, vocab, row stride, temperature, top_k, top_p, log_min_p, seeds, keys, n,
    # tokens, logprobs, status, threads
    lib.gk_sample_f32.argtypes = [p, i64, i64, i64, p, p, p, p, p, p, i64, p, p, p, c_int]
    lib.gk_sample_f32.restype = None
    for stem, argtypes in signatures.items():
        for suffix in ("_f32", "_f64"):
            fn = getattr(lib, stem + suffix)
            fn.argtypes = argtypes
            fn.restype = None
    lib.gk_advise_huge_pages.argtypes = [p, ctypes.c_size_t]
    lib.gk_advise_huge_pages.restype = None
    lib.gk_exp_f32.argtypes = [p, p, i64]
    lib.gk_exp_f32.restype = None
    lib.gk_set_isa.argtypes = [c_int]
    lib.gk_set_isa.restype = c_int
    lib.gk_isa_max.restype = c_int
    lib.gk_isa_name.restype = ctypes.c_char_p


def _load() -> ctypes.CDLL | None:
    if os.environ.get("GUMBELKIT_DISABLE_KERNELS", "") not in ("", "0"):
        return None
    spec = importlib.util.find_spec("gumbelkit.kernels._gk")
    if spec is None or spec.origin is None:
        return None
    lib = ctypes.CDLL(spec.origin)
    _declare(lib)
    return lib


# Loaded once at import, so that torch.compile sees a plain constant.
_LIB = _load()
_warned = False


def library() -> ctypes.CDLL | None:
    """The kernel library, or None when the PyTorch path is in use."""
    return _LIB


def warn_if_missing() -> None:
    """Warn (once per process) that CPU work runs on the slower PyTorch path
    because the kernels were not built; silent when disabled on purpose."""
    global _warned
    if _LIB is not None or _warned:
        return
    _warned = True
    if os.environ.get("GUMBELKIT_DISABLE_KERNELS", "") not in ("", "0"):
        return
    warnings.warn("gumbelkit: the fused CPU kernels are not built (no C compiler at install "
                  "time, or GUMBELKIT_NO_EXT=1); using the slower pure-PyTorch path",
                  RuntimeWarning, stacklevel=3)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the pure-PyTorch path inside the block, as ``GUMBELKIT_DISABLE_KERNELS=1``
    would for the whole process (for benchmarks of that path). Not thread-safe."""
    global _LIB, _warned
    saved = _LIB, _warned
    _LIB, _warned = None, True
    try:
        yield
    finally:
        _LIB, _warned = saved


def backend() -> str:
    """``"fused-cpu"`` when the compiled kernels are loaded, else ``"pytorch"``.

    The instruction set the kernels use is :func:`isa` (chosen at load time
    from the CPU: AVX-512, AVX2 or portable; ``GUMBELKIT_SIMD=portable`` or
    ``avx2`` caps it).

    Example:
        >>> gumbelkit.backend() in ("fused-cpu", "pytorch")
        True
    """
    return "fused-cpu" if library() is not None else "pytorch"


ISAS = ("portable", "avx2", "avx512")


def isa() -> str | None:
    """The active instruction set of the kernels ("portable", "avx2", "avx512"), or None."""
    lib = library()
    return None if lib is None else lib.gk_isa_name().decode()


def set_isa(name: str) -> None:
    """Switch the kernels to instruction set ``name`` (for tests and benchmarks)."""
    lib = library()
    if lib is None or name not in ISAS or lib.gk_set_isa(ISAS.index(name)) != 0:
        raise ValueError(f"instruction set {name!r} is not available here; choose from "
                         f"{available_isas()}")


def available_isas() -> list[str]:
    """The instruction sets this CPU runs, portable first."""
    lib = library()
    return [] if lib is None else list(ISAS[: lib.gk_isa_max() + 1])
