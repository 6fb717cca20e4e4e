"""Scorers: exact entropies, contrast and saliency on constructed images, cross-attention, Laplace."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from arrcoc.relevance.calibration import fit_query_laplace, laplace_head_covariance
from arrcoc.relevance.scorers import (QueryScorer, centre_surround_contrast, feature_entropy, grid_adjacency,
                                      pixel_entropy, spectral_residual_saliency, standardize)

DT = torch.float64


def test_pixel_entropy_hard_matches_numpy_histogram(gen):
    px = torch.rand(2, 3, 1, 16, 16, generator=gen, dtype=DT) ** 2
    px[0, 1] = 0.5  # flat region
    got = pixel_entropy(px, bins=16, soft=False)
    for b in range(2):
        lo, hi = px[b].min().item(), px[b].max().item()
        for r in range(3):
            counts, _ = np.histogram(px[b, r].numpy().ravel(), bins=16, range=(lo, hi))
            assert abs(got[b, r].item() - stats.entropy(counts) / math.log(16)) < 1e-9
    assert got[0, 1] == 0


def test_pixel_entropy_soft_limits_and_gradient(gen):
    # uniform grey levels over the full range: soft entropy close to the maximum, constant region 0
    ramp = torch.linspace(0, 1, 32 * 32, dtype=DT).reshape(1, 1, 1, 32, 32)
    on_centre = torch.full_like(ramp, 0.2)  # 0.2 * 15 = 3: exactly on a bin centre
    between = torch.full_like(ramp, 0.3)  # 4.5: split half/half between two bins
    px = torch.cat([ramp, on_centre, between], dim=1).requires_grad_(True)
    h = pixel_entropy(px, bins=16, soft=True)
    assert h[0, 0] > 0.98 and h[0, 1] < 1e-10
    assert abs(h[0, 2].item() - math.log(2) / math.log(16)) < 1e-10
    h[0, 0].backward()
    assert torch.isfinite(px.grad).all() and px.grad.abs().sum() > 0
    # the autograd path (scatter_add) and the no-grad path (bincount) give the same histogram
    with torch.no_grad():
        fast = pixel_entropy(px, bins=16, soft=True)
    torch.testing.assert_close(fast, h.detach())
    # soft and hard agree for smooth data
    x = torch.rand(1, 4, 3, 24, 24, generator=gen, dtype=DT)
    assert (pixel_entropy(x, 32, True) - pixel_entropy(x, 32, False)).abs().max() < 0.03


def test_feature_entropy_matches_scipy(gen):
    f = torch.randn(2, 3, 10, generator=gen, dtype=DT) * 2
    got = feature_entropy(f, temperature=0.5)
    ref = stats.entropy(torch.softmax(f / 0.5, -1).numpy(), axis=-1) / math.log(10)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)
    assert abs(feature_entropy(torch.zeros(1, 1, 7, dtype=DT)).item() - 1) < 1e-12


def test_centre_surround_finds_the_odd_region(gen):
    base = torch.randn(64, generator=gen, dtype=DT)
    f = base + 0.05 * torch.randn(2, 16, 64, generator=gen, dtype=DT)
    f[0, 5] = torch.randn(64, generator=gen, dtype=DT)
    f[1, 10] = -base
    c = centre_surround_contrast(f, grid=4)
    assert c[0].argmax() == 5 and c[1].argmax() == 10
    assert grid_adjacency(4).sum(1).tolist()[:5] == [3, 5, 5, 3, 5]
    same = centre_surround_contrast(base.expand(1, 9, 64).clone(), grid=3)
    assert same.abs().max() < 1e-12


def test_spectral_residual_finds_the_blob():
    # a periodic grating (predictable spectrum) with a small blob in one cell: the blob is salient
    H = 128
    yy, xx = torch.meshgrid(torch.arange(H, dtype=DT), torch.arange(H, dtype=DT), indexing="ij")
    img = 0.5 + 0.25 * torch.sin(2 * math.pi * xx / 8)
    img = img + 0.8 * torch.exp(-((yy - 80) ** 2 + (xx - 48) ** 2) / (2 * 3.0 ** 2))  # row 2, col 1 of 4x4
    crops = img.reshape(4, 32, 4, 32).permute(0, 2, 1, 3).reshape(1, 16, 1, 32, 32)
    sal = spectral_residual_saliency(crops, grid=4, size=64)
    assert sal.argmax().item() == 2 * 4 + 1
    # without a grid layout each crop is scored on its own; the blob crop still stands out
    sal2 = spectral_residual_saliency(crops[:, :15], grid=4, size=64)
    assert sal2.argmax().item() == 9


def test_standardize():
    z, loc, scale = standardize(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]], dtype=DT))
    torch.testing.assert_close(z[0], torch.tensor([-1.2247448713915890, 0.0, 1.2247448713915890], dtype=DT))
    assert (z[1] == 0).all() and loc[1] == 5


def test_query_scorer_attends_to_the_matching_region(gen):
    torch.manual_seed(0)
    qs = QueryScorer(64, None, num_heads=8, head_dim=32).double()
    f = torch.randn(3, 9, 64, generator=gen, dtype=DT)
    target = torch.tensor([2, 7, 4])
    q = f[torch.arange(3), target][:, None, :].repeat(1, 3, 1) + 0.1 * torch.randn(3, 3, 64, generator=gen, dtype=DT)
    mask = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    q[0, 2] = float("nan")  # masked tokens may hold anything
    out = qs(f, q, mask)
    assert out.present.tolist() == [True, True, False]
    assert out.score[0].argmax() == 2 and out.score[1].argmax() == 7
    assert (out.score[2] == 0).all() and (out.cov_factor[2] == 0).all()
    # the score is the projected pooled logit and is differentiable in the projections
    out.score[:2].sum().backward()
    assert qs.q_proj.weight.grad.abs().sum() > 0
    # no query at all
    none = qs(f)
    assert not none.present.any() and (none.score == 0).all()


def test_laplace_covariance_is_the_inverse_hessian(gen):
    phi = torch.randn(50, 4, generator=gen, dtype=DT)
    y = torch.randn(50, generator=gen, dtype=DT)
    beta, alpha = 2.5, 0.7
    cov = laplace_head_covariance(phi, beta, alpha)

    def neg_log_post(w):
        return 0.5 * beta * ((y - phi @ w) ** 2).sum() + 0.5 * alpha * (w ** 2).sum()

    H = torch.autograd.functional.hessian(neg_log_post, torch.zeros(4, dtype=DT))
    torch.testing.assert_close(cov, torch.linalg.inv(H))
    qs = QueryScorer(16, 8, num_heads=4, head_dim=8)
    f, q = torch.randn(5, 6, 16, generator=gen), torch.randn(5, 3, 8, generator=gen)
    installed = fit_query_laplace(qs, f, q, noise_precision=beta, prior_precision=alpha)
    chol = qs.head_cov_chol.double()
    torch.testing.assert_close(chol @ chol.T, installed, atol=1e-5, rtol=1e-5)
    out = qs(f, q)
    torch.testing.assert_close(out.cov_factor @ out.cov_factor.transpose(-1, -2),
                               out.head_logits @ (chol @ chol.T).float() @ out.head_logits.transpose(-1, -2),
                               atol=1e-4, rtol=1e-4)


def test_bad_input():
    with pytest.raises(ValueError, match="region_pixels"):
        pixel_entropy(torch.full((1, 2, 1, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="region_pixels"):
        pixel_entropy(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="region_features"):
        feature_entropy(torch.full((1, 2, 3), float("inf")))
    with pytest.raises(ValueError, match="empty batch"):
        centre_surround_contrast(torch.zeros(0, 4, 3))
    qs = QueryScorer(8, 6, num_heads=2, head_dim=4)
    with pytest.raises(ValueError, match="query_embeds"):
        qs(torch.zeros(2, 3, 8), torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="query_mask"):
        qs(torch.zeros(2, 3, 8), torch.zeros(2, 4, 6), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="query_embeds"):
        qs(torch.zeros(2, 3, 8), torch.full((2, 4, 6), float("nan")))
    with pytest.raises(ValueError, match="cov"):
        qs.set_head_covariance(-torch.eye(2))


def test_pixel_subsampling_keeps_the_distribution(gen):
    x = torch.rand(2, 4, 1, 48, 48, generator=gen, dtype=DT)
    x[:, 0] = 0.5  # flat
    x[:, 1] = x[:, 1] * 0.2  # narrow range
    x[:, 2] = x[:, 2] ** 4  # skewed
    full, sub = pixel_entropy(x, 32, False), pixel_entropy(x, 32, False, max_pixels=256)
    assert (full - sub).abs().max() < 0.06
    assert (sub.argsort(1) == full.argsort(1)).all()
    torch.testing.assert_close(pixel_entropy(x, 32, False, max_pixels=256),
                               pixel_entropy(x[..., ::3, ::3], 32, False))
