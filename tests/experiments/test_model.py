"""The VAE's evaluation bounds in several calls: right values, distinct noise per call."""

import math

import pytest
import torch

import gumbelkit
from gumbelkit.experiments import model as model_module
from gumbelkit.experiments.model import CategoricalVAE


def exact_bounds(vae: CategoricalVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-ELBO and -log p(x) by enumerating the K codes of one latent variable."""
    with torch.no_grad():
        logits = vae.encode(x)  # [B, 1, K]
        q = torch.softmax(logits, -1)[:, 0]
        codes = torch.eye(vae.n_classes).unsqueeze(1).unsqueeze(2)  # [K, 1, 1, K]
        nll = vae.reconstruction_nll(codes.expand(-1, len(x), -1, -1), x)  # [K, B]
        neg_elbo = (q.T * nll).sum(0) + vae.kl_to_uniform(logits)
        log_px = torch.logsumexp(-nll - math.log(vae.n_classes), 0)
    return neg_elbo, -log_px, nll, q


def test_bounds_in_several_calls_match_enumeration(monkeypatch):
    torch.manual_seed(0)
    vae = CategoricalVAE(n_pixels=12, n_latent=1, n_classes=3, hidden=8)
    x = (torch.rand(5, 12) > 0.5).float()
    per_sample = 5 * (12 * 3 + 8 + 8 * 12 + 12 * 12)
    monkeypatch.setattr(model_module, "BOUNDS_CALL_BYTES", 1000 * per_sample)
    assert vae.samples_per_call(5) == 1000
    seeds = []
    original = gumbelkit.gumbel_max

    def spy(logits, *args, seed=None, **kwargs):
        seeds.append(seed)
        return original(logits, *args, seed=seed, **kwargs)

    monkeypatch.setattr(gumbelkit, "gumbel_max", spy)
    n = 4000
    neg_elbo, neg_iw = vae.bounds(x, n, seed=11)
    assert len(seeds) == 4 and len(set(seeds)) == 4 and seeds[0] == 11
    exact_elbo, neg_log_px, nll, q = exact_bounds(vae, x)
    # The estimate of E_q[nll] has standard error sqrt(Var_q[nll] / n); 4.5 of them
    # bound a false failure per image at about 7e-6 (5 images: about 3e-5).
    mean = (q.T * nll).sum(0)
    se = ((q.T * (nll - mean) ** 2).sum(0) / n).sqrt()
    assert ((neg_elbo - exact_elbo).abs() <= 4.5 * se + 1e-5).all()
    # -IWAE = -log mean_s w_s with E_q[w] = p(x): by the delta method its standard error
    # is sqrt(Var_q[w] / n) / p(x), and its bias (of order Var/n) is far smaller.
    log_w = -nll - math.log(3) - torch.log(q.T)  # [K, B]
    w_rel = torch.exp(log_w + neg_log_px)  # w / p(x)
    se_iw = (((q.T * w_rel**2).sum(0) - 1) / n).sqrt()
    assert ((neg_iw - neg_log_px).abs() <= 4.5 * se_iw + 1e-5).all()


def test_one_call_when_the_samples_fit():
    """Up to samples_per_call, bounds draws everything in one call (the earlier numbers)."""
    vae = CategoricalVAE(n_pixels=64, n_latent=4, n_classes=4, hidden=256)
    assert vae.samples_per_call(100) >= 100
    mnist = CategoricalVAE(n_pixels=784, n_latent=20, n_classes=10, hidden=1024)
    assert mnist.samples_per_call(100) >= 100


@pytest.mark.parametrize("n", [1, 7])
def test_bounds_shapes(n):
    vae = CategoricalVAE(n_pixels=6, n_latent=2, n_classes=3, hidden=4)
    e, w = vae.bounds(torch.ones(4, 6), n, seed=0)
    assert e.shape == w.shape == (4,) and bool(torch.isfinite(e).all() & torch.isfinite(w).all())
