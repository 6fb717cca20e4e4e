"""Closed-form hierarchical posterior vs conjugate updates, numerical integration, dense algebra, SBC."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from arrcoc.bayes.conjugate import NormalNormal
from arrcoc.relevance.posterior import hierarchical_posterior, log_evidence, update_posterior
from arrcoc.relevance.thompson import sample_relevance

DT = torch.float64


def _problem(gen, B=3, K=3, R=4, p_obs=0.7):
    obs = torch.randn(B, K, R, generator=gen, dtype=DT) * 1.5
    mask = torch.rand(B, K, R, generator=gen, dtype=DT) < p_obs
    mask[:, :, 0] = False  # one region with no evidence at all
    params = dict(slope=torch.tensor([1.0, 0.5, -2.0], dtype=DT)[:K], offset=torch.tensor([0.1, 0.0, 0.3], dtype=DT)[:K],
                  precision=torch.tensor([2.0, 1.0, 0.5], dtype=DT)[:K], mu_global=0.3, tau=0.7, sigma=1.2)
    return obs, mask, params


def _conjugate_posterior(obs, mask, p, b):
    """Posterior of image b by NormalNormal updates only: (mean (R,), cov (R, R), mu mean, mu var)."""
    K, R = obs.shape[1:]
    a, off, lam = p["slope"], p["offset"], p["precision"]
    sigma, tau = torch.tensor(p["sigma"], dtype=DT), torch.tensor(p["tau"], dtype=DT)
    # 1. each region's scorer evidence, pooled by conjugate updates from a flat prior: N(y_i, 1/P_i)
    ev = []
    for i in range(R):
        post = None
        for k in range(K):
            if not mask[b, k, i]:
                continue
            noise = 1.0 / (a[k].abs() * lam[k].sqrt())
            y = ((obs[b, k, i] - off[k]) / a[k]).reshape(1)
            prior = NormalNormal.jeffreys(noise, dtype=DT) if post is None else NormalNormal(post.loc, post.scale, noise)
            post = prior.update(y)
        ev.append(post)
    # 2. mu_img: region i's pooled evidence is y_i ~ N(mu, sigma^2 + 1/P_i); update in turn
    mu_post = NormalNormal(torch.tensor(p["mu_global"], dtype=DT), tau, torch.tensor(1.0, dtype=DT))
    for e in ev:
        if e is not None:
            mu_post = NormalNormal(mu_post.loc, mu_post.scale, torch.sqrt(sigma ** 2 + e.scale ** 2)).update(e.loc.reshape(1))
    m_mu, V = mu_post.loc, mu_post.scale ** 2
    # 3. r_i | mu: conjugate update of N(mu, sigma^2) with y_i; its mean is linear in mu
    alpha, beta, w = [], [], []
    for e in ev:
        if e is None:
            alpha.append(torch.tensor(1.0, dtype=DT)); beta.append(torch.tensor(0.0, dtype=DT)); w.append(sigma ** 2)
            continue
        p0 = NormalNormal(torch.tensor(0.0, dtype=DT), sigma, e.scale).update(e.loc.reshape(1))
        p1 = NormalNormal(torch.tensor(1.0, dtype=DT), sigma, e.scale).update(e.loc.reshape(1))
        alpha.append(p1.loc - p0.loc); beta.append(p0.loc); w.append(p0.scale ** 2)
    alpha, beta, w = torch.stack(alpha), torch.stack(beta), torch.stack(w)
    # 4. integrate mu out
    mean = alpha * m_mu + beta
    cov = torch.diag(w) + V * alpha[:, None] * alpha[None, :]
    return mean, cov, m_mu, V


def test_matches_conjugate_updates(gen):
    obs, mask, p = _problem(gen)
    post = hierarchical_posterior(obs, mask, **p)
    for b in range(obs.shape[0]):
        mean, cov, m_mu, V = _conjugate_posterior(obs, mask, p, b)
        torch.testing.assert_close(post.mean[b], mean, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(post.covariance()[b], cov, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(post.var[b], torch.diagonal(cov), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(post.mu_img_mean[b], m_mu)
        torch.testing.assert_close(post.mu_img_var[b], V)


def test_matches_numerical_integration(gen):
    """R = 2: moments of (mu, r1, r2) by brute-force quadrature on a 3-D grid."""
    obs, mask, p = _problem(gen, B=2, K=3, R=2)
    mask[:, :, 0] = torch.tensor([[True, False, True], [False, True, False]])
    post = hierarchical_posterior(obs, mask, **p)
    joint = post.joint_with_mu()
    x = torch.linspace(-7, 7, 101, dtype=DT)
    mu, r1, r2 = torch.meshgrid(x, x, x, indexing="ij")
    a, off, lam = p["slope"], p["offset"], p["precision"]
    for b in range(2):
        lp = stats.norm.logpdf(mu.numpy(), p["mu_global"], p["tau"])
        for i, r in enumerate((r1, r2)):
            lp = lp + stats.norm.logpdf(r.numpy(), mu.numpy(), p["sigma"])
            for k in range(3):
                if mask[b, k, i]:
                    lp = lp + stats.norm.logpdf(obs[b, k, i].item(), (a[k] * r + off[k]).numpy(), 1 / math.sqrt(lam[k]))
        w = np.exp(lp - lp.max())
        w /= w.sum()
        pts = np.stack([mu.numpy(), r1.numpy(), r2.numpy()]).reshape(3, -1)
        m = pts @ w.ravel()
        c = (pts - m[:, None]) * w.ravel() @ (pts - m[:, None]).T
        np.testing.assert_allclose(joint.mean[b].numpy(), m, atol=1e-7)
        np.testing.assert_allclose(joint.covariance_matrix[b].numpy(), c, atol=1e-7)
        # the evidence too: log of the integral of the unnormalised density
        dx = (x[1] - x[0]).item()
        log_z = lp.max() + np.log(np.exp(lp - lp.max()).sum() * dx ** 3)
        le = log_evidence(obs[b:b + 1], mask[b:b + 1], **p)
        assert abs(le.item() - log_z) < 1e-6


def test_dense_algebra_and_evidence(gen):
    """Posterior == inverse of the joint precision; evidence == dense multivariate normal."""
    obs, mask, p = _problem(gen, B=3, K=3, R=5)
    post = hierarchical_posterior(obs, mask, **p)
    a, off, lam = p["slope"], p["offset"], p["precision"]
    R = 5
    for b in range(3):
        Lam = torch.zeros(R + 1, R + 1, dtype=DT)
        h = torch.zeros(R + 1, dtype=DT)
        Lam[0, 0] = 1 / p["tau"] ** 2 + R / p["sigma"] ** 2
        h[0] = p["mu_global"] / p["tau"] ** 2
        rows, means, noise, y = [], [], [], []
        for i in range(R):
            Lam[0, i + 1] = Lam[i + 1, 0] = -1 / p["sigma"] ** 2
            Lam[i + 1, i + 1] = 1 / p["sigma"] ** 2
            for k in range(3):
                if mask[b, k, i]:
                    Lam[i + 1, i + 1] += a[k] ** 2 * lam[k]
                    h[i + 1] += a[k] * lam[k] * (obs[b, k, i] - off[k])
                    row = torch.zeros(R, dtype=DT); row[i] = a[k]
                    rows.append(row); means.append(a[k] * p["mu_global"] + off[k]); noise.append(1 / lam[k]); y.append(obs[b, k, i])
        C = torch.linalg.inv(Lam)
        torch.testing.assert_close(post.joint_with_mu().covariance_matrix[b], C)
        torch.testing.assert_close(post.joint_with_mu().mean[b], C @ h)
        A = torch.stack(rows)
        S = A @ (p["sigma"] ** 2 * torch.eye(R, dtype=DT) + p["tau"] ** 2) @ A.T + torch.diag(torch.stack(noise))
        ref = torch.distributions.MultivariateNormal(torch.stack(means), S).log_prob(torch.stack(y))
        torch.testing.assert_close(log_evidence(obs, mask, **p)[b], ref)
    # the torch.distributions views agree with each other
    joint, marg = post.joint(), post.marginal()
    torch.testing.assert_close(torch.diagonal(joint.covariance_matrix, dim1=-2, dim2=-1), marg.variance)
    torch.testing.assert_close(joint.mean, marg.mean)


def test_epistemic_term_is_the_exact_jacobian(gen):
    """Shifting the uncertain channel's scores along a factor column moves the mean by J F exactly,
    and the variance added is the law-of-total-variance term."""
    obs, mask, p = _problem(gen, B=2, K=3, R=5)
    F = torch.randn(2, 5, 3, generator=gen, dtype=DT) * 0.3
    k = 1
    post = hierarchical_posterior(obs, mask, **p, epistemic_factor=F, epistemic_channel=k)
    base = hierarchical_posterior(obs, mask, **p)
    for e in range(3):
        shifted = obs.clone()
        shifted[:, k] += F[..., e]
        moved = hierarchical_posterior(shifted, mask, **p).mean - base.mean
        torch.testing.assert_close(moved, post.epistemic_cov_factor[..., e])
    torch.testing.assert_close(post.var, base.var + post.epistemic_cov_factor.pow(2).sum(-1))
    torch.testing.assert_close(post.mean, base.mean)
    # mu_img's epistemic part is consistent with the dense joint
    torch.testing.assert_close(post.joint_with_mu().covariance_matrix[:, 1:, 1:], post.covariance())
    # an unobserved uncertain channel adds nothing
    m2 = mask.clone(); m2[:, k] = False
    p2 = hierarchical_posterior(obs, m2, **p, epistemic_factor=F, epistemic_channel=k)
    torch.testing.assert_close(p2.var, p2.aleatoric_var)


def test_sequential_update_equals_batch(gen):
    obs, mask, p = _problem(gen, B=3, K=3, R=6)
    post = hierarchical_posterior(obs, mask, **p)
    idx1 = torch.tensor([[0, 2], [5, 5], [1, 0]])  # repeated index in image 1
    idx2 = torch.tensor([[3], [0], [1]])
    s1 = torch.randn(3, 2, generator=gen, dtype=DT)
    s2 = torch.randn(3, 1, generator=gen, dtype=DT)
    ref = dict(slope=0.8, offset=-0.2, precision=3.0)
    seq = update_posterior(update_posterior(post, idx1, s1, **ref), idx2, s2, **ref)
    # batch: each refined observation is an extra channel observed at one region
    extra = torch.cat([idx1, idx2], 1)  # (B, 3)
    vals = torch.cat([s1, s2], 1)
    M = extra.shape[1]
    eobs = torch.zeros(3, M, 6, dtype=DT)
    emask = torch.zeros(3, M, 6, dtype=torch.bool)
    for b in range(3):
        for j in range(M):
            eobs[b, j, extra[b, j]] = vals[b, j]
            emask[b, j, extra[b, j]] = True
    full = dict(p)
    full["slope"] = torch.cat([p["slope"], torch.full((M,), 0.8, dtype=DT)])
    full["offset"] = torch.cat([p["offset"], torch.full((M,), -0.2, dtype=DT)])
    full["precision"] = torch.cat([p["precision"], torch.full((M,), 3.0, dtype=DT)])
    batch = hierarchical_posterior(torch.cat([obs, eobs], 1), torch.cat([mask, emask], 1), **full)
    torch.testing.assert_close(seq.mean, batch.mean)
    torch.testing.assert_close(seq.covariance(), batch.covariance())
    # regions without new evidence moved too (through mu_img)
    untouched = seq.mean[0, 4] - post.mean[0, 4]
    assert abs(untouched.item()) > 1e-4


def test_simulation_based_calibration():
    """Ranks of the true r_i among 19 posterior draws are uniform (chi-square, p > 0.01)."""
    g = torch.Generator().manual_seed(7)
    N, K, R, L = 4000, 3, 5, 19
    a = torch.tensor([1.0, -0.7, 2.0], dtype=DT); off = torch.tensor([0.5, 0.0, -1.0], dtype=DT)
    lam = torch.tensor([1.0, 4.0, 0.5], dtype=DT)
    mu_g, tau, sigma = 0.4, 0.8, 1.1
    mu = mu_g + tau * torch.randn(N, generator=g, dtype=DT)
    r = mu[:, None] + sigma * torch.randn(N, R, generator=g, dtype=DT)
    obs = a[None, :, None] * r[:, None] + off[None, :, None] + torch.randn(N, K, R, generator=g, dtype=DT) / lam.sqrt()[None, :, None]
    mask = torch.rand(N, K, R, generator=g, dtype=DT) < 0.6
    post = hierarchical_posterior(obs, mask, slope=a, offset=off, precision=lam, mu_global=mu_g, tau=tau, sigma=sigma)
    draws = sample_relevance(post, L, g)  # (N, L, R)
    region = torch.arange(N) % R  # one region per simulation -> independent ranks
    ranks = (draws[torch.arange(N), :, region] < r[torch.arange(N), region][:, None]).sum(1)
    counts = np.bincount(ranks.numpy(), minlength=L + 1)
    assert stats.chisquare(counts).pvalue > 0.01
    # the image-level mean is calibrated as well
    mu_d = post.mu_img().mean[:, None] + post.mu_img().stddev[:, None] * torch.randn(N, L, generator=g, dtype=DT)
    counts = np.bincount((mu_d < mu[:, None]).sum(1).numpy(), minlength=L + 1)
    assert stats.chisquare(counts).pvalue > 0.01


def test_bad_input():
    obs = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="obs"):
        hierarchical_posterior(obs.new_full((2, 3, 4), float("nan")))
    with pytest.raises(ValueError, match="empty batch"):
        hierarchical_posterior(torch.zeros(0, 3, 4))
    with pytest.raises(ValueError, match="precision"):
        hierarchical_posterior(obs, precision=torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="slope"):
        hierarchical_posterior(obs, slope=torch.ones(2))
    with pytest.raises(ValueError, match="tau"):
        hierarchical_posterior(obs, tau=0.0)
    with pytest.raises(ValueError, match="mask"):
        hierarchical_posterior(obs, torch.ones(2, 3, 5, dtype=torch.bool))
    # NaN where unobserved is fine
    o = obs.clone(); o[0, 0, 0] = float("nan")
    m = torch.ones_like(o, dtype=torch.bool); m[0, 0, 0] = False
    assert torch.isfinite(hierarchical_posterior(o, m).mean).all()
    post = hierarchical_posterior(obs)
    with pytest.raises(ValueError, match="region_index"):
        update_posterior(post, torch.tensor([[4], [0]]), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="scores"):
        update_posterior(post, torch.tensor([[1], [0]]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="scores"):
        update_posterior(post, torch.tensor([[1], [0]]), torch.full((2, 1), float("inf")))
    with pytest.raises(ValueError, match="epistemic_channel"):
        hierarchical_posterior(obs, epistemic_factor=torch.zeros(2, 4, 1))
