"""Check this installation: the debugging checklist for discrete relaxations.

Runs each check on fresh random logits with fixed seeds and prints a
pass/fail table (--json for machines); exits 1 if any check fails.
Checks: Gumbel-Softmax samples are non-negative and sum to 1; their entropy
falls as the temperature falls; gradients reach the logits; no NaN at
tau = 0.01 nor with logits of 1e4; hard samples are exact one-hots (and
match gumbel_max with the same seed); the fused CPU kernel is active.

--cuda-compile checks the CUDA kernels instead, without a GPU: it compiles
every form of every Triton kernel ahead of time for sm_80 and sm_90 and
prints one line per form and architecture (registers per thread, bytes of
spill stores, shared memory per block, ok or FAIL and why); it exits 1 if a
compile fails or an exact form's PTX holds an approximate division or
logarithm or a fused multiply-add (see gumbelkit.kernels.triton_compile),
and 2 without Triton (pip install 'gumbelkit[cuda]').

Examples:
  gumbelkit doctor
  gumbelkit doctor --json
  gumbelkit doctor --cuda-compile
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

import torch

import gumbelkit

if TYPE_CHECKING:  # the module imports triton, which --cuda-compile alone needs
    from ..kernels.triton_compile import CompiledForm

Check = Callable[[], tuple[bool, str]]


def _logits(scale: float = 2.0) -> torch.Tensor:
    return torch.randn(256, 10, generator=torch.Generator().manual_seed(0)) * scale


def samples_on_simplex() -> tuple[bool, str]:
    y = gumbelkit.gumbel_softmax(_logits(), tau=0.5, seed=1)
    err = (y.sum(-1) - 1).abs().max().item()
    low = y.min().item()
    return err <= 1e-5 and low >= 0, f"max abs(sum - 1) = {err:.1e}, min = {low:.1e}"


def entropy_falls_with_tau() -> tuple[bool, str]:
    taus = (10.0, 1.0, 0.5, 0.1)
    entropies = []
    for tau in taus:
        y = gumbelkit.gumbel_softmax(_logits(), tau=tau, seed=2)
        entropies.append(-(y * torch.log(y.clamp_min(1e-30))).sum(-1).mean().item())
    ok = all(a > b for a, b in zip(entropies, entropies[1:]))
    shown = ", ".join(f"tau {t:g}: {h:.3f}" for t, h in zip(taus, entropies))
    return ok, f"mean entropy {shown} nats"


def _grad_of(logits: torch.Tensor, tau: float, hard: bool = False) -> tuple[torch.Tensor, ...]:
    logits = logits.clone().requires_grad_(True)
    y = gumbelkit.gumbel_softmax(logits, tau=tau, hard=hard, seed=3)
    weights = torch.linspace(-1, 1, logits.shape[-1])
    (y * weights).sum().backward()
    return y.detach(), logits.grad


def gradients_flow() -> tuple[bool, str]:
    _, grad = _grad_of(_logits(), 1.0)
    norm = grad.norm().item()
    return bool(torch.isfinite(grad).all()) and norm > 0, f"norm of d loss / d logits = {norm:.3g}"


def finite_at_low_tau() -> tuple[bool, str]:
    y, grad = _grad_of(_logits(), 0.01)
    ok = bool(torch.isfinite(y).all() and torch.isfinite(grad).all())
    return ok, "samples and gradients finite at tau = 0.01" if ok else "NaN/inf at tau = 0.01"


def finite_at_huge_logits() -> tuple[bool, str]:
    y, grad = _grad_of(_logits(1.0) * 1e4, 1.0)
    ok = bool(torch.isfinite(y).all() and torch.isfinite(grad).all())
    return ok, "samples and gradients finite with logits ~ 1e4" if ok else \
        "NaN/inf with logits ~ 1e4"


def hard_is_one_hot() -> tuple[bool, str]:
    logits = _logits()
    y, grad = _grad_of(logits, 0.5, hard=True)
    exact = bool(((y == 0) | (y == 1)).all() and (y.sum(-1) == 1).all())
    same = bool(torch.equal(y.argmax(-1), gumbelkit.gumbel_max(logits, seed=3)))
    flows = grad.abs().sum().item() > 0
    return exact and same and flows, (f"exact one-hots: {exact}, argmax = gumbel_max with the "
                                      f"same seed: {same}, gradient non-zero: {flows}")


def fused_kernel_active() -> tuple[bool, str]:
    active = gumbelkit.backend()
    if active == "fused-cpu":
        return True, "backend() = 'fused-cpu'"
    return False, (f"backend() = {active!r}: build the C extension (pip install -e ., or "
                   "python setup.py build_ext --inplace) and unset GUMBELKIT_DISABLE_KERNELS")


CHECKS: dict[str, Check] = {
    "samples are non-negative and sum to 1": samples_on_simplex,
    "entropy falls as temperature falls": entropy_falls_with_tau,
    "gradients flow to the logits": gradients_flow,
    "no NaN at tau = 0.01": finite_at_low_tau,
    "no NaN with logits of 1e4": finite_at_huge_logits,
    "hard samples are exact one-hots": hard_is_one_hot,
    "the fused kernel is active": fused_kernel_active,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--cuda-compile", action="store_true",
                        help="compile every Triton kernel form for sm_80 and sm_90 (no GPU "
                             "needed) and check the exact forms' PTX")


def diagnose() -> list[dict[str, object]]:
    """Run every check; an exception is a failure whose detail is its message."""
    results = []
    for name, check in CHECKS.items():
        try:
            ok, detail = check()
        except Exception as exc:  # noqa: BLE001 - a crash is a failed check, reported as such
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        results.append({"check": name, "ok": bool(ok), "detail": detail})
    return results


def _bytes(n: int | None) -> str:
    return "?" if n is None else str(n)


# the form column: wide enough for the longest form name, concrete_backward[fp64, 16x64]
FORM_WIDTH = 32


def compile_line(r: CompiledForm) -> str:
    """One line of ``--cuda-compile``: form, architecture, registers per thread, bytes of
    spill stores, shared memory per block, and ok or FAIL with the reason."""
    verdict = "ok" if r.ok else f"FAIL: {r.problem}"
    return (f"{r.name:<{FORM_WIDTH}} sm_{r.arch}  regs {_bytes(r.registers):>3}  spills "
            f"{_bytes(r.spill_stores):>3} B  smem {_bytes(r.shared):>5} B  {verdict}")


def cuda_compile(args: argparse.Namespace) -> int:
    """``--cuda-compile``: compile every Triton form for every architecture, one line each."""
    import importlib.util

    from .preflight import UsageError

    if importlib.util.find_spec("triton") is None:
        raise UsageError("--cuda-compile needs Triton; install it with "
                         "pip install 'gumbelkit[cuda]'")
    import triton

    from ..kernels import triton_compile

    if not args.json:
        shown = ", ".join(f"sm_{a}" for a in triton_compile.ARCHS)
        print(f"triton {triton.__version__}: compiling every kernel form for {shown} "
              "(no GPU needed)", flush=True)
    results, broken = [], {}
    for module in triton_compile.MODULES:
        try:
            forms = triton_compile.forms([module])
        except Exception as exc:  # noqa: BLE001 - a module that cannot list its forms fails
            broken[module] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if not args.json:
                print(f"{module}: FAIL: cannot list its forms ({broken[module]})", flush=True)
            continue
        for _, form in forms:
            for arch in triton_compile.ARCHS:
                r = triton_compile.check_form(module, form, arch)
                results.append(r)
                if not args.json:
                    print(compile_line(r), flush=True)
    failed = sum(not r.ok for r in results)
    if args.json:
        print(json.dumps({"ok": not failed and not broken, "triton": triton.__version__,
                          "forms": [dict(asdict(r), ok=r.ok) for r in results],
                          "broken_modules": broken}, indent=2))
    else:
        print(f"{len(results) - failed} of {len(results)} form compiles ok"
              + (f", {failed} FAIL" if failed else "")
              + (f"; {len(broken)} module(s) could not list their forms" if broken else ""))
    return 1 if failed or broken else 0


def run(args: argparse.Namespace) -> int:
    import warnings

    if args.cuda_compile:
        return cuda_compile(args)

    from .report import markdown_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the missing-kernel warning is a check
        results = diagnose()
    failed = sum(not r["ok"] for r in results)
    if args.json:
        print(json.dumps({"ok": failed == 0, "torch": torch.__version__,
                          "gumbelkit": gumbelkit.__version__, "checks": results}, indent=2))
    else:
        print(f"gumbelkit {gumbelkit.__version__}, torch {torch.__version__}")
        print(markdown_table(["check", "result", "detail"],
                             [[str(r["check"]), "pass" if r["ok"] else "FAIL", str(r["detail"])]
                              for r in results]))
        print(f"{len(results) - failed} of {len(results)} checks passed")
    return 1 if failed else 0
