"""Integrators and metrics against the analytic harmonic oscillator and exact identities."""
import math

import pytest
import torch

from arrcoc.bayes.mcmc import (IntegratorState, identity_metric, kinetic_energy, leapfrog, make_metric, mclachlan,
                               sample_momentum, value_and_grad, velocity)


def oscillator(x):
    return -0.5 * (x * x).sum(-1)  # H = p^2/2 + q^2/2: q(t) = q0 cos t + p0 sin t


def run(integrator, q0, p0, eps, n):
    C, d = q0.shape
    metric = identity_metric(C, d)
    lp, g = value_and_grad(oscillator, q0)
    z = IntegratorState(q0, p0, lp, g)
    energies = []
    for _ in range(n):
        z = integrator(oscillator, metric, z, eps)
        energies.append(-z.logdensity + kinetic_energy(metric, z.momentum))
    return z, torch.stack(energies, 0)


@pytest.mark.parametrize("integrator", [leapfrog, mclachlan])
def test_oscillator_path_converges_at_second_order(integrator):
    q0 = torch.tensor([[1.0], [0.3], [-0.5]], dtype=torch.float64)
    p0 = torch.tensor([[0.0], [1.0], [0.7]], dtype=torch.float64)
    T = 5.0
    errs = []
    for eps in (0.1, 0.05, 0.025):
        n = round(T / eps)
        z, _ = run(integrator, q0, p0, torch.full((3,), eps, dtype=torch.float64), n)
        q_true = q0 * math.cos(T) + p0 * math.sin(T)
        p_true = -q0 * math.sin(T) + p0 * math.cos(T)
        errs.append(torch.cat([(z.position - q_true).abs(), (z.momentum - p_true).abs()]).max().item())
    assert errs[0] < 0.05
    for a, b in zip(errs, errs[1:]):
        assert 3.5 < a / b < 4.5, errs  # halving the step quarters the error: order 2


def test_leapfrog_conserves_shadow_energy_exactly_and_energy_error_is_bounded():
    eps = 0.2
    q0 = torch.tensor([[1.0, -0.2]], dtype=torch.float64)
    p0 = torch.tensor([[0.5, 1.3]], dtype=torch.float64)
    z, energies = run(leapfrog, q0, p0, torch.full((1,), eps, dtype=torch.float64), 2000)
    h0 = 0.5 * (q0 ** 2 + p0 ** 2).sum()
    # the leapfrog map preserves p^2/2 + (1 - eps^2/4) q^2/2 exactly on the harmonic oscillator
    shadow = 0.5 * (z.momentum ** 2).sum() + 0.5 * (1 - eps ** 2 / 4) * (z.position ** 2).sum()
    shadow0 = 0.5 * (p0 ** 2).sum() + 0.5 * (1 - eps ** 2 / 4) * (q0 ** 2).sum()
    assert abs(shadow - shadow0).item() < 1e-10
    # no drift over 2000 steps: the energy error stays O(eps^2)
    assert (energies - h0).abs().max().item() < eps ** 2 / 4 * (q0 ** 2).sum().item() + 1e-12


def test_mclachlan_has_smaller_energy_error_than_leapfrog():
    q0 = torch.tensor([[1.0]], dtype=torch.float64)
    p0 = torch.tensor([[0.0]], dtype=torch.float64)
    eps = torch.full((1,), 0.3, dtype=torch.float64)
    _, e_lf = run(leapfrog, q0, p0, eps, 200)
    _, e_mc = run(mclachlan, q0, p0, eps, 200)
    assert (e_mc - 0.5).abs().max() < 0.2 * (e_lf - 0.5).abs().max()


def test_leapfrog_is_reversible_with_per_chain_step_sizes():
    g = torch.Generator().manual_seed(3)
    q0 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    p0 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    eps = torch.tensor([0.1, 0.2, -0.3, 0.05], dtype=torch.float64)

    def banana(x):
        return -0.5 * x[:, 0] ** 2 - 0.5 * (x[:, 1] - x[:, 0] ** 2) ** 2 - 0.5 * x[:, 2] ** 2

    metric = make_metric(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64).expand(4, 3).clone())
    lp, gr = value_and_grad(banana, q0)
    z = IntegratorState(q0, p0, lp, gr)
    for _ in range(25):
        z = leapfrog(banana, metric, z, eps)
    for _ in range(25):
        z = leapfrog(banana, metric, z, -eps)
    assert torch.allclose(z.position, q0, atol=1e-10) and torch.allclose(z.momentum, p0, atol=1e-10)


def test_dense_metric_momentum_has_covariance_inverse_of_inverse_mass():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 3, generator=g, dtype=torch.float64)
    inv_mass = A @ A.T + 0.5 * torch.eye(3, dtype=torch.float64)
    metric = make_metric(inv_mass.expand(2, 3, 3).clone())
    like = torch.zeros(200_000, 3, dtype=torch.float64)
    m2 = make_metric(inv_mass.expand(200_000, 3, 3).clone())
    p = sample_momentum(m2, g, like)
    cov = torch.cov(p.T)
    assert torch.allclose(cov, torch.linalg.inv(inv_mass), rtol=0.05, atol=0.02)
    v = velocity(metric, torch.ones(2, 3, dtype=torch.float64))
    assert torch.allclose(v[0], inv_mass @ torch.ones(3, dtype=torch.float64))


def test_make_metric_rejects_bad_matrices():
    with pytest.raises(ValueError, match="positive"):
        make_metric(torch.tensor([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="positive definite"):
        make_metric(torch.tensor([[[1.0, 2.0], [2.0, 1.0]]]))
    with pytest.raises(ValueError, match="inverse mass"):
        make_metric(torch.ones(2, 3, 4))
