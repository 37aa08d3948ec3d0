"""The op ``perturbed_top_k`` (``sparse_gumbel_softmax``'s O(V) part) on CPU: the k
largest ``fl(x + G)`` of the noise op's Gumbel noise, in increasing column order,
ties at the k-th value to the lowest columns; its fake implementation."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import gumbelkit
from gumbelkit.kernels import row_reference

TOP_K = torch.ops.gumbelkit.perturbed_top_k
NOISE = torch.ops.gumbelkit.noise
INF = float("inf")


def _logits(rows: int, cols: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, cols, generator=g, dtype=torch.float64) * 3).to(dtype)


def _seeds(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(rows, dtype=torch.int64) * 7919 - 2**62, torch.arange(rows) * -13 + 5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_k_1_is_gumbel_max(dtype):
    x = _logits(6, 300, dtype, 1)
    x[2, ::3] = -INF
    seeds, keys = _seeds(6)
    index, noise = TOP_K(x, seeds, keys, 1)
    expected = torch.ops.gumbelkit.gumbel_max(x, seeds, keys, [6], 1)
    assert torch.equal(index[:, 0], expected)
    g = NOISE(seeds, keys, 300, 0, "gumbel", row_reference.compute_dtype(dtype))
    assert torch.equal(noise, g.gather(-1, index))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_k_is_the_dense_top_k_of_x_plus_noise(dtype):
    gen = torch.Generator().manual_seed(5)
    for trial in range(4):
        rows, cols = 5, int(torch.randint(2, 400, (), generator=gen))
        k = int(torch.randint(1, cols + 1, (), generator=gen))
        x = _logits(rows, 2 * cols, dtype, trial)[:, ::2]  # strided columns
        seeds, keys = _seeds(rows)
        index, noise = TOP_K(x, seeds, keys, k)
        g = NOISE(seeds, keys, cols, 0, "gumbel", dtype)
        # distinct values (no ties in continuous noise): the top-k set, sorted
        dense = (x + g).topk(k, dim=-1).indices.sort(dim=-1).values
        assert torch.equal(index, dense), (cols, k)
        assert torch.equal(noise, g.gather(-1, index))


def test_ties_at_the_kth_value_take_the_lowest_columns():
    x = torch.full((4, 10), -INF)
    x[0, [2, 7]] = 0.0  # two finite: k = 5 adds the three lowest masked columns
    x[1] = 1.0          # all finite
    x[2, 9] = 0.5       # one finite, the last column
    x[3] = 0.0
    x[3, [1, 4, 6, 8, 9]] = 1e30  # x + G rounds to x: five equal values for four slots
    x[3, 6] = 2e30
    seeds, keys = _seeds(4)
    index, _ = TOP_K(x, seeds, keys, 5)
    assert index[0].tolist() == [0, 1, 2, 3, 7]
    assert index[2].tolist() == [0, 1, 2, 3, 9]
    index, _ = TOP_K(x, seeds, keys, 4)
    assert index[3].tolist() == [1, 4, 6, 8]


def test_compact_seeds_and_keys_equal_per_row_ones():
    x = _logits(4, 50, torch.float32, 3)
    rows = torch.arange(4, dtype=torch.int64)
    compact = TOP_K(x, torch.tensor([99]), torch.empty(0, dtype=torch.int64), 6)
    full = TOP_K(x, torch.full((4,), 99), rows, 6)
    assert torch.equal(compact[0], full[0]) and torch.equal(compact[1], full[1])


def test_chunks_of_rows_equal_one_block(monkeypatch):
    x = _logits(7, 300, torch.float32, 4)
    seeds, keys = _seeds(7)
    whole = TOP_K(x, seeds, keys, 9)
    monkeypatch.setattr(row_reference, "TOP_K_CHUNK_ELEMENTS", 700)  # two rows per chunk
    chunked = TOP_K(x, seeds, keys, 9)
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])


def test_empty_batch():
    index, noise = TOP_K(torch.zeros(0, 5, dtype=torch.float64), torch.tensor([1]),
                         torch.empty(0, dtype=torch.int64), 3)
    assert index.shape == (0, 3) and noise.shape == (0, 3) and noise.dtype == torch.float64


@pytest.mark.parametrize("k", [0, 6])
def test_k_outside_one_to_cols_is_an_error(k):
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\]"):
        TOP_K(torch.zeros(2, 5), torch.tensor([1]), torch.empty(0, dtype=torch.int64), k)


def test_fake_implementation_gives_shapes_and_dtypes():
    with FakeTensorMode():
        x = torch.empty(4, 30, dtype=torch.bfloat16)
        index, noise = TOP_K(x, torch.empty(4, dtype=torch.int64),
                             torch.empty(4, dtype=torch.int64), 7)
    assert index.shape == (4, 7) and index.dtype == torch.int64
    assert noise.shape == (4, 7) and noise.dtype == torch.float32



def test_vmap_is_one_batched_call(monkeypatch):
    """One call for the whole batch (no per-element fallback), each element with the
    noise it has alone: sparse_gumbel_softmax mapped over rows with per-row seeds, and
    the op mapped over batches of rows with one seed for every row."""
    x = _logits(5, 30, torch.float32, 6)
    seeds = torch.arange(10, 15)

    def sample(x, seed):
        return gumbelkit.sparse_gumbel_softmax(x, 4, 0.5, seed=seed)

    batched = sample(x, seeds)
    calls = []
    reference = row_reference.perturbed_top_k_rows

    def recorded(x, *args):
        calls.append(tuple(x.shape))
        return reference(x, *args)

    monkeypatch.setattr(row_reference, "perturbed_top_k_rows", recorded)
    mapped = torch.func.vmap(sample)(x, seeds)
    assert calls == [(5, 30)]
    assert torch.equal(mapped[0], batched[0]) and torch.equal(mapped[1], batched[1])
    stacked = torch.stack([x[:3], x[2:]])
    one_seed, row_keys = torch.tensor([77]), torch.empty(0, dtype=torch.int64)
    nested = torch.func.vmap(lambda x: TOP_K(x, one_seed, row_keys, 3))(stacked)
    for b in range(2):
        alone = TOP_K(stacked[b], one_seed, row_keys, 3)
        assert torch.equal(nested[0][b], alone[0]) and torch.equal(nested[1][b], alone[1])


def test_the_fix_up_other_devices_run_on_every_row_changes_no_untied_row():
    """Off the CPU the reference runs the lowest-ties fix-up on every row instead of
    the rows a host read names: it gives the CPU's result on rows with and without a
    left-out tie."""
    z = _logits(6, 200, torch.float32, 8)
    z[1, 10:60] = 50.0  # 50 equal values, the largest of the row
    z[2, :] = -INF
    z[2, 150] = 0.0
    z[4, 3:6] = z[4].max() + 1  # equal, but all kept
    for k in (1, 5, 30):
        values, index = z.topk(k + 1, dim=-1)
        every_row = row_reference._with_lowest_ties(z, values[:, :k], index[:, :k])
        assert torch.equal(every_row, row_reference._top_k_chunk(z, k)), k
    assert row_reference._top_k_chunk(z, 5)[1].tolist() == [10, 11, 12, 13, 14]
