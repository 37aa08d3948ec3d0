"""Ahead-of-time compile of every Triton kernel form, for sm_80 and sm_90, without a GPU.

Each Triton module of this package named in :data:`MODULES` lists its
compiled forms in ``specializations()`` (:class:`triton_kernels.Specialization`);
:func:`compile_all` compiles every form for every architecture in
:data:`ARCHS` with ``triton.compile(ASTSource(...), target=GPUTarget("cuda",
arch, 32), options=form.options)``, which needs Triton and its bundled
``ptxas`` but no GPU, and reports per form and architecture:

* the registers per thread and the bytes of spill stores and loads (from the
  ``ptxas -v`` log of that compile) and the shared memory per block (the
  compiled kernel's ``metadata.shared``);
* for an exact form (``exact=True``: its bits must equal the CPU path's),
  the inexact PTX instructions :func:`inexact_instructions` finds: an
  approximate division (``div.approx``, ``div.full``), an approximate
  logarithm (``lg2.approx``) or a fused multiply-add (``fma.rn``), each of
  which changes the rounding of the reference's operations.

``gumbelkit doctor --cuda-compile`` prints these results; the tests use the
same functions. Adding a Triton module is adding its name to :data:`MODULES`.

Example:
    >>> results = compile_all(archs=(90,))                       # doctest: +SKIP
    >>> [(r.name, r.arch, r.ok) for r in results][:1]            # doctest: +SKIP
    [('noise[gumbel, fp32]', 90, True)]
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

import triton
from triton import knobs
from triton.backends.compiler import GPUTarget

from .triton_kernels import Specialization

# the Triton modules of gumbelkit.kernels whose specializations() are compiled
MODULES: tuple[str, ...] = ("triton_kernels", "triton_rows", "triton_sampler", "triton_sparse")
# compute capabilities compiled for: A100 (sm_80) and H100 (sm_90)
ARCHS: tuple[int, ...] = (80, 90)
# PTX opcodes that change the bits of an exact form: approximate division and
# logarithm, and a multiply-add rounded once where the reference rounds twice.
# ex2.approx is allowed: the noise never takes an exponential (its logarithm is
# the fixed-operation one), and the softmax's exp only moves relaxed values,
# which are promised to float32 rounding.
INEXACT: tuple[str, ...] = ("div.approx", "div.full", "lg2.approx", "fma.rn")

_INEXACT_RE = re.compile(r"(?<![\w.])(?:" + "|".join(re.escape(op) for op in INEXACT)
                         + r")(?:\.\w+)*")
_REGISTERS_RE = re.compile(r"Used (\d+) registers")
_SPILLS_RE = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


@dataclass(frozen=True)
class CompiledForm:
    """One form compiled for one architecture (``sm_{arch}``).

    ``registers`` per thread and ``spill_stores``/``spill_loads`` in bytes come
    from ptxas (None where its log did not say), ``shared`` is the shared
    memory per block in bytes, ``inexact`` the inexact opcodes of an exact
    form's PTX, and ``error`` the first line of the compiler's message when
    the compile failed (the counts are then None).
    """

    module: str
    name: str
    arch: int
    exact: bool
    registers: int | None = None
    spill_stores: int | None = None
    spill_loads: int | None = None
    shared: int | None = None
    inexact: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Compiled, and (for an exact form) without an inexact instruction."""
        return self.error is None and not self.inexact

    @property
    def problem(self) -> str:
        """Why the form is not ok ('' when it is)."""
        if self.error is not None:
            return f"compile failed: {self.error}"
        if self.inexact:
            return f"exact form with inexact PTX: {', '.join(self.inexact)}"
        return ""


def inexact_instructions(ptx: str) -> list[str]:
    """The distinct opcodes of :data:`INEXACT` in ``ptx`` (with their suffixes,
    e.g. ``fma.rn.f32``), sorted; ``[]`` when there are none.

    Example:
        >>> inexact_instructions("div.rn.f32 %f1, %f2, %f3;\\nfma.rn.f32 %f4, %f1, %f2, %f3;")
        ['fma.rn.f32']
    """
    return sorted(set(_INEXACT_RE.findall(ptx)))


def compile_form(form: Specialization, arch: int, options: dict[str, object] | None = None
                 ) -> tuple[triton.compiler.CompiledKernel, str]:
    """Compile ``form`` for ``sm_{arch}`` (``arch`` a compute capability such as 80
    or 90) with ``options`` (default: the form's own) and return the kernel and
    the ptxas log of this compile. Triton's cache is bypassed so that ptxas runs
    and reports its registers and spills."""
    source = triton.compiler.ASTSource(fn=form.fn, signature=form.signature,
                                       constexprs=form.constexprs)
    log = io.StringIO()
    with knobs.compilation.scope(), knobs.nvidia.scope(), contextlib.redirect_stdout(log):
        knobs.compilation.always_compile = True
        knobs.nvidia.dump_ptxas_log = True  # Triton prints the log on stdout
        kernel = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                                options=dict(form.options if options is None else options))
    return kernel, log.getvalue()


def check_form(module: str, form: Specialization, arch: int) -> CompiledForm:
    """Compile ``form`` for ``sm_{arch}`` with its options; a failed compile is a
    result whose ``error`` is the first line of the message."""
    try:
        kernel, log = compile_form(form, arch)
    except Exception as exc:  # noqa: BLE001 - any compiler failure is this form's result
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return CompiledForm(module, form.name, arch, form.exact, error=first)
    registers = _REGISTERS_RE.search(log)
    spills = _SPILLS_RE.search(log)
    return CompiledForm(
        module, form.name, arch, form.exact,
        registers=int(registers.group(1)) if registers else None,
        spill_stores=int(spills.group(1)) if spills else None,
        spill_loads=int(spills.group(2)) if spills else None,
        shared=int(kernel.metadata.shared),
        inexact=tuple(inexact_instructions(kernel.asm["ptx"])) if form.exact else ())


def forms(modules: Iterable[str] | None = None) -> list[tuple[str, Specialization]]:
    """``(module, form)`` for every form of every module (default :data:`MODULES`), in order."""
    found = []
    for name in MODULES if modules is None else modules:
        module = importlib.import_module(f"{__package__}.{name}")
        found += [(name, form) for form in module.specializations()]
    return found


def compile_all(modules: Iterable[str] | None = None, archs: Iterable[int] | None = None
                ) -> list[CompiledForm]:
    """Every form of ``modules`` (default :data:`MODULES`) compiled for every
    architecture of ``archs`` (default :data:`ARCHS`)."""
    archs = ARCHS if archs is None else tuple(archs)
    return [check_form(module, form, arch) for module, form in forms(modules) for arch in archs]
