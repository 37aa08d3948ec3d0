"""The token sampler and Gumbel-Softmax inside CUDA graphs and ``torch.compile(mode=
"reduce-overhead")``: captured once, replayed with new seeds, positions and logits
written into the captured tensors, they give eager's tokens for the same seeds.

The GPU tests (marked ``cuda``, skipped without one) capture with
``torch.cuda.graph`` and compile with ``fullgraph=True, mode="reduce-overhead"``
(Inductor's CUDA graphs; a skipped graph fails the test). A capture fails on any
host read (``.item()``, ``bool(t)``, ``nonzero``); the CPU test here finds such
reads without a GPU, on the PyTorch path the CUDA device runs.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gumbelkit import _validate, functional
from gumbelkit.kernels import _lib, ops
from gumbelkit.sampling import sample

ROWS, VOCAB = 8, 1000
CONTROLS = dict(temperature=0.8, top_k=50, top_p=0.9)


def _draw(x: torch.Tensor, seeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The sampler's tokens, without a host read (device seeds and positions)."""
    return sample(x, **CONTROLS, seed=seeds, positions=positions, validate=False,
                  on_invalid="flag").tokens


def _relax(x: torch.Tensor, seeds: torch.Tensor, positions: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft and hard Gumbel-Softmax samples with one seed per row (positions unused)."""
    return (functional.gumbel_softmax(x, 0.5, seed=seeds),
            functional.gumbel_softmax(x, 0.5, hard=True, seed=seeds))


FUNCTIONS = {"sample": _draw, "gumbel_softmax": _relax}


def _outputs(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def _inputs(step: int, device: str = "cuda") -> tuple[torch.Tensor, ...]:
    """Logits, per-row seeds and positions of decoding step ``step``."""
    gen = torch.Generator().manual_seed(step)
    x = (torch.randn(ROWS, VOCAB, generator=gen) * 3).to(device)
    seeds = torch.randint(0, 2**62, (ROWS,), generator=gen).to(device)
    positions = torch.full((ROWS,), step, dtype=torch.int64).to(device)
    return x, seeds, positions


def _capture(fn, *static: torch.Tensor):
    """``fn(*static)`` captured in a CUDA graph (after warm-up on a side stream, as
    ``torch.cuda.graphs`` asks), and its static output."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn(*static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(*static)
    return graph, out


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_cuda_graph_replays_equal_eager(name):
    fn = FUNCTIONS[name]
    static = _inputs(0)
    graph, out = _capture(fn, *static)
    for step in range(1, 4):
        fresh = _inputs(step)
        for dst, src in zip(static, fresh):
            dst.copy_(src)
        graph.replay()
        for got, want in zip(_outputs(out), _outputs(fn(*fresh))):
            assert torch.equal(got, want), (name, step)


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_reduce_overhead_compile_replays_equal_eager(name):
    """Inductor may round the soft sample's arithmetic differently from eager, so it is
    compared to float32 rounding; tokens and hard samples must be identical."""
    from torch._dynamo.utils import counters

    fn = FUNCTIONS[name]
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(fn, fullgraph=True, mode="reduce-overhead")
    for step in range(4):  # the first calls record, the later ones replay the graph
        inputs = _inputs(step)
        got = [t.clone() for t in _outputs(compiled(*inputs))]
        want = _outputs(fn(*inputs))
        if name == "sample":
            assert torch.equal(got[0], want[0]), step
        else:
            torch.testing.assert_close(got[0], want[0])
            assert torch.equal(got[1], want[1]), step
    assert counters["inductor"]["cudagraph_skips"] == 0


HOST_READS = {"aten::_local_scalar_dense", "aten::is_nonzero", "aten::nonzero",
              "aten::masked_select", "aten::_unique2", "aten::unique_consecutive"}


class _HostReads(TorchDispatchMode):
    """Records the ops that copy a data-dependent value or shape back to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func.name()) in HOST_READS:
            self.found.append(str(func.name()))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_the_reference_path_reads_nothing_back_while_capturing(name, monkeypatch):
    """On CPU tensors without the C kernels the calls take the PyTorch path (CUDA's
    without Triton); with the checks deferred as during a capture, nothing is read
    back to the host, which would make ``torch.cuda.graph`` capture fail."""
    monkeypatch.setattr(_validate, "checks_deferred", lambda t: True)
    inputs = _inputs(0, device="cpu")
    with _lib.disabled():
        FUNCTIONS[name](*inputs)  # the first call may set things up
        with _HostReads() as reads:
            FUNCTIONS[name](*inputs)
    assert reads.found == []


class _ConcreteKernels:
    """Stands in for ``triton_rows``: a Concrete launch whose NaN report (-1: none)
    stays on the device, as the Triton kernel's does."""

    @staticmethod
    def concrete_rows(x, tau, seeds, keys, mode, save_soft, gamma, span):
        return torch.zeros_like(x), x.new_empty(0), torch.tensor(-1)


def test_the_concrete_triton_path_reads_nothing_back_while_capturing(monkeypatch):
    """Binary and Hard Concrete on CUDA: with the checks deferred (a CUDA graph
    capturing), the first-NaN index is asserted on the device, not read back as
    ``int()``, which would end the capture."""
    monkeypatch.setattr(ops, "checks_deferred", lambda t: True)
    x = torch.randn(4, 5)
    seeds = torch.zeros(1, dtype=torch.int64)
    with _HostReads() as reads:
        ops._concrete_triton(_ConcreteKernels, x, torch.ones(4, 5), seeds, seeds[:0], 0, False,
                             0.0, 1.0, [4, 5])
    assert reads.found == []
