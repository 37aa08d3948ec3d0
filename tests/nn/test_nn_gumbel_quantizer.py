"""GumbelQuantizer and codebook_usage: shapes, gradient flow, the KL term, usage."""

from __future__ import annotations

import math

import pytest
import torch

import gumbelkit
from gumbelkit.nn import GumbelQuantizer, codebook_usage


def _quantizer(**kw) -> GumbelQuantizer:
    torch.manual_seed(0)
    return GumbelQuantizer(6, 5, 3, **kw)


@pytest.mark.parametrize("shape,channel_dim,code_shape", [
    ((2, 6, 3, 4), 1, (2, 3, 3, 4)),   # [B, C, H, W]
    ((2, 7, 6), -1, (2, 7, 3)),        # [B, T, C]
    ((4, 6), 1, (4, 3)),               # [B, C]
])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_shapes_and_codes(shape, channel_dim, code_shape, hard, training):
    q = _quantizer(hard=hard, channel_dim=channel_dim).train(training)
    out = q(torch.randn(shape), seed=1)
    assert out.quantized.shape == code_shape
    index_shape = tuple(s for i, s in enumerate(shape) if i != channel_dim % len(shape))
    assert out.indices.shape == index_shape and out.indices.dtype == torch.int64
    assert out.logits.shape == shape[:1] + tuple(
        5 if i == channel_dim % len(shape) else s for i, s in enumerate(shape))[1:]
    if hard or not training:
        # exactly the chosen codebook row at every position
        rows = q.codebook.weight[out.indices].movedim(-1, channel_dim)
        assert torch.equal(out.quantized, rows)


def test_eval_is_argmax_of_logits_without_noise():
    q = _quantizer().eval()
    x = torch.randn(3, 6, 2, 2)
    a, b = q(x, seed=0), q(x, seed=1)
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.indices, a.logits.argmax(1))


def test_training_indices_follow_the_seed():
    q = _quantizer()
    x = torch.randn(8, 6, 3, 3)
    assert torch.equal(q(x, seed=3).quantized, q(x, seed=3).quantized)
    assert not torch.equal(q(x, seed=3).indices, q(x, seed=4).indices)
    torch.manual_seed(5)
    first = q(x).indices
    torch.manual_seed(5)
    assert torch.equal(first, q(x).indices)


def test_kl_to_uniform_matches_direct_computation():
    q = _quantizer(kl_weight=0.25)
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    q = q.double()
    out = q(x, seed=0)
    probs = torch.softmax(out.logits, 1)  # codes along the channel axis
    kl = (probs * (probs / (1 / 5)).log()).sum(1).mean()
    torch.testing.assert_close(out.kl_loss, 0.25 * kl, rtol=1e-12, atol=1e-15)
    assert _quantizer(kl_weight=0.0)(x.float(), seed=0).kl_loss == 0


def test_kl_is_zero_for_uniform_logits_and_log_k_for_one_hot():
    q = _quantizer(kl_weight=1.0, channel_dim=-1)
    with torch.no_grad():
        q.proj.weight.zero_()
        q.proj.bias.zero_()
    assert q(torch.randn(4, 6), seed=0).kl_loss.abs() < 1e-6
    with torch.no_grad():
        q.proj.bias.copy_(torch.tensor([200.0, 0, 0, 0, 0]))
    torch.testing.assert_close(q(torch.randn(4, 6), seed=0).kl_loss,
                               torch.tensor(math.log(5)))


@pytest.mark.parametrize("hard", [False, True])
def test_gradients_reach_encoder_projection_and_codebook(hard):
    encoder = torch.nn.Conv2d(2, 6, 1)
    q = _quantizer(hard=hard)
    x = torch.randn(3, 2, 2, 2)
    out = q(encoder(x), seed=0)
    (out.quantized.square().sum() + out.kl_loss).backward()
    assert encoder.weight.grad.abs().sum() > 0
    assert q.proj.weight.grad.abs().sum() > 0
    grad_rows = q.codebook.weight.grad.abs().sum(1) > 0
    used = torch.zeros(5, dtype=torch.bool)
    used[out.indices.unique()] = True
    if hard:
        assert torch.equal(grad_rows, used)  # only the chosen rows
    else:
        assert grad_rows.all()  # every row carries weight in a soft sample


def test_scheduled_temperature_steps():
    q = _quantizer(tau="linear:1.0:0.5:10")
    assert q.tau == 1.0
    assert q.step() == pytest.approx(0.95)
    assert int(q.state_dict()["gumbel.num_steps"]) == 1


def test_empty_batch():
    out = _quantizer()(torch.randn(0, 6, 2, 2), seed=0)
    assert out.quantized.shape == (0, 3, 2, 2) and out.kl_loss == 0


@pytest.mark.parametrize("kwargs,match", [
    ({"num_codes": 1}, "num_codes"),
    ({"in_channels": 0}, "in_channels"),
    ({"code_dim": 0}, "code_dim"),
    ({"kl_weight": -1.0}, "kl_weight"),
    ({"kl_weight": math.nan}, "kl_weight"),
    ({"tau": 0.0}, "tau"),
])
def test_bad_arguments(kwargs, match):
    args = {"in_channels": 6, "num_codes": 5, "code_dim": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        GumbelQuantizer(**args)


def test_bad_features():
    q = _quantizer()
    with pytest.raises(ValueError, match="in_channels=6 channels along dim 1"):
        q(torch.randn(2, 5, 3, 3))
    with pytest.raises(TypeError, match="floating-point"):
        q(torch.zeros(2, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match="seed"):
        q(torch.randn(2, 6), seed=0, generator=torch.Generator())


@pytest.mark.parametrize("training", [True, False])
def test_nan_features_are_an_error_in_training_and_eval(training):
    q = _quantizer().train(training)
    features = torch.randn(2, 6, 3, 3)
    features[1, 0, 2, 1] = math.nan
    with pytest.raises(ValueError, match=r"logits contain NaN or \+inf in row \(1, 2, 1\)"):
        q(features, seed=0)


def test_codebook_usage_on_constructed_indices():
    usage = codebook_usage(torch.tensor([[0, 1], [2, 3]]), 4)
    assert usage.perplexity == pytest.approx(4.0) and usage.dead_codes == 0
    usage = codebook_usage(torch.tensor([3, 3, 3]), 8)
    assert usage.perplexity == pytest.approx(1.0) and usage.dead_codes == 7
    usage = codebook_usage(torch.tensor([0, 0, 0, 1]), 3)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert usage.perplexity == pytest.approx(math.exp(h)) and usage.dead_codes == 1
    assert usage.counts.tolist() == [3, 1, 0]


def test_codebook_usage_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 4\), got 4"):
        codebook_usage(torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match="got -1"):
        codebook_usage(torch.tensor([-1, 2]), 4)
    with pytest.raises(TypeError, match="integer"):
        codebook_usage(torch.tensor([0.0]), 4)
    with pytest.raises(ValueError, match="empty"):
        codebook_usage(torch.tensor([], dtype=torch.int64), 4)


def test_exported():
    assert gumbelkit.nn.GumbelQuantizer is GumbelQuantizer
