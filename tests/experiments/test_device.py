"""``--device cuda`` of ``vae`` and ``compare``: refused without CUDA before any work, and
plumbed through training (one process, compare's workers, torchrun with NCCL)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from cli_helpers import assert_usage_error, run_cli
from gumbelkit.experiments import distributed
from gumbelkit.experiments.distributed import Dist
from gumbelkit.experiments.training import Run, TrainConfig

TINY = ["--steps", "2", "--batch-size", "50", "--hidden", "16", "--iw-samples", "2",
        "--eval-every", "2", "--quiet"]
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")


@no_gpu
@pytest.mark.parametrize("command", [
    ["vae", *TINY],
    ["compare", "--estimators", "st", "--seeds", "1", "--jobs", "1", *TINY],
])
def test_cuda_without_a_gpu_is_refused_before_any_work(tmp_path, command):
    out = tmp_path / "out"
    proc = run_cli(*command, "--device", "cuda", "--out", out)
    assert_usage_error(proc, "--device", "cuda is not available on this machine")
    assert proc.stdout == "" and not out.exists()


def test_backend_is_nccl_between_gpus_and_gloo_between_cpu_processes():
    assert distributed.backend("cuda") == "nccl"
    assert distributed.backend("cpu") == "gloo"


@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


def test_each_rank_trains_on_its_local_rank_gpu(four_gpus, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert distributed.rank_device("cuda") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.rank_device("cuda") == torch.device("cuda", 3)
    assert distributed.rank_device("cpu") == torch.device("cpu")
    for bad in ("4", "-1", "x"):
        monkeypatch.setenv("LOCAL_RANK", bad)
        with pytest.raises(ValueError, match=rf"LOCAL_RANK='{bad}' .* \[0, 4\)"):
            distributed.rank_device("cuda")


def test_rank_device_without_cuda_names_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="torch.cuda.is_available"):
        distributed.rank_device("cuda")


@pytest.mark.parametrize("device, backend, expected", [
    ("cuda", "nccl", torch.device("cuda", 1)),
    ("cpu", "gloo", torch.device("cpu")),
])
def test_torchrun_setup_joins_the_backend_on_the_ranks_device(four_gpus, monkeypatch, device,
                                                              backend, expected):
    joined, selected = [], []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "set_device", selected.append)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", joined.append)
    assert distributed.setup(device) == Dist(1, 2, expected)
    assert joined == [backend]
    assert selected == ([expected] if device == "cuda" else [])


@no_gpu
def test_a_run_without_a_context_goes_to_the_configs_device():
    """compare's workers build their runs without a context: the config's device must
    place the model and data (it was ignored, and --device cuda trained on the CPU)."""
    with pytest.raises((AssertionError, RuntimeError), match="CUDA"):
        Run(TrainConfig(device="cuda", hidden=16), None)
    assert Run(TrainConfig(hidden=16), None).ctx == Dist(0, 1, torch.device("cpu"))


class _GumbelkitOps(TorchDispatchMode):
    """Records (op name, device of its first tensor argument) of every gumbelkit op."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: set[tuple[str, str]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.name())
        if name.startswith("gumbelkit::"):
            first = next(t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor))
            self.calls.add((name, first.device.type))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.cuda),
])
def test_a_training_step_runs_on_the_device_through_the_gumbelkit_ops(device):
    run = Run(TrainConfig(device=device, hidden=16, estimator="st_gumbel"), None)
    assert {p.device.type for p in run.model.parameters()} == {device}
    assert run.train_x.device.type == device and run.ctx.device.type == device
    with _GumbelkitOps() as ops:
        run._step(run.model, None)
    assert {d for _, d in ops.calls} == {device}, ops.calls
    assert run.result.train[-1]["step"] == 1


@pytest.mark.cuda
@pytest.mark.parametrize("command", [
    ["vae", *TINY],
    ["compare", "--estimators", "st,gumbel_softmax", "--seeds", "1", "--jobs", "2", *TINY],
])
def test_commands_train_on_cuda(tmp_path, command):
    proc = run_cli(*command, "--device", "cuda", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "report:" in proc.stdout
