"""Boundary validation of the samplers: settings that cannot work and bad driver arguments are clear
errors naming the argument (before: NUTS / HMC / RWMH ran silently with step_size=inf, a negative or
NaN max_delta_energy or target_accept=5, and a string or numpy generator gave internal errors)."""
import math

import numpy as np
import pytest
import torch

from arrcoc.bayes.mcmc import (HMC, NUTS, RWMH, AdaptationConfig, DelayedAcceptance, Kernel, MCMCResult, sample)
from arrcoc.bayes.mcmc.driver import distribution_validation, torch_threads


def std_normal(x):
    return -0.5 * (x * x).sum(-1)


@pytest.mark.parametrize("make", [NUTS, HMC, RWMH])
@pytest.mark.parametrize("value", [math.inf, -math.inf, 0.0, -0.1, math.nan])
def test_step_size_must_be_positive_and_finite(make, value):
    with pytest.raises(ValueError, match="step_size"):
        make(step_size=value)


@pytest.mark.parametrize("make", [NUTS, HMC])
@pytest.mark.parametrize("value", [-1.0, 0.0, math.nan, math.inf])
def test_max_delta_energy_must_be_positive_and_finite(make, value):
    with pytest.raises(ValueError, match="max_delta_energy"):
        make(max_delta_energy=value)


@pytest.mark.parametrize("make", [NUTS, HMC, RWMH])
@pytest.mark.parametrize("value", [5.0, 1.0, 0.0, -0.2, math.nan])
def test_target_accept_must_lie_in_the_open_unit_interval(make, value):
    with pytest.raises(ValueError, match="target_accept"):
        make(target_accept=value)


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(max_tree_depth=2.5), TypeError, "max_tree_depth"),
    (dict(max_tree_depth=True), TypeError, "max_tree_depth"),
    (dict(max_tree_depth=31), ValueError, "max_tree_depth"),
    (dict(leapfrog_per_call=1.5), TypeError, "leapfrog_per_call"),
    (dict(step_size="0.1"), TypeError, "step_size"),
    (dict(adaptation={"gamma": 0.05}), TypeError, "adaptation"),
])
def test_nuts_settings(kwargs, err, match):
    with pytest.raises(err, match=match):
        NUTS(**kwargs)
    assert NUTS(max_tree_depth=6.0).max_tree_depth == 6 and isinstance(NUTS(max_tree_depth=6.0).max_tree_depth, int)


@pytest.mark.parametrize("kwargs,match", [
    (dict(gamma=0.0), "gamma"), (dict(kappa=0.3), "kappa"), (dict(t0=-1.0), "t0"), (dict(init_buffer=-1), "init_buffer"),
    (dict(base_window=0), "base_window"), (dict(target_accept=1.5), "target_accept"), (dict(regularize=math.nan),
                                                                                     "regularize")])
def test_adaptation_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdaptationConfig(**kwargs)


def test_hmc_and_random_walk_settings():
    with pytest.raises(ValueError, match="step_size_jitter"):
        HMC(step_size_jitter=1.0)
    with pytest.raises(TypeError, match="num_steps"):
        HMC(num_steps=2.5)
    with pytest.raises(ValueError, match="step_size"):
        DelayedAcceptance(surrogates=(std_normal,), step_size=math.inf)
    with pytest.raises(ValueError, match="integrator"):
        HMC(integrator="euler")


@pytest.mark.parametrize("generator", ["seed", np.random.default_rng(0), None, 3, torch.Generator().manual_seed(0).initial_seed()])
def test_generator_must_be_a_torch_generator(generator):
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        sample(NUTS(), std_normal, dim=2, num_chains=2, num_warmup=1, num_samples=2, generator=generator,
               progress=False)


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(num_chains=2.5), TypeError, "num_chains"),
    (dict(num_chains=True), TypeError, "num_chains"),
    (dict(num_warmup=math.nan), TypeError, "num_warmup"),
    (dict(num_samples="10"), TypeError, "num_samples"),
    (dict(thin=0), ValueError, "thin"),
    (dict(max_init_tries=0), ValueError, "max_init_tries"),
    (dict(num_threads=0), ValueError, "num_threads"),
    (dict(dim=0), ValueError, "dim"),
    (dict(dtype=torch.int64), TypeError, "dtype"),
    (dict(progress="yes"), TypeError, "progress"),
    (dict(init="pathfinder"), ValueError, "init strategy"),
    (dict(compile="yes"), TypeError, "compile"),
])
def test_bad_sample_arguments(kwargs, err, match):
    args = dict(num_chains=2, num_warmup=1, num_samples=2, generator=torch.Generator(), dim=2, progress=False)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        sample(NUTS(), std_normal, **args)


def test_integral_floats_are_accepted_as_counts():
    res = sample(RWMH(), std_normal, dim=2, num_chains=2.0, num_warmup=5.0, num_samples=4.0,
                 generator=torch.Generator().manual_seed(0), progress=False, warn=False)
    assert res.unconstrained.shape == (2, 4, 2)


class _Independence(Kernel):
    """A minimal custom kernel through the documented protocol: independent N(0, I) proposals."""

    def init(self, position, logdensity_fn):
        from arrcoc.bayes.mcmc.mh import rwmh_init
        return rwmh_init(position, logdensity_fn)

    def init_params(self, state, logdensity_fn, generator):
        return None

    def step(self, state, generator, logdensity_fn, params):
        from arrcoc.bayes.mcmc.mh import MHInfo, MHState
        y = torch.randn(state.position.shape, generator=generator, dtype=state.position.dtype)
        lp = logdensity_fn(y)
        log_ratio = lp - state.logdensity - std_normal(y) + std_normal(state.position)
        acc = torch.rand(lp.shape, generator=generator, dtype=lp.dtype).log() < log_ratio
        new = MHState(torch.where(acc[:, None], y, state.position), torch.where(acc, lp, state.logdensity))
        return new, MHInfo(log_ratio.exp().clamp(max=1.0), acc, torch.ones_like(lp))


def test_kernel_protocol_custom_kernel_and_refusal():
    res = sample(_Independence(), std_normal, dim=2, num_chains=4, num_warmup=10, num_samples=500,
                 generator=torch.Generator().manual_seed(0), progress=False, warn=False)
    assert isinstance(res, MCMCResult) and float(res.info["accept_prob"].mean()) > 0.99   # exact proposal
    assert abs(float(res.unconstrained.mean())) < 5 * (1 / math.sqrt(4000))
    assert _Independence().warmup(10, std_normal) is None and _Independence().default_init == "uniform"

    class Duck:                                   # the methods without the protocol: refused by name
        def init(self, *a): ...
        def init_params(self, *a): ...
        def step(self, *a): ...
    with pytest.raises(TypeError, match="Kernel"):
        sample(Duck(), std_normal, dim=2, num_chains=2, num_warmup=1, num_samples=2,
               generator=torch.Generator(), progress=False)
    with pytest.raises(TypeError):
        Kernel()                                  # abstract: init, init_params, step are required


def test_thread_count_and_distribution_checks_are_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    old = torch.distributions.Distribution._validate_args
    with distribution_validation(not old):
        assert torch.distributions.Distribution._validate_args is (not old)
    assert torch.distributions.Distribution._validate_args is old
    sample(RWMH(), std_normal, dim=2, num_chains=2, num_warmup=2, num_samples=2, generator=torch.Generator(),
           progress=False, num_threads=1, warn=False)
    assert torch.get_num_threads() == before
