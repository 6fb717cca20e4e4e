"""bayes.hierarchical.pool_normal: the one pooling kernel behind posterior_given_tau and the relevance posterior."""
import math

import torch

from arrcoc.bayes.hierarchical import pool_normal, posterior_given_tau

DT = torch.float64


def _dense(P, h, group_var, mu_loc, mu_var):
    """Posterior of (mu, theta_1..J) by dense Gaussian conditioning (joint precision matrix)."""
    J = P.shape[-1]
    Q = torch.zeros(J + 1, J + 1, dtype=DT)
    b = torch.zeros(J + 1, dtype=DT)
    Q[0, 0] = 1 / mu_var + J / group_var
    b[0] = mu_loc / mu_var
    Q[0, 1:] = Q[1:, 0] = -1 / group_var
    Q[1:, 1:] = torch.diag(1 / group_var + P)
    b[1:] = h
    cov = torch.linalg.inv(Q)
    return cov @ b, cov


def test_matches_dense_conditioning(gen):
    P = torch.rand(6, generator=gen, dtype=DT) * 3
    P[2] = 0.0  # a group with no data
    h = torch.randn(6, generator=gen, dtype=DT)
    out = pool_normal(P, h, 0.8, 0.3, 1.7)
    mean, cov = _dense(P, h, 0.8, 0.3, 1.7)
    torch.testing.assert_close(out.mu_mean, mean[0])
    torch.testing.assert_close(out.mu_var, cov[0, 0])
    torch.testing.assert_close(out.mean, mean[1:])
    torch.testing.assert_close(out.var, torch.diagonal(cov)[1:])
    # Cov(theta_i, theta_j) = c_i c_j Var(mu) off the diagonal: the shared-mean coupling
    torch.testing.assert_close(out.coupling[0] * out.coupling[1] * out.mu_var, cov[1, 2])


def test_flat_prior_and_complete_pooling_limits(gen):
    y = torch.randn(5, generator=gen, dtype=DT)
    s = torch.rand(5, generator=gen, dtype=DT) + 0.5
    P, h = s ** -2, y * s ** -2
    flat = pool_normal(P, h, 0.6 ** 2, 0.0, math.inf)  # group_var is tau^2
    ref = posterior_given_tau(y, s, 0.6)
    torch.testing.assert_close(flat.mean, ref.theta_mean)
    torch.testing.assert_close(flat.var, ref.theta_var)
    # tau = 0: every group equals the precision-weighted mean
    pooled = pool_normal(P, h, 0.0, 0.0, math.inf)
    wmean = (P * y).sum() / P.sum()
    torch.testing.assert_close(pooled.mean, wmean.expand(5))
    torch.testing.assert_close(pooled.mu_var, 1 / P.sum())


def test_batched_over_a_tau_grid(gen):
    y = torch.randn(3, 8, generator=gen, dtype=DT)
    s = torch.ones(3, 8, dtype=DT)
    grid = torch.tensor([0.1, 1.0, 4.0], dtype=DT)
    out = posterior_given_tau(y[:, None, :], s[:, None, :], grid)
    for g in range(3):
        one = posterior_given_tau(y, s, grid[g])
        torch.testing.assert_close(out.theta_mean[:, g], one.theta_mean)
        torch.testing.assert_close(out.mu_var[:, g], one.mu_var)
