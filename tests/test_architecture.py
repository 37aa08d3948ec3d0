"""The dependency direction of docs/architecture.md, enforced.

The library (every module of ``gumbelkit`` outside the app) never imports the
app (``gumbelkit.experiments``, ``gumbelkit.cli``, ``gumbelkit.__main__``),
only the op boundary (``gumbelkit.kernels``) binds C through ctypes, and
importing the library loads none of the app's heavy dependencies.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"
APP = ("gumbelkit.experiments", "gumbelkit.cli", "gumbelkit.__main__")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def _in_app(name: str) -> bool:
    return any(name == app or name.startswith(app + ".") for app in APP)


LIBRARY = sorted(p for p in (SRC / "gumbelkit").rglob("*.py") if not _in_app(_module_name(p)))


def test_the_library_is_found():
    names = {_module_name(p) for p in LIBRARY}
    assert {"gumbelkit", "gumbelkit.functional", "gumbelkit.sampling.sampler"} <= names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: _module_name(p))
def test_library_never_imports_the_app(path):
    wrong = sorted(name for name in _imports(path) if _in_app(name))
    assert not wrong, f"{_module_name(path)} imports the app: {wrong}"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: _module_name(p))
def test_only_the_op_boundary_binds_c(path):
    if _module_name(path).startswith("gumbelkit.kernels"):
        return
    assert "ctypes" not in _imports(path), f"{_module_name(path)} imports ctypes"


def test_importing_the_library_loads_no_app_dependency():
    code = ("import sys, torch; before = set(sys.modules); "
            "import gumbelkit, gumbelkit.distributions, gumbelkit.estimators, gumbelkit.nn, "
            "gumbelkit.sampling, gumbelkit.schedules, gumbelkit.sparse; "
            "heavy = ('matplotlib', 'sklearn', 'tqdm', 'gumbelkit.experiments'); "
            "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in heavy "
            "or m.startswith('gumbelkit.experiments')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
