"""Fused CPU kernels against the pure-PyTorch reference path.

Fresh random inputs every run (no fixed data), output buffers poisoned with
NaN (so an element the kernel forgot to write shows), -inf masks, per-row
temperatures, non-contiguous and ``dim=0`` inputs, bf16; bit-identical noise
for every instruction set, thread count and batch composition; float64
gradcheck of the backward kernels. The float32 relaxed sample is formed from
float32-accurate noise (not bit-identical): it is checked against a float64
computation, and hard samples, whose argmax must be exact, on near-ties.
"""

from __future__ import annotations

import math

import pytest
import torch

from gumbelkit import _rng
from gumbelkit import functional as F
from gumbelkit.kernels import _lib, ops

pytestmark = pytest.mark.skipif(_lib.library() is None, reason="fused kernels not built")

FLOAT_TOL = {torch.float32: dict(rtol=2e-5, atol=1e-6), torch.float64: dict(rtol=1e-10, atol=1e-14),
             torch.bfloat16: dict(rtol=1e-2, atol=1e-2), torch.float16: dict(rtol=2e-3, atol=1e-3)}

TAU_GRAD_TOL = {torch.float32: dict(rtol=1e-3, atol=2e-4),
                torch.float64: dict(rtol=1e-8, atol=1e-12),
                torch.bfloat16: dict(rtol=1e-2, atol=1e-2),
                torch.float16: dict(rtol=1e-2, atol=1e-2)}


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    """Every kernel output buffer starts as NaN (integer buffers as -7)."""
    def poisoned(shape, dtype):
        fill = math.nan if dtype.is_floating_point else -7
        return torch.full(shape, fill, dtype=dtype)
    monkeypatch.setattr(ops, "_empty", poisoned)


@pytest.fixture(params=_lib.available_isas() or ["none"])
def isa(request):
    """Run a test once per instruction set this CPU supports."""
    before = _lib.isa()
    _lib.set_isa(request.param)
    yield request.param
    _lib.set_isa(before)


def fresh_logits(*shape: int, dtype=torch.float32, mask: float = 0.2) -> torch.Tensor:
    """Random logits (fresh each run) with about ``mask`` of the entries -inf,
    never a whole row."""
    x = torch.randn(*shape, dtype=torch.float64) * 3
    masked = torch.rand(*shape) < mask
    masked[..., 0] = False
    return x.masked_fill(masked, -math.inf).to(dtype)


def fresh_seed() -> int:
    return int(torch.randint(0, 2**62, ()))


# ---------------------------------------------------------------- noise


@pytest.mark.parametrize("kind", ["gumbel", "exponential", "logistic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_bit_identical_to_rng(isa, kind, dtype):
    rows, cols = 5, 517
    seeds = torch.randint(-2**62, 2**62, (rows,))
    keys = torch.randint(0, 2**40, (rows,))
    stream = int(torch.randint(0, 2**32, ()))
    reference = _rng.noise(kind, (rows,), cols, _rng.Seed(per_row=seeds), dtype,
                           row_keys=keys, stream=stream)
    fused = torch.ops.gumbelkit.noise(seeds, keys, cols, stream, kind, dtype)
    assert torch.equal(fused, reference)


def test_block_fill_any_offset_and_length(isa):
    """The block-fill API (used by the token sampler) at unaligned offsets."""
    import ctypes
    lib = _lib.library()
    seed, key = fresh_seed(), int(torch.randint(0, 2**40, ()))
    reference = _rng.noise("gumbel", (1,), 300, _rng.Seed(per_row=torch.tensor([seed])),
                           row_keys=torch.tensor([key]), stream=3)[0]
    fill = lib.gk_fill_gumbel_f32
    fill.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int64,
                     ctypes.c_int64, ctypes.c_void_p]
    for col0, n in [(0, 300), (1, 2), (3, 70), (5, 0), (17, 131), (64, 64), (299, 1)]:
        out = torch.full((n,), math.nan)
        fill(seed, key, 3, col0, n, out.data_ptr())
        assert torch.equal(out, reference[col0:col0 + n]), (col0, n)


@pytest.mark.parametrize("rows,cols", [(9, 2000), (4000, 6)])
def test_same_noise_for_any_thread_count_and_batch_composition(rows, cols):
    # 6 columns: rows run a vector's width at a time, one per lane, and 4000 of
    # them make several scheduling chunks, so that both threads take some
    assert rows * cols >= ops.PARALLEL_MIN_ELEMENTS  # else one thread runs both calls
    x = fresh_logits(rows, cols)
    seeds = torch.randint(0, 2**62, (rows,))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = F.gumbel_softmax(x, 0.5, seed=seeds)
        torch.set_num_threads(2)
        two = F.gumbel_softmax(x, 0.5, seed=seeds)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    order = torch.randperm(rows)
    shuffled = F.gumbel_softmax(x[order], 0.5, seed=seeds[order])
    assert torch.equal(shuffled, one[order])
    alone = F.gumbel_softmax(x[4:5], 0.5, seed=seeds[4:5])
    assert torch.equal(alone, one[4:5])
    index = F.gumbel_max(x, seed=seeds)
    assert torch.equal(F.gumbel_max(x[order], seed=seeds[order]), index[order])


def test_vector_exp_accuracy(isa):
    """Within 2 float32 ulp of exp in float64 over the whole range the kernels
    use (down to the subnormals and 0), exp(-inf) = 0 exactly, no NaN."""
    x = torch.cat([torch.linspace(-110, 0, 200_001), -torch.rand(10_000) * 110,
                   torch.tensor([-math.inf, -104.0, -103.9, -87.4, -0.0])])
    out = torch.full_like(x, math.nan)
    _lib.library().gk_exp_f32(x.data_ptr(), out.data_ptr(), x.numel())
    exact = torch.exp(x.double())
    ulp = torch.nextafter(exact.float().abs(), torch.tensor(math.inf)).double() \
        - exact.float().abs().double()
    ulp = torch.clamp(ulp, min=2.0**-149)
    assert not out.isnan().any()
    assert ((out.double() - exact).abs() / ulp).max() <= 2.0
    assert out[x == -math.inf].eq(0).all() and out[x == 0].eq(1).all()


# ------------------------------------------------------- Gumbel-Softmax


def _layout(x: torch.Tensor, layout: str, dim: int) -> torch.Tensor:
    if layout == "transposed":
        return x.transpose(0, -1).contiguous().transpose(0, -1)
    if layout == "strided":
        return torch.cat([x, x], dim=-1)[..., ::2]
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("dim,layout,per_row_tau", [
    (-1, "contiguous", False), (-1, "strided", True), (0, "contiguous", True),
    (1, "transposed", False)])
@pytest.mark.parametrize("cols", [37, 5])
def test_gumbel_softmax_matches_reference(isa, dtype, hard, dim, layout, per_row_tau, cols):
    # 5 columns: short rows, a vector's width of them at a time, one per lane
    x = _layout(fresh_logits(6, 5, cols, dtype=dtype), layout, dim).movedim(-1, dim)
    x.requires_grad_(True)
    shape = list(x.shape)
    shape[dim] = 1
    tau = (torch.rand(shape, dtype=torch.float64) + 0.2).to(dtype).requires_grad_(True) \
        if per_row_tau else 0.7
    seed = fresh_seed()
    y = F.gumbel_softmax(x, tau, hard=hard, dim=dim, seed=seed)
    x_ref = x.detach().clone().requires_grad_(True)
    tau_ref = tau.detach().clone().requires_grad_(True) if per_row_tau else tau
    y_ref = F._gumbel_softmax_reference(x_ref, tau_ref, hard, dim, seed, None)
    assert y.dtype == dtype and y.shape == x.shape and not y.isnan().any()
    if hard:
        assert torch.equal(y, y_ref)
    else:
        torch.testing.assert_close(y, y_ref, **FLOAT_TOL[dtype])
    assert (y[x == -math.inf] == 0).all()
    weight = torch.randn(y.shape, dtype=torch.float64).to(dtype)
    (y * weight).sum().backward()
    (y_ref * weight).sum().backward()
    grad_tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else FLOAT_TOL[dtype]
    torch.testing.assert_close(x.grad, x_ref.grad, **grad_tol)
    assert (x.grad[x == -math.inf] == 0).all()
    if per_row_tau:
        # sum_i dy_i * z_i / tau^2 cancels (the terms sum to ~0): absolute tolerance
        torch.testing.assert_close(tau.grad, tau_ref.grad, **TAU_GRAD_TOL[dtype])


def _ulps_from_float64(y: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """|y - exact| in float32 ulps of exact, over the entries above 1e-30."""
    rounded = exact.float()
    ulp = torch.nextafter(rounded, torch.tensor(math.inf)).double() - rounded.double()
    kept = exact > 1e-30
    return ((y.double() - exact).abs() / ulp)[kept]


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0, 3.0])
def test_soft_sample_as_accurate_as_reference(isa, tau):
    """Against softmax((x + G) / tau) in float64 (G from the same words, in
    float64), the fused soft sample errs about as much as the float32 PyTorch
    reference does (both round z = x + G to float32; 1/tau magnifies it)."""
    x = fresh_logits(32, 2000, dtype=torch.float64).float()
    seed = fresh_seed()
    g64 = _rng.noise("gumbel", (32,), 2000, _rng.resolve_seed(seed, None), torch.float64)
    exact = torch.softmax((x.double() + g64) / tau, -1)
    fused = _ulps_from_float64(F.gumbel_softmax(x, tau, seed=seed), exact)
    reference = _ulps_from_float64(F._gumbel_softmax_reference(x, tau, False, -1, seed, None),
                                   exact)
    assert fused.mean() <= 1.6 * reference.mean() + 0.5
    assert fused.max() <= 2 * reference.max() + 8


@pytest.mark.parametrize("tau", [0.5, 1.0])
@pytest.mark.parametrize("tied", [5, 100])
def test_hard_sample_exact_on_near_ties(isa, tied, tau):
    """Columns whose x + G differ by a few ulps: the float32-accurate soft pass
    cannot order them, the exact noise decides (among listed candidates, or,
    past 64 of them, over the whole row), as in the reference."""
    rows, cols = 64, 3000
    seed = fresh_seed()
    g = _rng.noise("gumbel", (rows,), cols, _rng.resolve_seed(seed, None), torch.float32)
    x = torch.full((rows, cols), -20.0)
    columns = torch.stack([torch.randperm(cols)[:tied] for _ in range(rows)])
    near = 5.0 - g.gather(1, columns) + (torch.randint(-3, 4, columns.shape) * 2.0**-21)
    x.scatter_(1, columns, near)
    leaf = x.clone().requires_grad_(True)
    expected = F._gumbel_softmax_reference(x, tau, True, -1, seed, None)
    assert torch.equal(F.gumbel_softmax(leaf, tau, hard=True, seed=seed).detach(), expected)
    assert torch.equal(F.gumbel_softmax(x, tau, hard=True, seed=seed), expected)
    assert torch.equal(F.gumbel_max(x, seed=seed), expected.argmax(-1))


@pytest.mark.parametrize("tau", [0.3, 1.0])
@pytest.mark.parametrize("cols", [3000, 40_001])
def test_hard_sample_with_autograd_matches_reference(isa, cols, tau):
    x = fresh_logits(6, cols).requires_grad_(True)
    seed = fresh_seed()
    y = F.gumbel_softmax(x, tau, hard=True, seed=seed)
    assert torch.equal(y, F._gumbel_softmax_reference(x.detach(), tau, True, -1, seed, None))


@pytest.mark.parametrize("tau", [0.6, 1.0])
def test_short_rows_match_reference(isa, tau):
    """Rows of 1 to 129 columns: up to 16 columns (32 for samples with no
    relaxed sample) they run a vector's width at a time, one per lane, the last
    group of rows partly filled (300 rows); longer rows' last columns take a
    block of 2, 4 or 8 vectors (whichever holds them), every width of it partly
    filled."""
    seed = fresh_seed()
    for cols in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 63, 64, 65, 100, 129]:
        x = fresh_logits(300, cols)
        reference = F._gumbel_softmax_reference(x, tau, False, -1, seed, None)
        torch.testing.assert_close(F.gumbel_softmax(x, tau, seed=seed), reference,
                                   **FLOAT_TOL[torch.float32])
        hard = F._gumbel_softmax_reference(x, tau, True, -1, seed, None)
        leaf = x.clone().requires_grad_(True)
        assert torch.equal(F.gumbel_softmax(leaf, tau, hard=True, seed=seed).detach(), hard), cols
        assert torch.equal(F.gumbel_softmax(x, tau, hard=True, seed=seed), hard), cols
        assert torch.equal(F.gumbel_max(x, seed=seed), hard.argmax(-1)), cols


def test_short_rows_extreme_logits(isa):
    """Short rows (one per lane): large logits at tau = 1/2, where exp(z / tau -
    m) overflows unless m is the max of z / tau (not of z), and huge equal
    logits, where x + G rounds to ties and the first index wins."""
    seed = fresh_seed()
    for cols in [3, 8, 13, 32]:
        x = fresh_logits(100, cols) * 40
        torch.testing.assert_close(F.gumbel_softmax(x, 0.5, seed=seed),
                                   F._gumbel_softmax_reference(x, 0.5, False, -1, seed, None),
                                   **FLOAT_TOL[torch.float32])
        ties = torch.full((100, cols), 1e8)
        ties[:50, 0] = -math.inf
        assert torch.equal(F.gumbel_max(ties, seed=seed),
                           F._gumbel_max_reference(ties, -1, seed, None))
        assert torch.equal(F.gumbel_softmax(ties.requires_grad_(True), 0.5, hard=True,
                                            seed=seed).detach(),
                           F._gumbel_softmax_reference(ties.detach(), 0.5, True, -1, seed, None))


@pytest.mark.parametrize("scale,offset", [(3.0, 0.0), (3.0, 55.0), (40.0, 0.0), (3.0, 1e3),
                                          (3.0, -1e5)])
def test_unit_temperature_matches_reference(isa, scale, offset):
    """tau = 1 runs the exponential race exp(x - max x) / E (one logarithm) when
    the finite logits span at most 80 and their max is within [-64, 64], the
    general pass otherwise (scale 40, offsets 1e3 and -1e5, where the
    reference's rounding of x + G to float32 dominates): both agree with the
    reference, and hard samples exactly."""
    x = fresh_logits(16, 1500) * scale + offset
    seed = fresh_seed()
    reference = F._gumbel_softmax_reference(x, 1.0, False, -1, seed, None)
    torch.testing.assert_close(F.gumbel_softmax(x, 1.0, seed=seed), reference,
                               **FLOAT_TOL[torch.float32])
    leaf = x.clone().requires_grad_(True)
    assert torch.equal(F.gumbel_softmax(leaf, 1.0, hard=True, seed=seed).detach(),
                       F._gumbel_softmax_reference(x, 1.0, True, -1, seed, None))


def test_gumbel_max_matches_reference(isa):
    x = fresh_logits(33, 1000)
    seed = fresh_seed()
    index = F.gumbel_max(x.t(), dim=0, seed=seed)
    assert torch.equal(index, F._gumbel_max_reference(x.t(), 0, seed, None))
    assert torch.isfinite(x.gather(1, index[:, None])).all()
    assert torch.equal(F.gumbel_topk(x, 3, seed=seed)[:, 0], index)
    # wide spread, and huge logits where x + G rounds to ties: first index wins
    wide = torch.cat([x * 30, torch.full((5, 1000), 1e8), torch.full((5, 1000), -1e8)])
    wide[-7:, :40] = -math.inf
    assert torch.equal(F.gumbel_max(wide, seed=seed), F._gumbel_max_reference(wide, -1, seed, None))
    hard = F.gumbel_softmax(wide, 0.5, hard=True, seed=seed)
    assert torch.equal(hard, F._gumbel_softmax_reference(wide, 0.5, True, -1, seed, None))
    with_grad = F.gumbel_softmax(wide.requires_grad_(True), 0.5, hard=True, seed=seed)
    assert torch.equal(with_grad.detach(), hard)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 10.0])
def test_gumbel_max_long_rows_match_reference(isa, scale):
    # long rows: the kernel skips most logarithms by bounding G before computing it
    x = fresh_logits(3, 40_001) * scale
    seed = fresh_seed()
    assert torch.equal(F.gumbel_max(x, seed=seed), F._gumbel_max_reference(x, -1, seed, None))


def test_gumbel_max_two_candidates_in_different_blocks(isa):
    # each row: one finite logit in the first vector block and one in a later
    # block, so the second is decided against the running max from the first,
    # often on a noise value below -log log 2 (u < 1/2)
    x = torch.full((4000, 70), -math.inf)
    x[:, 0] = torch.randn(4000) * 0.5
    x[:, 67] = torch.randn(4000) * 0.5
    seed = fresh_seed()
    assert torch.equal(F.gumbel_max(x, seed=seed), F._gumbel_max_reference(x, -1, seed, None))


@pytest.mark.parametrize("cols", [6, 40])
def test_gradcheck_gumbel_softmax_float64(cols):
    # 6 columns: the backward's plain loops for short rows; 40: the row primitives
    x = fresh_logits(3, cols, dtype=torch.float64, mask=0.0).requires_grad_(True)
    tau = (torch.rand(3, 1, dtype=torch.float64) + 0.5).requires_grad_(True)
    seed = fresh_seed()
    assert torch.autograd.gradcheck(lambda a, t: F.gumbel_softmax(a, t, seed=seed), (x, tau))
    soft = torch.autograd.grad((F.gumbel_softmax(x, tau, seed=seed) * x.detach()).sum(), x)[0]
    hard = torch.autograd.grad((F.gumbel_softmax(x, tau, hard=True, seed=seed)
                                * x.detach()).sum(), x)[0]
    assert torch.equal(soft, hard)


# --------------------------------------------------- Binary/Hard Concrete


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("which", ["soft", "hard", "hard_concrete"])
@pytest.mark.parametrize("rows,cols", [(40, 7), (3, 2500)])
def test_concrete_matches_reference(isa, dtype, which, rows, cols):
    # [40, 7]: transposed (strided) logits; [3, 2500]: rows longer than a
    # kernel piece (1024 columns), handed out piece by piece
    x = (torch.randn(cols, rows, dtype=torch.float64) * 3).to(dtype)
    x[0, :3] = torch.tensor([-math.inf, math.inf, 0.0], dtype=dtype)
    x = x.t().requires_grad_(True)
    tau = (torch.rand(rows, 1, dtype=torch.float64) + 0.3).to(dtype).requires_grad_(True)
    seed = fresh_seed()
    x_ref = x.detach().clone().requires_grad_(True)
    tau_ref = tau.detach().clone().requires_grad_(True)
    if which == "hard_concrete":
        y = F.hard_concrete(x, tau, seed=seed)
        y_ref = F._hard_concrete_reference(x_ref, tau_ref, -0.1, 1.1, seed, None)
    else:
        y = F.binary_concrete(x, tau, hard=which == "hard", seed=seed)
        y_ref = F._binary_concrete_reference(x_ref, tau_ref, which == "hard", seed, None)
    assert y.dtype == dtype and not y.isnan().any()
    torch.testing.assert_close(y, y_ref, **FLOAT_TOL[dtype])
    weight = torch.randn(y.shape, dtype=torch.float64).to(dtype)
    (y * weight).sum().backward()
    (y_ref * weight).sum().backward()
    tol = dict(rtol=1e-3, atol=1e-5) if dtype == torch.float32 else FLOAT_TOL[dtype]
    torch.testing.assert_close(x.grad, x_ref.grad, **tol)
    torch.testing.assert_close(tau.grad, tau_ref.grad, **TAU_GRAD_TOL[dtype])


def test_concrete_one_long_row_any_thread_count():
    """A 1-D gate vector is one row: its pieces spread over the threads, with
    the same values for any thread count (a per-element temperature too), and
    the first NaN reported."""
    x = torch.randn(20000) * 2
    tau = torch.rand(20000) + 0.3
    assert x.numel() >= ops.PARALLEL_MIN_ELEMENTS  # else one thread runs every call
    seed = fresh_seed()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = F.hard_concrete(x, tau, seed=seed), F.binary_concrete(x, 0.5, hard=True, seed=seed)
        torch.set_num_threads(2)
        two = F.hard_concrete(x, tau, seed=seed), F.binary_concrete(x, 0.5, hard=True, seed=seed)
        torch.testing.assert_close(two[0], F._hard_concrete_reference(x, tau, -0.1, 1.1, seed,
                                                                      None),
                                   **FLOAT_TOL[torch.float32])
        leaves = x.clone().requires_grad_(True), tau.clone().requires_grad_(True)
        refs = x.clone().requires_grad_(True), tau.clone().requires_grad_(True)
        weight = torch.randn(20000)
        (F.hard_concrete(*leaves, seed=seed) * weight).sum().backward()
        (F._hard_concrete_reference(*refs, -0.1, 1.1, seed, None) * weight).sum().backward()
        for leaf, ref in zip(leaves, refs):
            torch.testing.assert_close(leaf.grad, ref.grad, rtol=1e-3, atol=1e-5)
        x[[13100, 19500, 1030]] = math.nan
        with pytest.raises(ValueError, match=r"at index \(1030,\)"):
            F.hard_concrete(x, seed=seed)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, two))


def test_gradcheck_concrete_float64():
    x = (torch.randn(4, 5, dtype=torch.float64)).requires_grad_(True)
    tau = (torch.rand(4, 1, dtype=torch.float64) + 0.5).requires_grad_(True)
    seed = fresh_seed()
    assert torch.autograd.gradcheck(lambda a, t: F.binary_concrete(a, t, seed=seed), (x, tau))
    # Hard Concrete: away from the clamp edges the gate is smooth.
    z = F.hard_concrete(x, tau, seed=seed).detach()
    inside = (z > 1e-3) & (z < 1 - 1e-3)
    def gate(a, t):
        return F.hard_concrete(a, t, seed=seed)[inside]
    assert torch.autograd.gradcheck(gate, (x, tau))


# ------------------------------------------------------------- double backward


def _ops_and_references():
    """(name, fused op, reference op) taking (logits, tau, seed)."""
    return [
        ("soft", lambda a, t, s: F.gumbel_softmax(a, t, seed=s),
         lambda a, t, s: F._gumbel_softmax_reference(a, t, False, -1, s, None)),
        ("hard", lambda a, t, s: F.gumbel_softmax(a, t, hard=True, seed=s),
         lambda a, t, s: F._gumbel_softmax_reference(a, t, True, -1, s, None)),
        ("dim0", lambda a, t, s: F.gumbel_softmax(a.t(), t.t(), dim=0, seed=s).t(),
         lambda a, t, s: F._gumbel_softmax_reference(a.t(), t.t(), False, 0, s, None).t()),
        ("binary", lambda a, t, s: F.binary_concrete(a, t, seed=s),
         lambda a, t, s: F._binary_concrete_reference(a, t, False, s, None)),
        ("binary_hard", lambda a, t, s: F.binary_concrete(a, t, hard=True, seed=s),
         lambda a, t, s: F._binary_concrete_reference(a, t, True, s, None)),
        ("hard_concrete", lambda a, t, s: F.hard_concrete(a, t, seed=s),
         lambda a, t, s: F._hard_concrete_reference(a, t, -0.1, 1.1, s, None)),
    ]


@pytest.mark.parametrize("cols", [6, 20])
@pytest.mark.parametrize("case", _ops_and_references(), ids=lambda c: c[0])
def test_gradgradcheck_fused_float64(case, cols):
    """Second derivatives of the fused ops in logits and a per-row temperature (6
    columns: the short-row kernels; 20: the row primitives)."""
    name, fused, _ = case
    x = fresh_logits(2, cols, dtype=torch.float64, mask=0.0).requires_grad_(True)
    tau = (torch.rand(2, 1, dtype=torch.float64) + 0.5).requires_grad_(True)
    seed = fresh_seed()
    if name == "hard_concrete":  # smooth away from the clamp edges only
        z = fused(x, tau, seed).detach()
        inside = (z > 1e-3) & (z < 1 - 1e-3)
        assert torch.autograd.gradgradcheck(lambda a, t: fused(a, t, seed)[inside], (x, tau))
    else:
        assert torch.autograd.gradgradcheck(lambda a, t: fused(a, t, seed), (x, tau))
    if name in ("soft", "hard"):  # one temperature for every row
        assert torch.autograd.gradgradcheck(lambda a: fused(a, 0.7, seed), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", _ops_and_references(), ids=lambda c: c[0])
def test_gradient_penalty_matches_reference(case, dtype):
    """grad of a gradient penalty (autograd.grad twice) agrees with the reference path."""
    _, fused, reference = case
    x0 = fresh_logits(5, 20, dtype=dtype, mask=0.0)
    tau0 = (torch.rand(5, 1, dtype=torch.float64) + 0.5).to(dtype)
    weight = torch.randn(5, 20, dtype=dtype)
    seed = fresh_seed()
    results = []
    for op in (fused, reference):
        x, tau = x0.clone().requires_grad_(True), tau0.clone().requires_grad_(True)
        gx, gtau = torch.autograd.grad((op(x, tau, seed) * weight).sum(), (x, tau),
                                       create_graph=True)
        penalty = (gx ** 2).sum() + (gtau ** 2).sum()
        results.append(torch.autograd.grad(penalty, (x, tau)))
    tol = dict(rtol=1e-3, atol=1e-5) if dtype == torch.float32 else FLOAT_TOL[dtype]
    for got, expected in zip(*results):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, expected, **tol)


# ------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", ["nan", "inf", "empty"])
def test_kernel_errors_match_reference(isa, bad):
    x = torch.randn(3, 4, 5)
    if bad == "nan":
        x[2, 1, 3] = math.nan
        x[2, 3, 0] = math.nan
    elif bad == "inf":
        x[1, 2, 0] = math.inf
    else:
        x[0, 3, :] = -math.inf
        x[2, :, 1] = -math.inf
    for dim in (-1, 1):
        with pytest.raises(ValueError) as fused:
            F.gumbel_softmax(x, dim=dim, seed=0)
        with pytest.raises(ValueError) as reference:
            F._gumbel_softmax_reference(x, 1.0, False, dim, 0, None)
        assert str(fused.value) == str(reference.value)
        with pytest.raises(ValueError) as fused_max:
            F.gumbel_max(x, dim=dim, seed=0)
        assert str(fused_max.value) == str(reference.value)


@pytest.mark.parametrize("hard", [False, True])
def test_rows_without_columns_are_reported_empty(isa, hard):
    # the functional API never passes them (no elements), the ops report them
    x = torch.empty(3, 0)
    seeds, keys = torch.zeros(1, dtype=torch.int64), torch.empty(0, dtype=torch.int64)
    with pytest.raises(ValueError, match="-inf"):
        torch.ops.gumbelkit.gumbel_max(x, seeds, keys, [3], -1)
    with pytest.raises(ValueError, match="-inf"):
        torch.ops.gumbelkit.gumbel_softmax(x, torch.ones(1), seeds, keys, hard, False, [3], -1)


def test_concrete_nan_error_matches_reference():
    x = torch.randn(3, 4, 5)
    x[1, 2, 3] = math.nan
    with pytest.raises(ValueError) as fused:
        F.binary_concrete(x, seed=0)
    with pytest.raises(ValueError) as reference:
        F._binary_concrete_reference(x, 1.0, False, 0, None)
    assert str(fused.value) == str(reference.value) == "logits contain NaN at index (1, 2, 3)"


@pytest.mark.skipif(_lib.library() is None, reason="fused kernels not built")
def test_ops_take_seeds_and_keys_of_any_layout():
    """Strided or expanded seeds and keys give what contiguous ones give (a temporary
    contiguous copy must stay alive through the C call)."""
    seeds, keys = torch.arange(10, 15), torch.zeros(5, dtype=torch.int64)
    strided_seeds = torch.arange(10, 20)[::2] - torch.arange(5)
    expanded_keys = torch.zeros(1, dtype=torch.int64).expand(5)
    for kind in ("gumbel", "exponential", "logistic"):
        expected = torch.ops.gumbelkit.noise(seeds, keys, 9, 0, kind, torch.float32)
        got = torch.ops.gumbelkit.noise(strided_seeds, expanded_keys, 9, 0, kind, torch.float32)
        assert torch.equal(got, expected)
    x = torch.randn(5, 40)
    expected = torch.ops.gumbelkit.gumbel_max(x, seeds, keys, [5], 1)
    assert torch.equal(torch.ops.gumbelkit.gumbel_max(x, strided_seeds, expanded_keys, [5], 1),
                       expected)
