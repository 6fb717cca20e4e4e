"""Initialisation strategies (arrcoc.bayes.mcmc.initialization): "uniform" is Stan's uniform(-2, 2);
"optimize" (the NUTS / HMC default) refines several uniform candidates per chain by a short gradient
ascent and starts each chain at its best, which keeps chains out of minor modes."""
import math

import pytest
import torch

from arrcoc.bayes.mcmc import HMC, NUTS, RWMH, OptimizeInit, UniformInit, sample
from arrcoc.bayes.mcmc.initialization import adam_ascent, as_init_strategy


def minor_and_major(x):
    """A narrow minor mode at (-1.5, -1.5), 5 nats below a wide major one at (2.5, 2.5): uniform(-2, 2)
    starts land in the minor one's basin ~7 % of the time (a disk of radius ~0.6)."""
    minor = -0.5 * (((x + 1.5) / 0.3) ** 2).sum(-1) - 5.0
    major = -0.5 * (((x - 2.5) / 1.5) ** 2).sum(-1)
    return torch.logaddexp(minor, major)


def test_adam_ascent_climbs_every_row_independently():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 2, generator=g, dtype=torch.float64) * 4 - 2
    x, lp = adam_ascent(lambda x: -0.5 * ((x - 1.0) ** 2).sum(-1), x0, num_steps=200, learning_rate=0.1)
    torch.testing.assert_close(x, torch.ones_like(x), atol=1e-2, rtol=0)
    # one row alone gives the same path as in the batch: rows do not interact
    x1, _ = adam_ascent(lambda x: -0.5 * ((x - 1.0) ** 2).sum(-1), x0[2:3], num_steps=200, learning_rate=0.1)
    torch.testing.assert_close(x1[0], x[2])


def test_adam_ascent_refuses_steps_to_non_finite_log_density():
    def half_space(x):                                   # finite only for x_0 < 0.5; the mode is outside
        lp = -0.5 * ((x - 2.0) ** 2).sum(-1)
        return torch.where(x[:, 0] < 0.5, lp, torch.full_like(lp, -math.inf))
    x, lp = adam_ascent(half_space, torch.zeros(3, 2, dtype=torch.float64), num_steps=60, learning_rate=0.3)
    assert bool(torch.isfinite(lp).all()) and bool((x[:, 0] < 0.5).all()) and bool((x[:, 0] > 0.2).all())


def test_optimize_init_starts_chains_in_the_major_mode():
    """The optimised starts all lie in the major basin, near its mode (all 8 candidates of a chain in
    the minor basin has probability ~0.07^8), and stay distinct per chain (own candidates)."""
    kw = dict(dim=2, num_chains=8, num_warmup=0, num_samples=1, progress=False, warn=False,
              generator=torch.Generator().manual_seed(4))
    opt = sample(RWMH(step_size=1e-9), minor_and_major, init="optimize", **kw).unconstrained[:, 0]   # (8, 2)
    assert bool((opt > 1.5).all()), opt
    assert torch.unique(opt[:, 0]).numel() == 8
    plain = sample(RWMH(step_size=1e-9), minor_and_major, init="uniform", **kw).unconstrained[:, 0]
    assert bool((plain.abs() <= 2).all())
    assert float(minor_and_major(opt).mean()) > float(minor_and_major(plain).mean()) + 1.0


def test_nuts_and_hmc_default_to_optimize_others_to_uniform():
    assert NUTS().default_init == "optimize" and HMC().default_init == "optimize"
    assert RWMH().default_init == "uniform"
    kw = dict(dim=2, num_chains=4, num_warmup=0, num_samples=1, progress=False, warn=False)
    a = sample(NUTS(step_size=1e-9), minor_and_major, generator=torch.Generator().manual_seed(5), **kw)
    b = sample(NUTS(step_size=1e-9), minor_and_major, generator=torch.Generator().manual_seed(5), init="optimize", **kw)
    torch.testing.assert_close(a.unconstrained, b.unconstrained)
    assert bool((a.unconstrained > 1.5).all())


def test_strategy_objects_and_names():
    assert as_init_strategy("uniform") == UniformInit() and as_init_strategy("optimize") == OptimizeInit()
    custom = OptimizeInit(num_candidates=2, num_steps=0, uniform=UniformInit(-0.5, 0.5))
    res = sample(RWMH(step_size=1e-9), minor_and_major, dim=2, num_chains=3, num_warmup=0, num_samples=1,
                 generator=torch.Generator().manual_seed(6), init=custom, progress=False, warn=False)
    assert bool((res.unconstrained.abs() <= 0.5).all())          # no ascent: the better of two raw draws
    with pytest.raises(ValueError, match="num_candidates"):
        OptimizeInit(num_candidates=0)
    with pytest.raises(ValueError, match="learning_rate"):
        OptimizeInit(learning_rate=math.inf)
    with pytest.raises(ValueError, match="high"):
        UniformInit(1.0, -1.0)
    with pytest.raises(TypeError, match="uniform"):
        OptimizeInit(uniform=(-2, 2))


def test_optimize_init_retries_candidates_without_finite_log_density():
    def positive_quadrant(x):
        lp = -0.5 * ((x - 1.0) ** 2).sum(-1)
        return torch.where((x > 0).all(-1), lp, torch.full_like(lp, -math.inf))
    res = sample(NUTS(), positive_quadrant, dim=2, num_chains=3, num_warmup=50, num_samples=50,
                 generator=torch.Generator().manual_seed(7), progress=False, warn=False)
    assert bool((res.unconstrained > 0).all())
    with pytest.raises(ValueError, match="finite log density in 3 tries"):
        sample(NUTS(), lambda x: torch.full(x.shape[:1], -math.inf, dtype=x.dtype), dim=2, num_chains=2,
               num_warmup=1, num_samples=1, generator=torch.Generator(), max_init_tries=3, progress=False)
