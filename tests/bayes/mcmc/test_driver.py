"""The driver: constrained models, init handling, bad input, NaN mid-run, outputs (summary, plots, ArviZ)."""
import math

import pytest
import torch
from torch.distributions import constraints

from arrcoc.bayes.mcmc import HMC, NUTS, RWMH, MCMCResult, Model, PyroModel, sample

from ._checks import assert_moments_exact

# short runs check the samplers' numbers; their diagnostics warnings (ESS below 100 per chain, ...)
# are expected here and tested in test_checks.py
pytestmark = pytest.mark.filterwarnings("ignore::arrcoc.bayes.mcmc.MCMCDiagnosticWarning")


def std_normal(x):
    return -0.5 * (x * x).sum(-1)


def test_model_transforms_and_jacobian_give_the_right_constrained_posterior(gen):
    # sigma ~ Gamma(3, 2), p ~ Beta(2, 5), w ~ Dirichlet(2, 3, 5): densities written in constrained space
    f64 = dict(dtype=torch.float64)
    gamma = torch.distributions.Gamma(torch.tensor(3.0, **f64), 2.0, validate_args=False)
    beta = torch.distributions.Beta(torch.tensor(2.0, **f64), 5.0, validate_args=False)
    dirichlet = torch.distributions.Dirichlet(torch.tensor([2.0, 3.0, 5.0], **f64), validate_args=False)

    def logp(v):
        return gamma.log_prob(v["sigma"]) + beta.log_prob(v["p"]) + dirichlet.log_prob(v["w"])
    model = Model(logp, {"sigma": ((), constraints.positive), "p": ((), constraints.unit_interval),
                         "w": (3, constraints.simplex)})
    assert model.dim == 4  # simplex of 3 is 2 unconstrained coordinates
    res = sample(NUTS(), model, num_chains=4, num_warmup=200, num_samples=400, generator=gen, progress=False)
    assert res.draws["w"].shape == (4, 400, 3) and torch.allclose(res.draws["w"].sum(-1), torch.ones(4, 400,
                                                                                                   dtype=torch.float64))
    x = torch.stack([res.draws["sigma"], res.draws["p"], res.draws["w"][..., 0]], -1)
    mean = torch.tensor([1.5, 2 / 7, 0.2], dtype=torch.float64)
    sd = torch.tensor([math.sqrt(3) / 2, math.sqrt(10 / (49 * 8)), math.sqrt(0.2 * 0.8 / 11)], dtype=torch.float64)
    assert_moments_exact(x, mean, sd, label="constrained")


def test_init_dict_and_round_trip(gen):
    model = Model(lambda v: -v["s"] + 2 * torch.log(v["s"]), {"s": ((), constraints.positive)})
    x = model.unconstrain({"s": torch.tensor([1.0, 2.0], dtype=torch.float64)})
    assert torch.allclose(model.constrain(x)["s"], torch.tensor([1.0, 2.0], dtype=torch.float64))
    res = sample(RWMH(), model, num_chains=2, num_warmup=10, num_samples=5, generator=gen, progress=False,
                 init={"s": torch.tensor([1.0, 2.0], dtype=torch.float64)})
    assert res.draws["s"].shape == (2, 5)
    with pytest.raises(ValueError, match="constraint"):
        model.unconstrain({"s": torch.tensor(-1.0)})
    with pytest.raises(ValueError, match="missing"):
        model.unconstrain({"t": torch.tensor(1.0)})


def test_seeded_runs_are_reproducible():
    runs = [sample(NUTS(), std_normal, num_chains=2, num_warmup=30, num_samples=20, dim=3, progress=False,
                   generator=torch.Generator().manual_seed(5)).draws["x"] for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_nan_log_density_mid_run_is_a_divergence_not_a_crash(gen):
    def logp(x):  # NaN beyond |x| > 3: the sampler must reject those proposals
        lp = -0.5 * (x * x).sum(-1)
        return torch.where(x.abs().max(-1).values > 3.0, torch.full_like(lp, math.nan), lp)
    res = sample(HMC(num_steps=10, step_size=1.2, adaptation=__import__("arrcoc").bayes.mcmc.AdaptationConfig(
        adapt_step_size=False)), logp, num_chains=4, num_warmup=0, num_samples=300, generator=gen, dim=2,
        progress=False)
    assert torch.isfinite(res.draws["x"]).all() and res.draws["x"].abs().max() <= 3.0
    assert res.num_divergent > 0
    res = sample(NUTS(), logp, num_chains=4, num_warmup=100, num_samples=100, generator=gen, dim=2, progress=False)
    assert torch.isfinite(res.draws["x"]).all() and res.draws["x"].abs().max() <= 3.0


def test_init_retries_then_clear_error(gen):
    def half_space(x):  # finite only for x_0 > 0: some uniform(-2, 2) inits fail and are retried
        lp = -0.5 * (x * x).sum(-1)
        return torch.where(x[:, 0] > 0, lp, torch.full_like(lp, -math.inf))
    res = sample(RWMH(), half_space, num_chains=8, num_warmup=20, num_samples=20, generator=gen, dim=2,
                 progress=False)
    assert (res.draws["x"][..., 0] > 0).all()
    with pytest.raises(ValueError, match="finite log density in 5 tries"):
        sample(RWMH(), lambda x: torch.full(x.shape[:1], -math.inf, dtype=x.dtype), num_chains=2, num_warmup=1,
               num_samples=1, generator=gen, dim=2, max_init_tries=5, progress=False)
    with pytest.raises(ValueError, match="not finite at the given init"):
        sample(RWMH(), half_space, num_chains=2, num_warmup=1, num_samples=1, generator=gen,
               init=torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64), progress=False)


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(num_samples=0), ValueError, "num_samples"),
    (dict(num_samples=-3), ValueError, "num_samples"),
    (dict(num_samples=2.5), TypeError, "num_samples"),
    (dict(num_chains=0), ValueError, "num_chains"),
    (dict(num_warmup=-1), ValueError, "num_warmup"),
    (dict(init=torch.zeros(3, 2, dtype=torch.float64)), ValueError, "init"),
    (dict(init=torch.zeros(2, 5, dtype=torch.float64)), ValueError, "init"),
    (dict(generator=None), TypeError, "generator"),
])
def test_bad_driver_input(kwargs, err, match, gen):
    args = dict(num_chains=2, num_warmup=1, num_samples=2, generator=gen, dim=2, progress=False)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        sample(NUTS(), std_normal, **args)


def test_bad_log_density_shape_and_kernel_options(gen):
    with pytest.raises(ValueError, match=r"shape \(C,\)"):
        sample(NUTS(), lambda x: x, num_chains=2, num_warmup=1, num_samples=1, generator=gen, dim=2, progress=False)
    with pytest.raises(TypeError, match="kernel"):
        sample(object(), std_normal, num_chains=2, num_warmup=1, num_samples=1, generator=gen, dim=2)
    with pytest.raises(ValueError, match="metric"):
        NUTS(metric="full")
    with pytest.raises(ValueError, match="max_tree_depth"):
        NUTS(max_tree_depth=0)
    with pytest.raises(ValueError, match="num_steps"):
        HMC(num_steps=0)
    with pytest.raises(ValueError, match="dimension"):
        sample(NUTS(), std_normal, num_chains=2, num_warmup=1, num_samples=1, generator=gen, progress=False)
    with pytest.raises(ValueError, match="spec"):
        Model(std_normal, {"a": (3,)})
    with pytest.raises(ValueError, match="inverse_mass"):
        sample(NUTS(inverse_mass=torch.ones(5)), std_normal, num_chains=2, num_warmup=1, num_samples=1,
               generator=gen, dim=2, progress=False)


def test_result_summary_plots_and_arviz(gen):
    pytest.importorskip("matplotlib")
    model = Model(lambda v: -0.5 * (v["a"] ** 2).sum(-1) - v["b"], {"a": (2, None), "b": ((), constraints.positive)})
    res = sample(NUTS(), model, num_chains=2, num_warmup=50, num_samples=50, generator=gen, progress=True)
    assert isinstance(res, MCMCResult)
    assert set(res.info) >= {"accept_prob", "is_divergent", "energy", "tree_depth", "num_steps", "step_size"}
    assert res.info["tree_depth"].shape == (2, 50)
    text = str(res.summary())
    assert "a" in text and "b" in text
    from matplotlib.figure import Figure
    for fig in (res.plot_trace(), res.plot_rank(), res.plot_autocorr()):
        assert isinstance(fig, Figure) and len(fig.axes) > 0
    idata = res.to_inference_data()
    assert idata.posterior["a"].shape[:2] == (2, 50)
    assert "diverging" in idata.sample_stats


def test_pyro_model_bridge_matches_conjugate_posterior(gen):
    pyro = pytest.importorskip("pyro")
    import pyro.distributions as dist
    y = torch.tensor([1.2, 0.4, 2.0, 1.1, 0.7], dtype=torch.float64)

    def model():
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 2.0))
        with pyro.plate("n", 5):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    pm = PyroModel(model)
    assert pm.dim == 1 and pm.names == ["mu"]
    res = sample(NUTS(), pm, num_chains=4, num_warmup=100, num_samples=300, generator=gen, progress=False)
    prec = 5 + 1 / 4
    assert_moments_exact(res.draws["mu"].unsqueeze(-1), torch.tensor([y.sum().item() / prec], dtype=torch.float64),
                         torch.tensor([prec ** -0.5], dtype=torch.float64), label="pyro")


@pytest.mark.parametrize("kernel", [RWMH(), NUTS(max_tree_depth=5)])
def test_distribution_argument_checks_off_during_the_run_only(kernel, gen):
    """A trajectory leaving a distribution's support (a scale < 0) is a rejected / divergent
    transition, not a ValueError from torch.distributions; the user's setting is restored."""
    from torch.distributions import Distribution, Normal
    y = torch.tensor([0.4, -0.3, 0.2, 0.1], dtype=torch.float64)

    def logp(x):                                   # x[:, 0] used directly as a scale (no constraint)
        return Normal(0.0, x[:, :1]).log_prob(y).sum(-1) + Normal(1.0, 1.0).log_prob(x[:, 0])
    before = Distribution._validate_args
    Distribution.set_default_validate_args(True)
    try:
        with pytest.raises(ValueError, match="scale"):
            logp(torch.tensor([[-1.0]], dtype=torch.float64))        # the user's checks still apply outside
        res = sample(kernel, logp, dim=1, num_chains=2, num_warmup=100, num_samples=100,
                     init=torch.tensor([0.5], dtype=torch.float64), generator=gen, progress=False)
        assert Distribution._validate_args is True
        assert bool((res.unconstrained > 0).all())
    finally:
        Distribution.set_default_validate_args(before)
