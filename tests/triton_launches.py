"""``LaunchRecorder``: stands in for every Triton kernel of a module and records its
launches instead of running them (the launchers' grids and arguments, from shapes
alone, without a GPU)."""

from __future__ import annotations

from types import ModuleType

import pytest
import triton


class LaunchRecorder:
    """Replaces every ``*_kernel`` JIT function of ``module`` (for the test's duration)
    by a stand-in whose launches append ``(kernel name, grid, arguments)`` to
    ``self.launches`` and run nothing; ``arguments`` maps every argument's name (the
    positional ones too) and every launch option to its value."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
        self.launches: list[tuple[str, tuple, dict]] = []
        for name, value in vars(module).items():
            if isinstance(value, triton.runtime.JITFunction) and name.endswith("_kernel"):
                monkeypatch.setattr(module, name, self._kernel(name, value.arg_names))

    def _kernel(self, name: str, arg_names: list[str]):
        recorder = self

        class Launch:
            def __getitem__(self, grid):
                return lambda *args, **kwargs: recorder.launches.append(
                    (name, grid, {**dict(zip(arg_names, args)), **kwargs}))

        return Launch()
