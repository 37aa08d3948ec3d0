"""torch.func transforms through the public ops, on the fused and the PyTorch path.

``grad``/``jacrev`` of a function of a seeded sample equal what ``backward``
gives for the same seed, and ``vmap`` over rows equals the batched call where
the noise allows (a per-row seed tensor keys each row by its seed alone).
"""

import pytest
import torch
from torch.func import grad, jacrev, vmap

import gumbelkit
from gumbelkit.kernels import _lib
from gumbelkit.sparse import sparse_to_dense

WEIGHTS = torch.linspace(-1.0, 2.0, 7, dtype=torch.float64)

OPS = {
    "gumbel_softmax": lambda x: gumbelkit.gumbel_softmax(x, 0.7, seed=3),
    "gumbel_softmax_hard": lambda x: gumbelkit.gumbel_softmax(x, 0.7, hard=True, seed=3),
    "binary_concrete": lambda x: gumbelkit.binary_concrete(x, 0.6, seed=3),
    "binary_concrete_hard": lambda x: gumbelkit.binary_concrete(x, 0.6, hard=True, seed=3),
    "hard_concrete": lambda x: gumbelkit.hard_concrete(x, seed=3),
    "straight_through": lambda x: gumbelkit.straight_through(torch.softmax(x, -1)),
    "sparse_gumbel_softmax": lambda x: sparse_to_dense(
        *gumbelkit.sparse_gumbel_softmax(x, 3, 0.7, seed=3), x.shape[-1]),
    "st_estimator": lambda x: gumbelkit.estimators.st(x, 0.8, seed=3),
    "reinmax": lambda x: gumbelkit.estimators.reinmax(x, 1.5, seed=3),
}


@pytest.fixture(params=["fused", "pytorch"])
def path(request, monkeypatch):
    if request.param == "pytorch":
        monkeypatch.setattr(_lib, "_LIB", None)
    elif _lib.library() is None:
        pytest.skip("fused kernels not built")
    return request.param


def _objective(op):
    return lambda x: (op(x) * WEIGHTS.to(x.dtype)).sum()


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grad_and_jacrev_equal_backward(path, name, dtype):
    x = torch.randn(4, 7, dtype=dtype, generator=torch.Generator().manual_seed(1))
    op = OPS[name]
    leaf = x.clone().requires_grad_()
    _objective(op)(leaf).backward()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=0)
    torch.testing.assert_close(grad(_objective(op))(x), leaf.grad, **tol)
    jac = jacrev(op)(x)
    assert jac.shape == x.shape + x.shape
    by_rows = torch.einsum("abcd,b->cd", jac, WEIGHTS.to(dtype))
    torch.testing.assert_close(by_rows, leaf.grad, **tol)


def test_double_grad_of_straight_through(path):
    x = torch.randn(3, 7, dtype=torch.float64)
    hessian = torch.func.hessian(lambda x: (gumbelkit.straight_through(torch.softmax(x, -1))
                                            * torch.softmax(x, -1)).sum())(x)
    assert torch.isfinite(hessian).all()


@pytest.mark.parametrize("op", [
    lambda x, s: gumbelkit.gumbel_softmax(x, 0.5, seed=s),
    lambda x, s: gumbelkit.gumbel_max(x, seed=s),
])
def test_vmap_over_rows_equals_the_batched_call(op):
    x = torch.randn(5, 7)
    seeds = torch.arange(10, 15)
    batched = op(x, seeds)
    mapped = vmap(op, in_dims=(0, 0))(x, seeds)
    torch.testing.assert_close(mapped.reshape(batched.shape), batched)


COMPILED = {
    **OPS,
    "gumbel_max": lambda x: gumbelkit.gumbel_max(x, seed=3),
    "gumbel_topk": lambda x: gumbelkit.gumbel_topk(x, 3, seed=3),
    "gumbel_noise": lambda x: gumbelkit.gumbel_noise(x.shape, seed=3) + x,
    "estimate_rloo": lambda x: gumbelkit.estimate(lambda z: (z * WEIGHTS.to(z.dtype)).sum(-1),
                                                  x, "rloo", n_samples=4, seed=3),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", COMPILED)
def test_fullgraph_compile_equals_eager(path, name):
    """No graph break on either path (content checks become asserts in the graph)."""
    torch._dynamo.reset()
    x = torch.randn(4, 7, generator=torch.Generator().manual_seed(2))
    compiled = torch.compile(COMPILED[name], fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), COMPILED[name](x), rtol=0, atol=0)


def test_compiled_content_check_raises_in_the_graph(path):
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: gumbelkit.gumbel_softmax(x, 0.5, seed=0),
                             fullgraph=True, backend="aot_eager")
    x = torch.randn(3, 5)
    compiled(x)
    x[1, 2] = float("nan")
    with pytest.raises((RuntimeError, ValueError), match="NaN"):
        compiled(x)


def test_vmap_names_the_problem_without_the_row():
    x = torch.randn(3, 5)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        vmap(lambda r, s: gumbelkit.gumbel_softmax(r, 0.5, seed=s))(x, torch.arange(3))


class _Sampling(torch.nn.Module):
    def forward(self, x):
        return (gumbelkit.gumbel_softmax(x, 0.7, hard=True, seed=1),
                gumbelkit.gumbel_max(x, seed=2),
                gumbelkit.binary_concrete(x, 0.5, seed=3),
                gumbelkit.sparse_gumbel_softmax(x, 3, 0.5, seed=4)[1],
                gumbelkit.sampling.sample(x, temperature=0.8, top_k=3, seed=torch.arange(4),
                                          on_invalid="flag", validate=False).tokens)


@pytest.mark.slow
def test_export_equals_eager(path):
    x = torch.randn(4, 9)
    exported = torch.export.export(_Sampling(), (x,)).module()
    other = torch.randn(4, 9)
    for got, expected in zip(exported(other), _Sampling()(other)):
        assert torch.equal(got, expected)


def test_jit_trace_of_sparse_gumbel_softmax_gives_eager_values(path):
    def draw(x):
        return gumbelkit.sparse_gumbel_softmax(x, 3, 0.5, seed=4)[1]

    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(draw, (torch.randn(4, 9),), check_trace=False)
    other = torch.randn(4, 9)
    assert torch.equal(traced(other), draw(other))


@pytest.mark.parametrize("seed_kind", ["per-row", "int"])
@pytest.mark.parametrize("name, op", [
    ("gumbel_noise", lambda x, s: gumbelkit.gumbel_noise(x.shape, seed=s) + x),
    ("gumbel_max", lambda x, s: gumbelkit.gumbel_max(x, seed=s)),
    ("gumbel_topk", lambda x, s: gumbelkit.gumbel_topk(x, 2, seed=s)),
    ("gumbel_softmax", lambda x, s: gumbelkit.gumbel_softmax(x, 0.5, seed=s)),
])
def test_vmap_equals_a_loop(path, name, op, seed_kind):
    """vmap (batched rules for noise and gumbel_max, the loop fallback otherwise) gives each
    batch element what it gets alone, whichever axis is mapped."""
    x = torch.randn(3, 4, 7)
    seeds = torch.arange(20, 24) if seed_kind == "per-row" else None
    in_dims = (1, 0) if seeds is not None else (1, None)
    fn = op if seeds is not None else (lambda row, s: op(row, 5))
    mapped = vmap(fn, in_dims=in_dims)(x, seeds)
    loop = torch.stack([fn(x[:, i], None if seeds is None else seeds[i]) for i in range(4)])
    torch.testing.assert_close(mapped, loop, rtol=0, atol=0)


@pytest.mark.parametrize("op", [
    lambda x, t: gumbelkit.gumbel_softmax(x, t, seed=0),
    lambda x, t: gumbelkit.binary_concrete(x, t, seed=0),
])
def test_grad_in_tau_alone_jacfwd_and_vmap_of_grad(path, op):
    """Differentiating only in tau, forward mode, and vmap over grad all work."""
    x = torch.randn(3, 5, dtype=torch.float64)
    tau = torch.full((3, 1), 0.7, dtype=torch.float64)
    leaf = tau.clone().requires_grad_()
    op(x, leaf)[:, 0].sum().backward()
    torch.testing.assert_close(grad(lambda t: op(x, t)[:, 0].sum())(tau), leaf.grad)
    forward = torch.func.jacfwd(lambda r: op(r, tau))(x)
    reverse = jacrev(lambda r: op(r, tau))(x)
    torch.testing.assert_close(forward, reverse)
    per_row = vmap(grad(lambda r, t: op(r[None], t[None])[0, 0]))(x, tau)
    one = grad(lambda r, t: op(r[None], t[None])[0, 0])
    rows = torch.stack([one(x[i], tau[i]) for i in range(3)])
    torch.testing.assert_close(per_row, rows)
