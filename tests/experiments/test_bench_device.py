"""``gumbelkit bench --device cuda``: the device table, run here on the CPU with tiny
shapes (the same code as on a GPU, timed with perf_counter instead of CUDA events)."""

from __future__ import annotations

import pytest
import torch

from gumbelkit.cli import main
from gumbelkit.experiments import bench_device

OPS = ["soft", "hard fwd+bwd", "gumbel_max", "sample, seed", "sample, per-row seeds"]
BASELINES = ["F.gumbel_softmax", "F.gumbel_softmax", "multinomial(softmax)",
             "vLLM-style torch", "vLLM-style torch"]


def test_the_table_has_every_operation_and_column_on_cpu():
    shapes = [(4, 64), (1, 50)]
    rows = bench_device.measure(shapes, torch.device("cpu"), repeats=1)
    assert [(r.shape, r.op, r.baseline) for r in rows] == [
        (s, op, base) for s in shapes for op, base in zip(OPS, BASELINES)]
    assert all(r.ours > 0 and r.ref > 0 and r.copy > 0 for r in rows)
    lines = bench_device.format_table(rows).splitlines()
    assert lines[0].split() == " ".join(bench_device.COLUMNS).split()
    assert set(lines[1]) == {"-"} and len(lines) == 2 + len(rows)
    for line, r in zip(lines[2:], rows):
        assert line.split()[0] == f"{r.shape[0]}x{r.shape[1]}" and r.op in line
        cells = line.split()
        speedup, gk_copy, gb, copy_gb = cells[-5], cells[-3], cells[-2], cells[-1]
        assert f" {r.ours:.3f} {r.baseline} " in " ".join(cells)
        assert float(speedup.rstrip("x")) == pytest.approx(r.ref / r.ours, rel=0.01, abs=0.01)
        assert float(gb) == pytest.approx(r.gigabytes_per_second(), rel=0.01, abs=0.1)
        assert float(copy_gb) == pytest.approx(r.gigabytes_per_second("copy"), rel=0.01,
                                               abs=0.1)
        assert gk_copy.endswith("x")


def test_gigabytes_per_second_counts_the_unavoidable_passes():
    row = bench_device.Row((1000, 1000), "hard fwd+bwd", "F.gumbel_softmax", ours=2.0,
                           ref=4.0, copy=1.0)
    assert row.gigabytes_per_second() == pytest.approx(4 * 4e6 / 2e-3 / 1e9)  # 8 GB/s
    assert row.gigabytes_per_second("copy") == pytest.approx(2 * 4e6 / 1e-3 / 1e9)


def test_vllm_style_sampler_keeps_the_top_k_and_nucleus():
    """softmax [0.5, 0.3, 0.15, 0.05]: top-k 3 drops the last, and top-p 0.7 of the
    renormalized [0.526, 0.316, 0.158] keeps the first two; both appear in 2000 rows
    (P(one never appears) < 2 * 0.64**2000)."""
    torch.manual_seed(0)
    rows = 2000
    x = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().expand(rows, 4)
    tokens = bench_device.vllm_style_sample(x, torch.ones(rows),
                                            torch.full((rows,), 3, dtype=torch.int64),
                                            torch.full((rows,), 0.7))
    assert set(tokens.tolist()) == {0, 1}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cuda_without_a_gpu_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--device", "cuda"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "--device cuda: no CUDA device is available" in captured.err


def test_shapes_narrower_than_top_k_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--device", "cuda", "--shapes", "64x128", "4x49"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at least 50 columns (the sampler's top-k), got 4x49" in err


@pytest.mark.parametrize("flags, named", [
    (["--sampler"], "--sampler is"), (["--threads", "2"], "--threads is"),
    (["--reference", "--batch", "8"], "--reference, --batch are"),
])
def test_cpu_table_flags_are_refused_with_cuda(capsys, flags, named):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--device", "cuda", *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{named} for the CPU tables" in err
