"""Build the optional fused CPU kernels (C11 + OpenMP, not linked against PyTorch).

Set GUMBELKIT_NO_EXT=1 to skip the extension; the package then runs on its
pure-PyTorch path. A failed compile warns and falls back the same way.
"""

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = "src/gumbelkit/kernels/csrc"


class OptionalBuildExt(build_ext):
    """Compile the kernels if possible; never fail the install because of them."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: fall back
            sys.stderr.write(f"gumbelkit: fused kernels not built ({exc}); using PyTorch path\n")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            sys.stderr.write(f"gumbelkit: fused kernels not built ({exc}); using PyTorch path\n")


def extensions() -> list[Extension]:
    if os.environ.get("GUMBELKIT_NO_EXT", "") not in ("", "0"):
        return []
    return [
        Extension(
            "gumbelkit.kernels._gk",
            sources=sorted(glob.glob(f"{CSRC}/*.c")),
            depends=sorted(glob.glob(f"{CSRC}/*.h")),
            include_dirs=[CSRC],
            # -ffp-contract=off: no fused multiply-add, so the kernels round
            # exactly like the pure-PyTorch reference (bit-identical noise).
            extra_compile_args=["-std=c11", "-O3", "-fopenmp", "-ffp-contract=off",
                                "-fno-math-errno", "-fvisibility=default"],
            extra_link_args=["-fopenmp"],
        )
    ]


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
