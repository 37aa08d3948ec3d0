"""The non-blocking mode reads nothing back to the host, so a decoding step can be
captured in a CUDA graph: checked here on the CPU with every host read of a tensor
forbidden, and on a GPU (skipped without one) by graph capture and
``torch.compile(mode="reduce-overhead")``."""

from __future__ import annotations

import pytest
import torch

from gumbelkit.kernels import ops
from gumbelkit.sampling import sample, sample_without_replacement
from host_reads import no_host_reads


def _controls(device) -> dict:
    """Per-row controls as device tensors, built outside any capture (a tensor made
    from a Python list is a host-to-device copy)."""
    return dict(temperature=torch.tensor([0.5, 0.0, 1.0, 2.0], device=device),
                top_k=torch.tensor([5, 0, 0, 3], device=device),
                top_p=torch.tensor([0.9, 1.0, 0.5, 1.0], device=device),
                positions=torch.arange(4, device=device))


def _step(x: torch.Tensor, seed, ctl: dict) -> tuple:
    """One decoding step of both functions in the non-blocking mode."""
    kw = dict(ctl, min_p=0.1, seed=seed, return_logprobs=True, on_invalid="flag",
              validate=False)
    one = sample(x, **kw)
    many = sample_without_replacement(x, 3, **kw)
    return one.tokens, one.logprobs, one.valid, many.tokens, many.logprobs, many.valid


def test_hook_catches_a_host_read():
    with no_host_reads(), pytest.raises(AssertionError, match="Tensor.__bool__"):
        bool(torch.ones(1))


@pytest.mark.skipif(not ops.sampler_kernel_available(torch.zeros(1, 1)),
                    reason="the PyTorch reference body reads its controls (a CPU reference)")
@pytest.mark.parametrize("seed", ["tensor", "int", "list"])
def test_non_blocking_mode_reads_nothing_back(seed):
    """Per-row tensor controls, and each seed form that needs no generator (rows
    without a seed draw one from a CPU generator: host data, never a device read)."""
    x = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    x[2, 0] = torch.nan
    seeds = {"tensor": torch.arange(4), "int": 7, "list": [1, 2, 3, 4]}[seed]
    ctl = _controls("cpu")
    with no_host_reads():
        got = _step(x, seeds, ctl)
    assert got[2].tolist() == [True, True, False, True]
    assert torch.equal(got[0][[0, 1, 3]], _step(x, seeds, ctl)[0][[0, 1, 3]])


CUDA = pytest.mark.cuda


@CUDA
def test_cuda_graph_replays_the_eager_step():
    x = torch.randn(4, 1000, device="cuda")
    seeds = torch.arange(4, device="cuda")
    ctl = _controls("cuda")
    eager = _step(x, seeds, ctl)
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        _step(static_x, seeds, ctl)  # warm-up: compile and load the kernels outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = _step(static_x, seeds, ctl)
    graph.replay()
    for a, b in zip(captured, eager):
        assert torch.equal(a, b)
    static_x.copy_(torch.randn(4, 1000, device="cuda"))
    graph.replay()
    for a, b in zip(captured, _step(static_x, seeds, ctl)):
        assert torch.equal(a, b)


@CUDA
def test_compile_reduce_overhead_equals_eager():
    torch._dynamo.reset()
    x = torch.randn(4, 1000, device="cuda")
    seeds = torch.arange(4, device="cuda")
    ctl = _controls("cuda")
    step = torch.compile(_step, fullgraph=True, mode="reduce-overhead")
    for _ in range(3):  # recorded on a later call, then replayed
        got = [t.clone() for t in step(x, seeds, ctl)]
    for a, b in zip(got, _step(x, seeds, ctl)):
        assert torch.equal(a, b)
