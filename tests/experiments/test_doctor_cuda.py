"""``gumbelkit doctor --cuda-compile``: every Triton kernel form compiled ahead of time
for sm_80 and sm_90, its exact forms' PTX checked, one line per form and architecture."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from gumbelkit.cli import main


def test_without_triton_it_names_the_install(monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "triton" else find_spec(name, *args))
    assert main(["doctor", "--cuda-compile"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "pip install 'gumbelkit[cuda]'" in captured.err


@pytest.mark.slow
def test_compiles_every_form_for_both_architectures():
    """The real command in a subprocess: one ok line per (form, arch), exit 0. It is the
    ahead-of-time compile of the test suite (each form is compiled once, here)."""
    pytest.importorskip("triton")
    from gumbelkit.kernels import triton_compile

    names = [form.name for _, form in triton_compile.forms()]
    done = subprocess.run([sys.executable, "-m", "gumbelkit", "doctor", "--cuda-compile"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("triton ") and "sm_80, sm_90" in lines[0]
    body = [line.split() for line in lines[1:-1]]
    expected = [(name, f"sm_{arch}") for name in names for arch in (80, 90)]
    assert [(" ".join(b[:-10]), b[-10]) for b in body] == expected
    for b in body:  # regs N spills N B smem N B ok
        assert b[-9] == "regs" and int(b[-8]) > 0 and b[-7] == "spills" and b[-4] == "smem"
        assert b[-1] == "ok"
    assert lines[-1] == f"{len(expected)} of {len(expected)} form compiles ok"


def _result(arch: int, **fields: object):
    from gumbelkit.kernels.triton_compile import CompiledForm

    counts = dict(registers=40, spill_stores=0, spill_loads=0, shared=0)
    return CompiledForm("triton_kernels", "noise[gumbel, fp32]", arch, True,
                        **(counts if "error" not in fields else {}), **fields)


@pytest.mark.parametrize("sm90, code, verdict", [
    ({}, 0, "ok"),
    ({"inexact": ("fma.rn.f32",)}, 1, "FAIL: exact form with inexact PTX: fma.rn.f32"),
    ({"error": "ptxas failed"}, 1, "FAIL: compile failed: ptxas failed"),
])
def test_an_inexact_or_failed_form_fails_the_command(monkeypatch, capsys, sm90, code, verdict):
    triton_compile = pytest.importorskip("gumbelkit.kernels.triton_compile")
    monkeypatch.setattr(triton_compile, "check_form",
                        lambda module, form, arch: _result(arch, **(sm90 if arch == 90 else {})))
    assert main(["doctor", "--cuda-compile"]) == code
    lines = capsys.readouterr().out.splitlines()
    sm80 = [line for line in lines if line.startswith("noise[") and " sm_80 " in line]
    sm90_lines = [line for line in lines if line.startswith("noise[") and " sm_90 " in line]
    assert sm80 and all(line.endswith("  ok") for line in sm80)
    assert sm90_lines and all(line.endswith(verdict) for line in sm90_lines)
    assert lines[-1].endswith(f"{len(sm90_lines)} FAIL") == bool(code)


def test_a_module_that_cannot_list_its_forms_fails(monkeypatch, capsys):
    triton_compile = pytest.importorskip("gumbelkit.kernels.triton_compile")
    monkeypatch.setattr(triton_compile, "MODULES", ("triton_kernels", "triton_missing"))
    monkeypatch.setattr(triton_compile, "check_form", lambda module, form, arch: _result(arch))
    assert main(["doctor", "--cuda-compile"]) == 1
    out = capsys.readouterr().out
    assert "triton_missing: FAIL: cannot list its forms (ModuleNotFoundError" in out
    assert out.splitlines()[-1].endswith("1 module(s) could not list their forms")


def test_lines_align_for_every_form_name():
    """The architecture column starts at one place on every line, the longest form
    name included."""
    pytest.importorskip("triton")
    from gumbelkit.experiments.doctor import compile_line
    from gumbelkit.kernels import triton_compile

    names = [form.name for _, form in triton_compile.forms()]
    lines = [compile_line(triton_compile.CompiledForm("m", name, 90, True, 1, 0, 0, 0))
             for name in names]
    assert len({line.index(" sm_90") for line in lines}) == 1
