"""An independent NumPy reference of Philox4x32-10 and the word -> noise maps.

Written from the algorithm's description (Salmon et al. 2011), with uint64
arithmetic rather than the 16-bit splitting of ``gumbelkit._rng``, so that the
two implementations check each other.
"""

from __future__ import annotations

import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
MASK = np.uint64(0xFFFFFFFF)

# Random123 known-answer vectors: (counter, key, output).
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def philox4x32_10(counter, key):
    """Arrays of 32-bit words (any broadcastable shapes) -> tuple of four uint64 arrays."""
    c = [np.asarray(x, dtype=np.uint64) for x in counter]
    k0, k1 = (np.asarray(x, dtype=np.uint64) for x in key)
    for r in range(10):
        if r:
            k0 = (k0 + W0) & MASK
            k1 = (k1 + W1) & MASK
        p0 = M0 * c[0]
        p1 = M1 * c[2]
        c = [((p1 >> np.uint64(32)) ^ c[1] ^ k0) & MASK, p1 & MASK,
             ((p0 >> np.uint64(32)) ^ c[3] ^ k1) & MASK, p0 & MASK]
    return tuple(c)


def words(seed: int, row_keys, n_cols: int, stream: int = 0) -> np.ndarray:
    """uint64 array [rows, n_cols] of the words gumbelkit draws (the noise contract)."""
    row_keys = np.asarray(row_keys, dtype=np.uint64)[:, None]
    cols = np.arange(n_cols, dtype=np.uint64)[None, :]
    out = philox4x32_10((cols >> np.uint64(2), np.uint64(stream), row_keys & MASK,
                         row_keys >> np.uint64(32)),
                        (np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)))
    out = np.broadcast_arrays(*out)
    lane = (cols & np.uint64(3)).astype(np.int64)
    return np.choose(np.broadcast_to(lane, out[0].shape), out)


def uniform(w: np.ndarray) -> np.ndarray:
    """u = (w + 1/2) / 2**32 in float64 (exact)."""
    return (w.astype(np.float64) + 0.5) / 2.0**32
