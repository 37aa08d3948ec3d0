"""Bit comparison of the Triton noise kernel with ``_rng`` (the reference).

Run by ``test_triton_noise.py`` in a subprocess with ``TRITON_INTERPRET=1``
and ``GUMBELKIT_BACKEND=triton`` (both must be set before Triton is
imported), so that ``torch.ops.gumbelkit.noise`` on CPU tensors runs the
Triton kernel in Triton's interpreter. Prints one line per mismatch and
exits 1 if there is any.
"""

from __future__ import annotations

import os
import sys

import torch
import triton
import triton.language as tl

import gumbelkit
from gumbelkit import _rng
from gumbelkit.kernels import ops, triton_kernels

KINDS = ("gumbel", "exponential", "logistic")
DTYPES = (torch.float32, torch.float64)
BITS = {torch.float32: torch.int32, torch.float64: torch.int64}
# per-row seeds and row keys: 0, the int64 extremes, negative words, ordinary values
SEEDS = torch.tensor([0, 2**63 - 1, -1, -(2**63), 12345, -987654321987], dtype=torch.int64)
KEYS = torch.tensor([0, 1, -5, 2**40 + 3, 7, 2**62], dtype=torch.int64)
# the words at both ends of both halves of the uniform, and around the middle
EDGE_WORDS = [0, 1, 2, 3, 2**31 - 2, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 2, 2**32 - 1,
              0x12345678, 0xDEADBEEF, 2**24, 2**24 + 1, 2**32 - 2**24 - 1]


@triton.jit
def _from_words_kernel(out_ptr, words_ptr, n, KIND: tl.constexpr, IS_F64: tl.constexpr,
                       BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    w = tl.load(words_ptr + i, mask=i < n, other=0).to(tl.uint32)
    tl.store(out_ptr + i, triton_kernels._noise_from_word(w, KIND, IS_F64), mask=i < n)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(BITS[a.dtype]),
                                                                     b.view(BITS[b.dtype]))


def main() -> int:
    assert os.environ.get("TRITON_INTERPRET") == "1" and ops._TRITON_ON_CPU
    failures = []
    cases = [(rows, cols, stream) for rows, cols in ((6, 1), (6, 3), (6, 5), (0, 5))
             for stream in (0, 1)]
    cases += [(2, 1030, 1), (1, 9, 2**32 - 1)]
    for dtype in DTYPES:
        for kind in KINDS:
            for rows, cols, stream in cases:
                seeds, keys = SEEDS[:rows], KEYS[:rows]
                got = torch.ops.gumbelkit.noise(seeds, keys, cols, stream, kind, dtype)
                ref = _rng.noise(kind, (rows,), cols, _rng.Seed(per_row=seeds), dtype,
                                 row_keys=keys, stream=stream)
                if not same_bits(got, ref):
                    failures.append(f"noise {kind} {dtype} rows={rows} cols={cols} "
                                    f"stream={stream}")
            words = torch.tensor(EDGE_WORDS, dtype=torch.int64)
            got = torch.empty(len(EDGE_WORDS), dtype=dtype)
            _from_words_kernel[(1,)](got, words, len(EDGE_WORDS), KIND=triton_kernels.KINDS[kind],
                                     IS_F64=dtype == torch.float64, BLOCK=16,
                                     **triton_kernels.COMPILE_OPTIONS)
            ref = _rng._TRANSFORMS[kind](words, dtype)
            if not same_bits(got, ref):
                failures.append(f"edge words {kind} {dtype}: {got.tolist()} != {ref.tolist()}")
    # the public function: scalar seed, rows keyed by their flat index, through vmap
    got = gumbelkit.gumbel_noise((2, 3, 7), seed=2**64 - 5)
    ref = _rng.noise("gumbel", (2, 3), 7, _rng.Seed(scalar=2**64 - 5))
    if not same_bits(got, ref):
        failures.append("gumbel_noise with a scalar seed")
    seeds = torch.tensor([[3, -3], [2**40, 0]], dtype=torch.int64)
    got = torch.func.vmap(lambda s: torch.ops.gumbelkit.noise(s, torch.zeros_like(s), 6, 0,
                                                                "logistic", torch.float32))(seeds)
    ref = _rng.noise("logistic", (4,), 6, _rng.Seed(per_row=seeds.reshape(-1)))
    if not same_bits(got, ref.view(2, 2, 6)):
        failures.append("vmap of the noise op")
    print("\n".join(failures) or "all bit-identical")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
