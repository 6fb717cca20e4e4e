"""The curvature start of warmup (AdaptationConfig(init_metric="hessian"), initial_metric.py): exact on
Gaussians, safe where the curvature is not usable, cheaper warmup on a badly scaled correlated target,
and the reference posteriors still matched with it."""
import math
import shutil

import pytest
import torch

from arrcoc.bayes.mcmc import NUTS, AdaptationConfig, CompiledLogDensity, sample
from arrcoc.bayes.mcmc.initial_metric import finite_difference_hessian, hessian_inverse_mass

from ..posteriordb_models import case, load_reference
from ._checks import compare_to_reference

F64 = torch.float64


def _gaussian(d=5, seed=0, scales=None):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=F64)
    cov = a @ a.T + 0.5 * torch.eye(d, dtype=F64)                      # (d, d)
    if scales is not None:
        cov = scales[:, None] * cov * scales[None, :]
    prec = torch.linalg.inv(cov)

    def logp(x):                                                          # (C, d) -> (C,)
        return -0.5 * ((x @ prec) * x).sum(-1)
    return cov, logp


def test_hessian_of_a_gaussian_is_minus_its_precision():
    cov, logp = _gaussian()
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    hess, finite = finite_difference_hessian(logp, x, block=2)          # blocks of 2: the split is exercised
    assert finite.all()
    torch.testing.assert_close(hess, -torch.linalg.inv(cov).expand(3, 5, 5), rtol=1e-6, atol=1e-7)


def test_inverse_mass_is_the_covariance_dense_and_its_diagonal_diag():
    cov, logp = _gaussian()
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    torch.testing.assert_close(hessian_inverse_mass(logp, x, True), cov.expand(3, 5, 5), rtol=1e-6, atol=1e-8)
    mask = torch.tensor([True, False, True])
    diag = hessian_inverse_mass(logp, x, False, mask=mask)
    torch.testing.assert_close(diag[0], torch.diagonal(cov), rtol=1e-6, atol=1e-8)
    assert torch.equal(diag[1], torch.ones(5, dtype=F64))                # not asked: the identity


def test_saddle_direction_keeps_unit_scale_and_variances_are_clipped():
    def logp(x):                        # curvature -4 along x0 (variance 0.25), +1 along x1 (a saddle), ~0 along x2
        return -2.0 * x[:, 0] ** 2 + 0.5 * x[:, 1] ** 2 - 1e-9 * x[:, 2] ** 2
    var = hessian_inverse_mass(logp, torch.zeros(2, 3, dtype=F64), False, max_var=50.0)
    torch.testing.assert_close(var, torch.tensor([[0.25, 1.0, 50.0]] * 2, dtype=F64), rtol=1e-6, atol=0)


def test_chain_outside_the_support_or_above_max_dim_keeps_the_identity():
    def logp(x):                                                          # support x > 0
        return torch.where(x > 0, torch.log(x.clamp(min=1e-300)) - x, -math.inf).sum(-1)
    x = torch.tensor([[1.0, 2.0], [1e-9, 2.0]], dtype=F64)               # chain 1's perturbation leaves the support
    var = hessian_inverse_mass(logp, x, False)
    torch.testing.assert_close(var[0], x[0] ** 2, rtol=1e-5, atol=0)     # -d2/dx2 (log x - x) = 1 / x^2
    assert torch.equal(var[1], torch.ones(2, dtype=F64))
    assert torch.equal(hessian_inverse_mass(logp, x, True, max_dim=1), torch.eye(2, dtype=F64).expand(2, 2, 2))


def test_compiled_log_density_is_evaluated_eagerly_without_new_graphs():
    cov, logp = _gaussian(3)
    fn = CompiledLogDensity(logp)
    got = hessian_inverse_mass(fn, torch.zeros(2, 3, dtype=F64), True)
    torch.testing.assert_close(got, cov.expand(2, 3, 3), rtol=1e-6, atol=1e-8)
    assert fn.graphs == {}


def test_bad_arguments_are_named():
    _, logp = _gaussian(3)
    with pytest.raises(ValueError, match="position"):
        hessian_inverse_mass(logp, torch.zeros(3, dtype=F64), True)
    with pytest.raises(ValueError, match="mask"):
        hessian_inverse_mass(logp, torch.zeros(2, 3, dtype=F64), True, mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="init_metric"):
        AdaptationConfig(init_metric="laplace")
    with pytest.raises(ValueError, match="curvature_every"):
        AdaptationConfig(curvature_every=0)
    with pytest.raises(ValueError, match="curvature_weight"):
        AdaptationConfig(curvature_weight=-1.0)


def _warmup_steps(init_metric, logp, d, seed=3):
    res = sample(NUTS(metric="dense", adaptation=AdaptationConfig(init_metric=init_metric)), logp, dim=d,
                 num_chains=4, num_warmup=150, num_samples=300, generator=torch.Generator().manual_seed(seed),
                 progress=False, warn=False)
    return res, int(res.warmup_info["num_steps"].sum())


def test_curvature_start_cuts_warmup_on_a_badly_scaled_correlated_gaussian():
    d = 8
    cov, logp = _gaussian(d, scales=torch.logspace(-1.5, 0.5, d, dtype=F64))  # sds 0.03 .. 3, correlated
    res_h, steps_h = _warmup_steps("hessian", logp, d)
    _, steps_i = _warmup_steps("identity", logp, d)
    assert steps_h * 3 < steps_i, (steps_h, steps_i)                       # measured ~10x fewer
    x = res_h.draws["x"] if "x" in res_h.draws else next(iter(res_h.draws.values()))
    flat = x.reshape(-1, d)                                               # (C * S, d)
    sd = cov.diagonal().sqrt()
    # means within 5 Monte Carlo standard errors (1200 draws, ESS of NUTS on a Gaussian >= ~1/2 of them)
    assert ((flat.mean(0).abs() / sd) < 5 / math.sqrt(600)).all(), flat.mean(0) / sd
    torch.testing.assert_close(flat.std(0) / sd, torch.ones(d, dtype=F64), rtol=0.15, atol=0)


# the cheap posteriordb cases of test_posteriordb.py, with the curvature start (same tolerances)
@pytest.mark.parametrize("name,kernel,warm,draws", [
    pytest.param("eight_schools_noncentered", NUTS(target_accept=0.95, adaptation=AdaptationConfig(init_metric="hessian")),
                 250, 500, marks=pytest.mark.slow),     # ~45 s eager at target 0.95
    ("kidiq", NUTS(metric="dense", adaptation=AdaptationConfig(init_metric="hessian")), 250, 400),
    ("arK", NUTS(metric="dense", adaptation=AdaptationConfig(init_metric="hessian")), 250, 800),
])
def test_curvature_start_matches_reference_posteriors(name, kernel, warm, draws):
    c = case(name)
    res = sample(kernel, c.model, num_chains=4, num_warmup=warm, num_samples=draws,
                 generator=torch.Generator().manual_seed(1), progress=False)
    _, _, max_rhat = compare_to_reference(c.reported(res.draws), load_reference(c.posterior))
    assert max_rhat < 1.01, f"{name}: max R-hat {max_rhat:.4f}"
    assert res.num_divergent == 0, f"{name}: {res.num_divergent} divergent transitions"


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile on CPU needs a C++ compiler")
def test_curvature_start_on_the_compiled_asynchronous_path():
    # the path benchmarks/mcmc.py measures: curvature evaluated eagerly beside the compiled step
    d = 8
    cov, logp = _gaussian(d, scales=torch.logspace(-1.5, 0.5, d, dtype=F64))
    res = sample(NUTS(metric="dense", adaptation=AdaptationConfig(init_metric="hessian")), logp, dim=d,
                 num_chains=4, num_warmup=150, num_samples=300, generator=torch.Generator().manual_seed(3),
                 progress=False, warn=False, compile=True)
    assert res.timings["compile_s"] > 0                                   # the compiled step ran
    # exact curvature from the start: a few leapfrogs per iteration (Stan's identity start: ~127 here)
    assert float(res.warmup_info["num_steps"].double().mean()) < 20
    flat = next(iter(res.draws.values())).reshape(-1, d)
    sd = cov.diagonal().sqrt()
    assert ((flat.mean(0).abs() / sd) < 5 / math.sqrt(600)).all(), flat.mean(0) / sd
    torch.testing.assert_close(flat.std(0) / sd, torch.ones(d, dtype=F64), rtol=0.15, atol=0)
