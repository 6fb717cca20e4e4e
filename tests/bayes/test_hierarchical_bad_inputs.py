"""Issue 14 findings in arrcoc.bayes.hierarchical: bad tau / group_var / num_grid / generator are clear
errors naming the argument (never NaN moments, never torch's own errors); valid calls are unchanged."""
import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from arrcoc.bayes.hierarchical import (conditional_mu, conditional_theta, empirical_bayes, hierarchical_normal,
                                       pool_normal, posterior_given_tau, shrinkage)

F64 = torch.float64
Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=F64)  # eight schools
S = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=F64)


@pytest.mark.parametrize("tau", [math.nan, math.inf, -1.0, 0.0, None, "1", True, torch.tensor([1.0, math.nan])])
def test_conditional_theta_tau(tau):
    with pytest.raises((TypeError, ValueError), match="tau"):
        conditional_theta(Y, S, 0.0, tau)


@pytest.mark.parametrize("fn", [lambda tau: conditional_mu(Y, S, tau), lambda tau: shrinkage(S, tau),
                                lambda tau: posterior_given_tau(Y, S, tau)])
@pytest.mark.parametrize("tau", [math.nan, math.inf, -0.5, None])
def test_tau_of_the_gaussian_conditionals(fn, tau):
    with pytest.raises((TypeError, ValueError), match="tau"):
        fn(tau)


def test_tau_zero_is_complete_pooling_where_it_is_defined():
    m, v = conditional_mu(Y, S, 0.0)
    w = S ** -2
    assert torch.allclose(m, (w * Y).sum() / w.sum()) and torch.allclose(v, 1 / w.sum())
    assert torch.equal(shrinkage(S, torch.tensor(0.0)), torch.ones(8, dtype=F64))


@pytest.mark.parametrize("group_var", [math.nan, math.inf, -1.0, None, "1.0", True])
def test_pool_normal_group_var(group_var):
    with pytest.raises((TypeError, ValueError), match="group_var"):
        pool_normal(S ** -2, Y * S ** -2, group_var, 0.0, math.inf)


def test_pool_normal_tensor_arguments_are_not_synchronised():
    """Tensor group_var / mu_loc / mu_var are passed through (the kernel stays sync-free and traceable):
    the result equals the number form."""
    a = pool_normal(S ** -2, Y * S ** -2, 4.0, 0.0, 25.0)
    b = pool_normal(S ** -2, Y * S ** -2, torch.tensor(4.0, dtype=F64), torch.tensor(0.0, dtype=F64),
                    torch.tensor(25.0, dtype=F64))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        pool_normal(S ** -2, Y * S ** -2, torch.tensor(4.0, dtype=F64), 0.0, 25.0)
    assert sum(e.count for e in prof.key_averages() if e.key == "aten::_local_scalar_dense") == 0


@pytest.mark.parametrize("num_grid", [math.inf, 2.5, "50", None, 5])
def test_hierarchical_normal_num_grid(num_grid):
    with pytest.raises((TypeError, ValueError), match="num_grid"):
        hierarchical_normal(Y, S, num_grid=num_grid)


@pytest.mark.parametrize("num_grid", [2.5, math.inf, 1, "512"])
def test_empirical_bayes_num_grid(num_grid):
    with pytest.raises((TypeError, ValueError), match="num_grid"):
        empirical_bayes(Y, S, num_grid=num_grid)


def test_whole_float_num_grid_is_the_int():
    a, b = hierarchical_normal(Y, S, num_grid=200), hierarchical_normal(Y, S, num_grid=200.0)
    assert torch.equal(a.log_weights, b.log_weights)


@pytest.mark.parametrize("generator", ["seed", 0, None, 1.5])
def test_sample_needs_a_torch_generator(generator):
    post = hierarchical_normal(Y, S, num_grid=200)
    with pytest.raises(TypeError, match="generator"):
        post.sample(3, generator)
    d1 = post.sample(5, torch.Generator().manual_seed(2))
    d2 = post.sample(5, torch.Generator().manual_seed(2))
    assert all(torch.equal(d1[k], d2[k]) for k in d1)
