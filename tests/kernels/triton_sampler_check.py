"""Bit comparison of the Triton sampler kernel with the CPU path (C kernel and reference).

Run by ``test_triton_sampler.py`` in a subprocess with ``TRITON_INTERPRET=1`` and
``GUMBELKIT_BACKEND=triton`` (both must be set before Triton is imported), so that
``torch.ops.gumbelkit.sample`` on CPU tensors runs the Triton kernel in Triton's
interpreter. Every case compares tokens and status bit for bit, and
log-probabilities to float32 rounding (float64 rows to 1e-12), with both the C
kernel (float32/bfloat16/float16 logits) and the PyTorch reference; the split
cases (every pass on segment programs, thresholds lowered so that short rows
split) also with the unsplit kernel. Every buffer the launcher allocates (outputs
and the split rows' scratch state) is poisoned first (NaN, or -7 for integers), so
a read of an entry that no launch wrote shows as a mismatch. Prints one line per
mismatch and exits 1 if there is any.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import torch
import triton
import triton.language as tl

from gumbelkit.kernels import ops, sampler_reference, triton_sampler
from gumbelkit.sampling import _controls, sample, sample_without_replacement

INF = math.inf


def exp_nonpos(d: np.ndarray) -> np.ndarray:
    """``gk_exp_nonpos`` of ``csrc/sampler.c`` transcribed to NumPy float64 (the same
    IEEE operations in the same order: NumPy never contracts ``a * b + c``)."""
    d = np.asarray(d, dtype=np.float64)
    keep = d >= -708.0
    d = np.where(keep, d, -708.0)
    magic = np.float64(6755399441055744.0)  # 0x1.8p52
    t = d * np.float64(1.4426950408889634) + magic
    kd = t - magic
    r = (d - kd * np.float64(6.93147180369123816490e-01)) - kd * np.float64(
        1.90821492927058770002e-10)
    p = np.full_like(d, 1.0 / 6227020800.0)
    for c in (1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
              1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5,
              1.0, 1.0):
        p = p * r + np.float64(c)
    sb = (t.view(np.int64) - magic.view(np.int64) + 1023) << 52
    return p * sb.view(np.float64) * keep.astype(np.float64)


@triton.jit
def _exp_kernel(out_ptr, d_ptr, n, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    d = tl.load(d_ptr + i, mask=i < n, other=0.0)
    tl.store(out_ptr + i, triton_sampler._exp_nonpos(d), mask=i < n)


def exp_case(failures: list[str]) -> None:
    """The kernel's exp against the transcription, bit for bit: 0, tiny and huge
    arguments, both sides of -708, -inf, and a spread over [-750, 0]."""
    rng = np.random.default_rng(0)
    d = np.concatenate([[0.0, -0.0, -1e-300, -2.0**-60, -0.5, -np.log(2) / 2, -1.0, -707.9,
                         -708.0, -708.0000000001, -745.2, -1e300, -np.inf],
                        -rng.exponential(5.0, 200), -rng.uniform(0, 750, 200)])
    got = torch.empty(len(d), dtype=torch.float64)
    _exp_kernel[(1,)](got, torch.from_numpy(d), len(d), BLOCK=512,
                      **triton_sampler.COMPILE_OPTIONS)
    ref = exp_nonpos(d)
    if not np.array_equal(got.numpy().view(np.int64), ref.view(np.int64)):
        failures.append("exp_nonpos differs from the transcription of gk_exp_nonpos")
    normal = d >= -708.0
    if not np.allclose(ref[normal], np.exp(d[normal]), rtol=4e-16, atol=0):
        failures.append("the transcription of gk_exp_nonpos is not exp")


def _controls_for(rows: int, temperature=1.0, top_k=None, top_p=None, min_p=None,
                  log_min_p=None, seeds=None, positions=None) -> _controls.Controls:
    seeds = torch.arange(1000, 1000 + rows) if seeds is None else seeds
    positions = torch.arange(rows) * 7 if positions is None else positions
    ctl, _ = _controls.controls(rows, temperature=temperature, top_k=top_k, top_p=top_p,
                                min_p=min_p, seed=seeds, positions=positions, generator=None)
    if log_min_p is not None:
        ctl = ctl._replace(log_min_p=log_min_p.to(torch.float64))
    return ctl


def _lp_close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    a, b = a.double(), b.double()
    same_inf = torch.equal(torch.isinf(a), torch.isinf(b)) and torch.equal(a[torch.isinf(a)],
                                                                          b[torch.isinf(b)])
    fin = torch.isfinite(a)
    return same_inf and torch.allclose(a[fin], b[fin], rtol=rtol, atol=rtol)


def poisoned(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    fill = float("nan") if dtype.is_floating_point else -7
    return torch.full(shape, fill, dtype=dtype, device=device)


def compare(name: str, x: torch.Tensor, ctl: _controls.Controls, n: int,
            failures: list[str], logprobs: bool = True, device: str = "cpu",
            block: int = 256) -> None:
    """The op on ``device`` against the CPU path, appending mismatches to ``failures``;
    in the interpreter the kernel reads ``block`` columns at a time (small blocks make
    short rows take several blocks per pass; large ones keep the interpreter quick)."""
    if device == "cpu":
        triton_sampler.BLOCK = block
    out = torch.ops.gumbelkit.sample(x.to(device), *(c.to(device) for c in ctl), n, logprobs)
    tokens, lp, status = (t.cpu() for t in out)
    paths = {"reference": sampler_reference.sample_rows(x, *ctl, n, logprobs)}
    if x.dtype != torch.float64:
        paths["C"] = ops.sample_fused(x, *ctl, n, logprobs, threads=1)
    rtol = 1e-12 if x.dtype == torch.float64 else 1e-5
    for path, (t_ref, lp_ref, s_ref) in paths.items():
        if not torch.equal(status, s_ref):
            failures.append(f"{name} [{path}] status {status.tolist()} != {s_ref.tolist()}")
        if not torch.equal(tokens, t_ref):
            failures.append(f"{name} [{path}] tokens {tokens.tolist()} != {t_ref.tolist()}")
        if logprobs and not _lp_close(lp, lp_ref, rtol):
            failures.append(f"{name} [{path}] logprobs {lp.tolist()} != {lp_ref.tolist()}")
    if logprobs:
        assert lp.dtype == (torch.float64 if x.dtype == torch.float64 else torch.float32)
    else:
        assert lp.shape == (x.shape[0], 0)


def _equal_and_masked_rows() -> tuple[torch.Tensor, _controls.Controls]:
    """Six rows of 40: all equal (two levels), -inf masks leaving half or 5 tokens,
    finfo.min rows (masked where x / T is -inf), with per-row controls."""
    special = torch.zeros(6, 40)
    special[1] = 2.5
    special[2, ::2] = -INF
    special[3, :35] = -INF
    special[4, 5:] = torch.finfo(torch.float32).min
    special[5, 1:] = torch.finfo(torch.float32).min
    special[5, 0] = 1.0
    ctl = _controls_for(6, temperature=torch.tensor([1.0, 0.5, 1.0, 2.0, 0.5, 1.0]),
                        top_k=torch.tensor([3, 0, 4, 2, 0, 0]),
                        top_p=torch.tensor([1.0, 0.5, 0.9, 1.0, 1.0, 0.9]),
                        min_p=torch.tensor([0.0, 0.0, 0.1, 0.0, 0.5, 0.0]))
    return special, ctl


def _invalid_rows(cols: int, gen: torch.Generator) -> torch.Tensor:
    """Seven rows of ``cols``: NaN, +inf, all -inf, 3e38 (overflows x / T for T < 1),
    two finite tokens, one finite token, and a good row last."""
    bad = torch.randn(7, cols, generator=gen)
    bad[0, 4] = math.nan
    bad[1, 9] = INF
    bad[2] = -INF
    bad[3, 2] = 3e38
    bad[4, 2:] = -INF
    bad[5, 1:] = -INF
    return bad


def op_cases(failures: list[str], device: str = "cpu") -> None:
    """Every case of the op on ``device`` against the CPU path."""
    gen = torch.Generator().manual_seed(0)

    # every control alone and combined, per-row, greedy rows (filters ignored)
    rows, vocab = 10, 200
    x = torch.randn(rows, vocab, generator=gen) * 3
    ctl = _controls_for(
        rows,
        temperature=torch.tensor([0.7, 1.0, 1.3, 0.9, 0.8, 1.1, 0.6, 1.0, 0.0, 0.0]),
        top_k=torch.tensor([0, 20, 0, 0, 15, 30, 0, 25, 0, 5]),
        top_p=torch.tensor([1.0, 1.0, 0.8, 1.0, 0.9, 1.0, 0.7, 0.85, 1.0, 0.5]),
        min_p=torch.tensor([0.0, 0.0, 0.0, 0.05, 0.0, 0.02, 0.1, 0.03, 0.0, 0.2]))
    compare("controls n=1", x, ctl, 1, failures, device=device, block=64)
    compare("controls n=3", x, ctl, 3, failures, device=device)
    compare("controls n=2 without logprobs", x, ctl, 2, failures, logprobs=False, device=device)
    for dtype in (torch.bfloat16, torch.float16):
        compare(f"controls {dtype}", x.to(dtype), ctl, 2, failures, device=device)
    compare("controls float64", x.double(), ctl, 2, failures, device=device)
    # a strided (column-sliced) view, read in place
    wide = torch.randn(rows, 2 * vocab, generator=gen)
    compare("strided rows", wide[:, 3:3 + vocab], ctl, 1, failures, device=device)

    # ties at the boundaries: logits on a few levels, so top-k's k-th value, the top-p
    # boundary group and min-p's cut fall inside groups of equal logits
    levels = torch.randint(0, 6, (8, 60), generator=gen).float() * 0.5
    ctl = _controls_for(
        8, top_k=torch.tensor([3, 10, 0, 0, 7, 0, 12, 0]),
        top_p=torch.tensor([1.0, 1.0, 0.3, 0.6, 0.5, 1.0, 0.9, 1.0]),
        log_min_p=torch.tensor([-INF, -INF, -INF, -INF, -INF, -1.0, -1.5, -0.5]))
    compare("tied levels n=1", levels, ctl, 1, failures, device=device)
    compare("tied levels n=4", levels, ctl, 4, failures, device=device, block=16)

    # all-equal rows, and rows with -inf masks (and finfo.min, masked where x / T is -inf)
    special, ctl = _equal_and_masked_rows()
    compare("equal and masked rows n=1", special, ctl, 1, failures, device=device)
    compare("equal and masked rows n=3", special, ctl, 3, failures, device=device)

    # invalid rows: NaN, +inf, all -inf, overflowing x / T, too few tokens (sampled and
    # greedy), and a good row beside them
    bad = _invalid_rows(30, gen)
    ctl = _controls_for(7, temperature=torch.tensor([1.0, 1.0, 1.0, 0.5, 1.0, 0.0, 1.0]),
                        top_k=torch.tensor([0, 0, 0, 0, 0, 0, 1]))
    compare("invalid rows n=1", bad, ctl, 1, failures, device=device)
    compare("invalid rows n=2", bad, ctl, 2, failures, device=device)
    compare("invalid rows float64", bad.double(), ctl, 2, failures, device=device)

    # seeds and row keys at the int64 extremes
    x = torch.randn(4, 50, generator=gen)
    ctl = _controls_for(4, top_p=0.95, seeds=torch.tensor([0, -1, 2**63 - 1, -(2**63)]),
                        positions=torch.tensor([0, 1, 2**31 - 1, 12345]))
    compare("extreme seeds", x, ctl, 2, failures, device=device)

    # the empty batch
    compare("empty batch", torch.zeros(0, 9), _controls_for(0), 2, failures, device=device)


def split_cases(failures: list[str]) -> None:
    """Split rows (every pass on segment programs with a second-stage reduction) on
    small rows, with the split thresholds lowered: each case checks that its rows do
    split and compares with the unsplit kernel as well as with the CPU path."""
    saved = (triton_sampler.SPLIT_MIN_COLS, triton_sampler.SEGMENT_COLS)

    def split(name: str, x: torch.Tensor, ctl: _controls.Controls, n: int, block: int,
              logprobs: bool = True) -> None:
        triton_sampler.SPLIT_MIN_COLS, triton_sampler.SEGMENT_COLS = saved
        triton_sampler.BLOCK = 64  # one block per row: the quickest unsplit run
        tokens, lp, status = torch.ops.gumbelkit.sample(x, *ctl, n, logprobs)
        triton_sampler.SPLIT_MIN_COLS, triton_sampler.SEGMENT_COLS = 16, 16
        triton_sampler.BLOCK = block
        segments, _ = triton_sampler._segments(x.shape[0], x.shape[1], n)
        if segments < 2:
            failures.append(f"split {name}: not split ({segments} segment)")
        compare(f"split {name}", x, ctl, n, failures, logprobs=logprobs, block=block)
        got = torch.ops.gumbelkit.sample(x, *ctl, n, logprobs)
        rtol = 1e-12 if x.dtype == torch.float64 else 1e-5
        if not (torch.equal(got[0], tokens) and torch.equal(got[2], status)
                and _lp_close(got[1], lp, rtol)):
            failures.append(f"split {name} [unsplit Triton] {got} != {(tokens, lp, status)}")

    try:
        gen = torch.Generator().manual_seed(2)
        # per-row controls: each filter alone and combined, off, at its extremes (k = 1,
        # k >= the row, a tiny p), and greedy rows (filters ignored)
        rows, vocab = 8, 40
        x = torch.randn(rows, vocab, generator=gen) * 3
        ctl = _controls_for(
            rows, temperature=torch.tensor([0.7, 1.0, 1.3, 0.9, 0.8, 1.1, 0.0, 0.0]),
            top_k=torch.tensor([0, 20, 1, 0, 15, 60, 0, 5]),
            top_p=torch.tensor([1.0, 0.8, 1.0, 0.02, 0.9, 0.7, 1.0, 0.5]),
            min_p=torch.tensor([0.0, 0.0, 0.0, 0.05, 0.02, 0.1, 0.0, 0.2]))
        split("controls n=3", x, ctl, 3, 8)
        few = [1, 3, 4, 7]
        split("controls bfloat16 without logprobs", x[few].to(torch.bfloat16),
              _controls.Controls(*(c[few] for c in ctl)), 1, 8, logprobs=False)

        # float64 (keys of 64 bits: twice the search steps), with a NaN row and a row
        # with too few tokens
        x64 = x[[1, 4, 5]].double()
        x64[1, 7] = math.nan
        x64[2, 3:] = -INF
        split("controls float64", x64, _controls.Controls(*(c[[1, 4, 5]] for c in ctl)), 4,
              8)

        # ties across segment boundaries (segments of 8 columns here): equal logits on a
        # few levels, so the k-th largest logit, the top-p boundary group and min-p's cut
        # lie in groups spread over several segments; greedy rows whose maxima lie in
        # different segments, an all-equal greedy row (winners 0, 1, 2, ...); a top-p
        # row whose nucleus is half of 8 equal maxima beside logits whose w is 0
        levels = torch.randint(0, 4, (8, 40), generator=gen).float() * 0.5
        levels[5] = 0.0
        levels[5, [7, 8, 23, 31, 32]] = 1.0
        levels[6] = 1.0
        levels[7] = -1000.0
        levels[7, [3, 8, 9, 15, 16, 24, 33, 39]] = 0.0
        ctl = _controls_for(
            8, temperature=torch.tensor([1.0, 1.0, 1.0, 0.5, 1.0, 0.0, 0.0, 1.0]),
            top_k=torch.tensor([3, 10, 0, 0, 7, 0, 0, 0]),
            top_p=torch.tensor([1.0, 0.6, 0.3, 0.6, 0.5, 1.0, 1.0, 0.5]),
            log_min_p=torch.tensor([-INF, -INF, -INF, -1.0, -1.0, -INF, -INF, -INF]))
        split("tied levels n=4", levels, ctl, 4, 8)

        # -inf masks (a segment with no kept token), finfo.min, and invalid rows: NaN,
        # +inf, all -inf, overflowing x / T, too few tokens (sampled and greedy)
        special, ctl = _equal_and_masked_rows()
        split("equal and masked rows n=3", special, ctl, 3, 8)
        bad = _invalid_rows(32, gen)
        ctl = _controls_for(7, temperature=torch.tensor([1.0, 1.0, 1.0, 0.5, 1.0, 0.0, 1.0]),
                            top_k=torch.tensor([0, 0, 0, 0, 3, 0, 1]),
                            top_p=torch.tensor([0.9, 1.0, 0.9, 1.0, 0.9, 1.0, 0.9]))
        split("invalid rows n=2", bad, ctl, 2, 8)

        # beyond SPLIT_MAX_N tokens per row, and from TARGET_PROGRAMS rows, rows stay
        # in one program each
        if triton_sampler._segments(1, 200, triton_sampler.SPLIT_MAX_N + 1)[0] != 1 or \
                triton_sampler._segments(triton_sampler.TARGET_PROGRAMS, 200, 1)[0] != 1:
            failures.append("split: too many tokens or rows still split")
    finally:
        triton_sampler.SPLIT_MIN_COLS, triton_sampler.SEGMENT_COLS = saved


def main() -> int:
    assert os.environ.get("TRITON_INTERPRET") == "1" and ops._TRITON_ON_CPU
    triton_sampler._empty = poisoned
    failures: list[str] = []
    exp_case(failures)
    op_cases(failures)
    split_cases(failures)
    gen = torch.Generator().manual_seed(1)

    # the public functions on the Triton route: flagged rows, non-blocking mode
    x = torch.randn(3, 64, generator=gen)
    x[1, 0] = math.nan
    out = sample(x, temperature=0.8, top_k=10, top_p=0.9, seed=torch.tensor([5, 6, 7]),
                 return_logprobs=True, on_invalid="flag", validate=False)
    if out.valid.tolist() != [True, False, True] or out.tokens[1] != -1:
        failures.append(f"sample on the Triton route: {out}")
    ref = sampler_reference.sample_rows(x, *_controls_for(
        3, temperature=0.8, top_k=10, top_p=0.9, seeds=torch.tensor([5, 6, 7]),
        positions=torch.zeros(3, dtype=torch.int64)), 1, False)[0][:, 0]
    if not torch.equal(out.tokens[[0, 2]], ref[[0, 2]]):
        failures.append(f"sample on the Triton route: {out.tokens} != {ref}")
    out = sample_without_replacement(x[[0, 2]], 3, seed=11)
    if out.tokens.shape != (2, 3) or not bool(out.valid.all()):
        failures.append(f"sample_without_replacement on the Triton route: {out}")

    print("\n".join(failures) or "all bit-identical")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
