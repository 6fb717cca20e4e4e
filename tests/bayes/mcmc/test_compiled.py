"""Compiled log densities and graphs (arrcoc.bayes.mcmc.compiled): exact agreement with eager
autograd, the fallbacks and their warnings, and the SIMD decision (``CompileConfig.vectorize``)."""
import math
import shutil

import pytest
import torch

from arrcoc.bayes.mcmc import HMC, NUTS, CompileConfig, CompiledLogDensity, compile_logdensity, sample, value_and_grad
from arrcoc.bayes.mcmc.compiled import compile_graph, largest_numel

from ..posteriordb_models import case
from ._checks import assert_moments_exact
from .test_hmc_nuts_gaussian import check_cov, gaussian

# short runs check the samplers' numbers; their diagnostics warnings (ESS below 100 per chain, ...)
# are expected here and tested in test_checks.py
pytestmark = pytest.mark.filterwarnings("ignore::arrcoc.bayes.mcmc.MCMCDiagnosticWarning")

HAVE_CXX = any(shutil.which(c) for c in ("g++", "c++", "clang++"))
needs_cxx = pytest.mark.skipif(not HAVE_CXX, reason="torch.compile on CPU needs a C++ compiler")


def std_normal(x):
    return -0.5 * (x * x).sum(-1)


def test_compile_config_validation_and_simd_rule():
    assert CompileConfig().wants_simd(16383) is False
    assert CompileConfig().wants_simd(16384) is True
    assert CompileConfig(vectorize_min_numel=10).wants_simd(10) is True
    assert CompileConfig(vectorize=True).wants_simd(1) is True
    assert CompileConfig(vectorize=False).wants_simd(10 ** 9) is False
    with pytest.raises(ValueError, match="mode must be None or one of"):
        CompileConfig(mode="fastest")
    with pytest.raises(TypeError, match="vectorize"):
        CompileConfig(vectorize="yes")
    with pytest.raises(ValueError, match="vectorize_min_numel"):
        CompileConfig(vectorize_min_numel=-1)
    with pytest.raises(TypeError, match="strict"):
        CompileConfig(strict=1)
    with pytest.raises(TypeError, match="unknown compile option"):
        CompiledLogDensity(std_normal, vectorise=True)
    with pytest.raises(TypeError, match="CompileConfig"):
        CompiledLogDensity(std_normal, {"vectorize": True})
    fn = CompiledLogDensity(std_normal, CompileConfig(vectorize=True), strict=True)   # keywords override
    assert fn.config == CompileConfig(vectorize=True, strict=True) and fn.strict and fn.mode is None
    assert compile_logdensity(fn) is fn


def test_largest_numel_counts_inputs_intermediates_and_constants():
    from torch.fx.experimental.proxy_tensor import make_fx
    data = torch.ones(50, 7, dtype=torch.float64)                      # closure constant: 350
    x = torch.zeros(3, 7, dtype=torch.float64)

    def f(x):
        return ((x[:, None, :] * x[None, :, :]).sum(-1),)              # intermediate (3, 3, 7): 63
    gm = make_fx(f, tracing_mode="fake", _allow_non_fake_inputs=True)(x)
    assert largest_numel(gm, (x,)) == 63

    def g(x):
        return ((x @ data.T).sum(-1),)
    gm = make_fx(g, tracing_mode="fake", _allow_non_fake_inputs=True)(x)
    assert largest_numel(gm, (x,)) == 350


@needs_cxx
def test_compile_graph_scalar_and_simd_agree_with_eager():
    """A small graph is built without SIMD by default, a forced SIMD one and a large one with it;
    all three give eager's numbers."""
    g = torch.Generator().manual_seed(0)
    big = torch.randn(20000, dtype=torch.float64, generator=g)
    x = torch.randn(4, 6, dtype=torch.float64, generator=g)

    def small(x):
        return (torch.log1p(x * x).sum(-1), torch.exp(-x).cumsum(-1))

    def large(x):
        return ((x.sum(-1, keepdim=True) * big).sin().sum(-1),)
    for f, cfg, want in ((small, CompileConfig(), False), (small, CompileConfig(vectorize=True), True),
                         (large, CompileConfig(), True), (large, CompileConfig(vectorize=False), False)):
        graph = compile_graph(f, (x,), config=cfg)
        assert graph.vectorized is want, (f.__name__, cfg)
        for a, b in zip(graph(x), f(x)):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert compile_graph(small, (x,)).largest_numel == 24


@needs_cxx
def test_scalar_compile_first_does_not_disable_simd_for_later_graphs():
    """Inductor caches the usable SIMD ISAs per process under the config of their first lookup;
    a scalar compile must not leave that cache empty for later vectorised graphs."""
    from torch._inductor import cpu_vec_isa
    usable = list(cpu_vec_isa.valid_vec_isa_list())                       # under the default config
    cpu_vec_isa.valid_vec_isa_list.cache_clear()
    x = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    compile_graph(lambda x: (x.exp().sum(-1),), (x,), config=CompileConfig(vectorize=False))
    assert cpu_vec_isa.valid_vec_isa_list.cache_info().currsize == 0      # forgotten, not cached empty
    assert list(cpu_vec_isa.valid_vec_isa_list()) == usable               # later graphs see the same ISAs


@needs_cxx
def test_compiled_value_and_grad_matches_eager_and_caches_per_layout():
    c = case("kidiq")
    fn = CompiledLogDensity(c.model.logdensity)
    x = torch.randn(4, c.model.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lp_c, g_c = value_and_grad(fn, x)
    lp_e, g_e = value_and_grad(c.model.logdensity, x)
    torch.testing.assert_close(lp_c, lp_e, rtol=1e-10, atol=1e-8)
    torch.testing.assert_close(g_c, g_e, rtol=1e-10, atol=1e-8)
    assert fn.fallback_reason is None and len(fn.graphs) == 1
    value_and_grad(fn, x + 1)                                     # same layout: no new graph
    assert len(fn.graphs) == 1
    lp3, g3 = value_and_grad(fn, x[:3])                            # new batch shape: its own graph
    assert len(fn.graphs) == 2
    torch.testing.assert_close(g3, g_e[:3], rtol=1e-10, atol=1e-8)
    assert fn.compile_seconds > 0


@needs_cxx
def test_compiled_falls_back_with_a_warning_and_strict_raises():
    def data_dependent(x):                       # Python branch on a value: not one graph
        if float(x.sum()) > 0:
            return -0.5 * (x * x).sum(-1)
        return -(x * x).sum(-1)
    x = torch.ones(2, 3, dtype=torch.float64)
    fn = CompiledLogDensity(data_dependent)
    with pytest.warns(RuntimeWarning, match="could not be traced"):
        lp, g = value_and_grad(fn, x)
    torch.testing.assert_close(g, -x)
    torch.testing.assert_close(lp, torch.full((2,), -1.5, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="torch.compile failed"):
        CompiledLogDensity(data_dependent, strict=True).value_and_grad(x)
    with pytest.raises(TypeError, match="callable"):
        CompiledLogDensity(3)
    with pytest.raises(TypeError, match="compile"):
        sample(NUTS(), std_normal, dim=2, num_chains=2, num_warmup=0, num_samples=1,
               generator=torch.Generator(), compile="yes")


@needs_cxx
def test_compiled_hmc_lockstep_samples_the_gaussian():
    """HMC (lock-step) with ``compile=CompileConfig(...)`` runs on the guard-free value-and-gradient
    graph and recovers the moments of a correlated Gaussian."""
    import warnings
    mu, cov, logp = gaussian(4, 0.5, seed=3)
    fn = CompiledLogDensity(logp, vectorize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = sample(HMC(num_steps=10), fn, dim=4, num_chains=4, num_warmup=300, num_samples=600,
                     generator=torch.Generator().manual_seed(3), progress=False)
    assert [g.vectorized for g in fn.graphs.values()] == [False]
    assert res.timings["compile_s"] > 0
    assert_moments_exact(res.unconstrained, mu, cov.diagonal().sqrt(), label="compiled HMC")
    check_cov(res.unconstrained, cov)


@needs_cxx
def test_compiled_logdensity_reused_across_runs_compiles_once():
    """``sample(..., compile=compile_logdensity(model))`` keeps the graphs: the second run on the same
    model and chain count compiles nothing, reports 0 s, and still returns constrained named draws."""
    from torch.distributions import constraints

    from arrcoc.bayes.mcmc import Model
    y = torch.tensor([1.2, 0.4, 2.2, 1.6, 0.9], dtype=torch.float64)

    def log_joint(v):
        mu, sigma = v["mu"][..., 0], v["sigma"][..., 0]                # (C,)
        return (torch.distributions.Normal(mu[:, None], sigma[:, None]).log_prob(y).sum(-1)
                - 0.5 * mu ** 2 - sigma)
    model = Model(log_joint, {"mu": (1, None), "sigma": (1, constraints.positive)})
    fn = compile_logdensity(model, vectorize=False)
    kw = dict(num_chains=4, num_warmup=100, num_samples=100, progress=False, compile=fn)
    r1 = sample(NUTS(), model, generator=torch.Generator().manual_seed(0), **kw)
    kernels = dict(fn._kernels)
    r2 = sample(NUTS(), model, generator=torch.Generator().manual_seed(0), **kw)
    assert r1.timings["compile_s"] > 0 and r2.timings["compile_s"] == 0
    assert fn._kernels == kernels                                       # no new graph built
    torch.testing.assert_close(r2.draws["sigma"], r1.draws["sigma"])    # same seed, same graph: same draws
    assert bool((r2.draws["sigma"] > 0).all())
    other = Model(log_joint, {"mu": (1, None), "sigma": (1, constraints.positive)})
    with pytest.raises(ValueError, match="another function"):
        sample(NUTS(), other, generator=torch.Generator(), **kw)
    with pytest.raises(ValueError, match="already a CompiledLogDensity"):
        sample(NUTS(), fn, dim=2, generator=torch.Generator(), **kw)


def test_compiled_cholesky_failure_gives_nan_and_the_graph_is_cacheable():
    """torch.linalg.cholesky raises on a matrix that is not positive definite; in a compiled graph the
    factor of such a row is NaN instead (so a sampler sees log density -inf, a divergence), the
    others are the eager values, and the graph has no side effect left (inductor can cache it)."""
    from torch._dynamo.utils import counters

    from arrcoc.bayes.mcmc.compiled import _nan_for_linalg_errors
    from torch.fx.experimental.proxy_tensor import make_fx
    base = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)

    def f(x):                                                       # x (C, 1): K = base + x * off-diagonal
        K = base + x[:, :, None] * torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        L = torch.linalg.cholesky(K)                                # (C, 2, 2)
        return (L.diagonal(dim1=-2, dim2=-1).log().sum(-1),)
    x = torch.tensor([[0.0], [0.5], [5.0]], dtype=torch.float64)   # row 2: off-diagonal 6 > 2, not PD
    gm = make_fx(f, tracing_mode="fake", _allow_non_fake_inputs=True)(x)
    assert _nan_for_linalg_errors(gm) == 1
    assert not any(n.target is torch.ops.aten._linalg_check_errors.default for n in gm.graph.nodes)
    out = gm(x)[0]
    want = f(x[:2])[0]
    torch.testing.assert_close(out[:2], want)
    assert bool(out[2].isnan())
    with pytest.raises(torch.linalg.LinAlgError):
        f(x)                                                       # eager keeps raising
    bypass = counters["inductor"]["fxgraph_cache_bypass"]
    g = compile_graph(lambda x: (f(x)[0].nan_to_num(nan=-math.inf),), (x,), check=False)   # eager raises
    got = g(x)[0]
    torch.testing.assert_close(got[:2], want)
    assert float(got[2]) == -math.inf
    assert counters["inductor"]["fxgraph_cache_bypass"] == bypass   # not refused by the FX graph cache
