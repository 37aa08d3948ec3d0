"""GumbelRouter and MoE: exactly k experts per token drawn with the right
probabilities, the Switch balance loss, gradients, sparse dispatch."""

from __future__ import annotations

import itertools

import pytest
import torch

from gumbelkit.estimators import SAMPLE_ESTIMATORS
from gumbelkit.nn import GumbelRouter, MoE
from gumbelkit.nn.router import switch_balance_loss
from stats import assert_chisquare

ESTIMATOR_OPTIONS = {"gumbel_rao": {"k": 4}}


def make_router(estimator="st_gumbel", k=1, n_experts=5, d_model=6, **kwargs):
    torch.manual_seed(0)
    return GumbelRouter(d_model, n_experts, k, estimator=estimator,
                        estimator_options=ESTIMATOR_OPTIONS.get(estimator), **kwargs)


@pytest.mark.parametrize("estimator", sorted(SAMPLE_ESTIMATORS))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_exactly_k_nonzeros_and_gradients_reach_the_router(estimator, k):
    router = make_router(estimator, k)
    x = torch.randn(40, 6)
    out = router(x, seed=1)
    assert out.weights.shape == (40, 5) and out.indices.shape == (40, k)
    assert torch.equal((out.weights != 0).sum(-1), torch.full((40,), k))
    chosen = torch.zeros(40, 5, dtype=torch.bool).scatter_(-1, out.indices, True)
    assert torch.equal(chosen, out.weights != 0)
    if estimator != "gumbel_softmax":  # one-hot estimators: renormalised top-k probabilities
        expected = torch.where(chosen, out.probs, 0) / (out.probs * chosen).sum(-1, keepdim=True)
        torch.testing.assert_close(out.weights, expected)
    (out.weights * torch.randn(40, 5)).sum().backward()
    grad = router.gate.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_k1_weights_are_the_estimator_sample_value_and_gradient():
    router = make_router("st_gumbel", 1)
    x = torch.randn(30, 6)
    probe = torch.randn(30, 5)
    out = router(x, seed=5)
    (g_router,) = torch.autograd.grad((out.weights * probe).sum(), router.gate.weight)
    y = SAMPLE_ESTIMATORS["st_gumbel"](router.gate(x), 1.0, seed=5)
    (g_direct,) = torch.autograd.grad((y * probe).sum(), router.gate.weight)
    assert torch.equal(out.weights, y)
    torch.testing.assert_close(g_router, g_direct)


def test_selection_is_gumbel_top_k_and_matches_plackett_luce():
    """k = 2 draws: unordered pairs with P({i, j}) = p_i p_j / (1 - p_i) + p_j p_i / (1 - p_j)."""
    router = make_router("st_gumbel", 2, n_experts=4, d_model=1)
    with torch.no_grad():
        router.gate.weight.copy_(torch.tensor([[1.0], [0.0], [-0.5], [0.7]]))
    n = 12_000
    out = router(torch.ones(n, 1), seed=123)
    p = torch.softmax(router.gate.weight.detach().double().squeeze(-1), -1)
    pairs = list(itertools.combinations(range(4), 2))
    expected = [float(p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j])) for i, j in pairs]
    chosen = out.indices.sort(-1).values
    counts = [int(((chosen[:, 0] == i) & (chosen[:, 1] == j)).sum()) for i, j in pairs]
    assert_chisquare(counts, expected)
    first = torch.bincount(out.indices[:, 0], minlength=4)
    assert_chisquare(first.numpy(), p.numpy())


def test_switch_balance_loss_on_a_hand_computed_case():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    # f = (1/2, 1/2, 0), P = (0.3, 0.45, 0.25): 3 (0.15 + 0.225) = 1.125
    assert switch_balance_loss(probs, torch.tensor([[0], [1]])).item() == pytest.approx(1.125)
    # k = 2: f = (1/4, 1/2, 1/4): 3 (0.075 + 0.225 + 0.0625) = 1.0875
    loss = switch_balance_loss(probs, torch.tensor([[0, 1], [1, 2]]))
    assert loss.item() == pytest.approx(1.0875)
    uniform = torch.full((4, 4), 0.25)
    assert switch_balance_loss(uniform, torch.arange(4)[:, None]).item() == pytest.approx(1.0)


def test_router_balance_loss_is_the_formula_and_differentiable():
    router = make_router("st", 2)
    out = router(torch.randn(3, 7, 6), seed=0)
    assert out.indices.shape == (3, 7, 2)
    assert torch.equal(out.balance_loss, switch_balance_loss(out.probs, out.indices))
    out.balance_loss.backward()
    assert router.gate.weight.grad.abs().sum() > 0
    none = make_router("st", 2, balance_loss="none")(torch.randn(3, 6), seed=0)
    assert none.balance_loss.item() == 0


def test_eval_routes_deterministically_to_the_top_k():
    router = make_router("reinmax", 2).eval()
    x = torch.randn(10, 6)
    out = router(x)
    logits = router.gate(x)
    assert torch.equal(out.indices, logits.topk(2, -1).indices)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(10))


def test_seed_reproduces_and_rows_differ():
    router = make_router("st_gumbel", 2)
    x = torch.zeros(200, 6)
    a, b = router(x, seed=3), router(x, seed=3)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.weights, b.weights)
    assert len({tuple(r) for r in a.indices.tolist()}) > 1


@pytest.mark.parametrize("kwargs,match", [
    ({"estimator": "gumbel"}, "valid names: gapped_st, gumbel_rao, gumbel_softmax, reinmax, st"),
    ({"k": 6}, r"k must lie in \[1, 5\]"),
    ({"k": 0}, r"k must lie in \[1, 5\]"),
    ({"tau": 0.0}, "tau must be > 0"),
    ({"estimator": "reinmax", "tau": 0.5}, "reinmax needs tau >= 1"),
    ({"balance_loss": "gshard"}, "balance_loss must be one of"),
])
def test_bad_router_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GumbelRouter(6, 5, **kwargs)


def test_bad_router_input():
    with pytest.raises(ValueError, match="d_model=6"):
        make_router()(torch.randn(4, 5))


def reference_moe(moe, x, out):
    """Token by token: sum over the chosen experts of weight * MLP_e(token)."""
    tokens = x.reshape(-1, moe.d_model)
    weights = out.router.weights.reshape(-1, moe.n_experts)
    indices = out.router.indices.reshape(tokens.shape[0], -1)
    rows = []
    for t in range(tokens.shape[0]):
        rows.append(sum(weights[t, e] * moe.expert(int(e), tokens[t:t + 1])[0]
                        for e in indices[t]))
    return torch.stack(rows).reshape(x.shape)


@pytest.mark.parametrize("k", [1, 2])
def test_moe_output_is_the_weighted_sum_of_the_chosen_experts(k):
    torch.manual_seed(0)
    moe = MoE(6, 10, 4, k=k).double()
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    out = moe(x, seed=2)
    assert out.output.shape == x.shape
    torch.testing.assert_close(out.output, reference_moe(moe, x, out))
    moe.eval()
    out = moe(x)
    torch.testing.assert_close(out.output, reference_moe(moe, x, out))


def test_moe_gradients_reach_experts_and_router_without_a_dense_dispatch_tensor():
    torch.manual_seed(1)
    tokens, n_experts, d_model = 64, 8, 6
    moe = MoE(d_model, 5, n_experts, k=2, activation="relu")
    x = torch.randn(tokens, d_model)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = moe(x, seed=0)
    assert max(sizes) < tokens * n_experts * d_model
    (out.output.square().sum() + 0.01 * out.balance_loss).backward()
    used = torch.unique(out.router.indices)
    for name in ("w1", "b1", "w2", "b2"):
        grad = getattr(moe, name).grad
        assert grad[used].abs().sum() > 0
    assert moe.router.gate.weight.grad.abs().sum() > 0


def test_moe_with_idle_experts_and_bad_arguments():
    moe = MoE(4, 3, 6, k=1)
    out = moe(torch.randn(2, 4), seed=0)  # at most 2 of 6 experts get a token
    assert torch.isfinite(out.output).all()
    with pytest.raises(ValueError, match="activation must be one of"):
        MoE(4, 3, 6, activation="tanh")
    with pytest.raises(ValueError, match="d_hidden must lie in"):
        MoE(4, 0, 6)
    with pytest.raises(ValueError, match=r"k must lie in \[1, 6\]"):
        MoE(4, 3, 6, k=7)
