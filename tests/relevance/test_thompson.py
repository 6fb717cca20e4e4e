"""Thompson draws follow the joint posterior: rank-first frequencies vs an independent Monte Carlo."""
import numpy as np
import pytest
import torch

from arrcoc.relevance.posterior import hierarchical_posterior
from arrcoc.relevance.thompson import rank_first_frequency, sample_relevance, thompson

DT = torch.float64


def _dense_posterior(obs, mask, a, off, lam, mu_g, tau, sigma, F, k):
    """Mean and covariance of r from the dense joint precision (inverted), epistemic part by finite
    differences of that dense mean -- no use of the closed form."""
    B, K, R = obs.shape

    def dense_mean_cov(o):
        means, covs = [], []
        for b in range(B):
            Lam = torch.zeros(R + 1, R + 1, dtype=DT)
            h = torch.zeros(R + 1, dtype=DT)
            Lam[0, 0] = 1 / tau ** 2 + R / sigma ** 2
            h[0] = mu_g / tau ** 2
            for i in range(R):
                Lam[0, i + 1] = Lam[i + 1, 0] = -1 / sigma ** 2
                Lam[i + 1, i + 1] = 1 / sigma ** 2 + (mask[b, :, i] * a ** 2 * lam).sum()
                h[i + 1] = (mask[b, :, i] * a * lam * (o[b, :, i] - off)).sum()
            C = torch.linalg.inv(Lam)
            means.append((C @ h)[1:]); covs.append(C[1:, 1:])
        return torch.stack(means), torch.stack(covs)

    m, C = dense_mean_cov(obs)
    J = []
    for e in range(F.shape[-1]):
        o = obs.clone(); o[:, k] += F[..., e]
        J.append(dense_mean_cov(o)[0] - m)
    JF = torch.stack(J, -1)  # (B, R, E)
    return m, C + JF @ JF.transpose(-1, -2)


def test_rank_first_frequency_matches_independent_monte_carlo():
    g = torch.Generator().manual_seed(11)
    B, K, R, E = 3, 3, 5, 2
    obs = torch.randn(B, K, R, generator=g, dtype=DT) * 0.6
    mask = torch.rand(B, K, R, generator=g) < 0.7
    a = torch.tensor([1.0, 0.6, 1.5], dtype=DT); off = torch.zeros(3, dtype=DT); lam = torch.tensor([1.0, 0.5, 2.0], dtype=DT)
    F = torch.randn(B, R, E, generator=g, dtype=DT) * 0.4
    kw = dict(slope=a, offset=off, precision=lam, mu_global=0.0, tau=1.5, sigma=0.8)
    post = hierarchical_posterior(obs, mask, **kw, epistemic_factor=F, epistemic_channel=2)
    S = 40_000
    freq = rank_first_frequency(sample_relevance(post, S, g)).numpy()  # (B, R)
    m, C = _dense_posterior(obs, mask, a, off, lam, 0.0, 1.5, 0.8, F, 2)
    rng = np.random.default_rng(12345)
    for b in range(B):
        ref_draws = rng.multivariate_normal(m[b].numpy(), C[b].numpy(), size=S)
        ref = np.bincount(ref_draws.argmax(1), minlength=R) / S
        se = np.sqrt(ref * (1 - ref) / S + freq[b] * (1 - freq[b]) / S)
        assert np.all(np.abs(freq[b] - ref) <= 3 * se + 1e-12), (freq[b], ref, se)
        assert ref.max() < 0.9  # the check is not vacuous: several regions can rank first


def test_draw_moments_and_reproducibility():
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(2, 2, 4, generator=g, dtype=DT)
    post = hierarchical_posterior(obs, epistemic_factor=torch.randn(2, 4, 1, generator=g, dtype=DT), epistemic_channel=0)
    d = sample_relevance(post, 50_000, g)
    se = (post.var / 50_000).sqrt()
    assert ((d.mean(1) - post.mean).abs() < 4 * se).all()
    emp = torch.einsum("bsr,bsq->brq", d - d.mean(1, keepdim=True), d - d.mean(1, keepdim=True)) / 50_000
    torch.testing.assert_close(emp, post.covariance(), atol=0.05, rtol=0.05)
    t1 = thompson(post, 4, torch.Generator().manual_seed(9))
    t2 = thompson(post, 4, torch.Generator().manual_seed(9))
    torch.testing.assert_close(t1.draws, t2.draws)
    det = thompson(post, 4, None, deterministic=True)
    torch.testing.assert_close(det.draws[:, 0], post.mean)
    torch.testing.assert_close(det.probability, torch.sigmoid(post.mean))
    with pytest.raises(ValueError, match="num_samples"):
        sample_relevance(post, 0, g)
