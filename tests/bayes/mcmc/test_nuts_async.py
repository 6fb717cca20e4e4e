"""Asynchronous NUTS (each chain starts its next draw when its own tree ends) and the compiled step.

The per-chain algorithm must be the lock-step one: same tree-size distribution and acceptance
statistic at a fixed step size, exact Gaussian moments, posteriordb eight schools within MCSE; the
driver must give every chain exactly its draws, thinned, with its own adapted parameters.
"""
import math
import shutil

import pytest
import torch

from arrcoc.bayes.mcmc import NUTS, AdaptationConfig, CompiledLogDensity, sample
from arrcoc.bayes.mcmc.hmc import HMCState, hmc_init
from arrcoc.bayes.mcmc.metrics import identity_metric
from arrcoc.bayes.mcmc.nuts_async import NUTSTreeState, nuts_async_init, nuts_async_step, tree_run, tree_step

from ..posteriordb_models import case, load_reference
from ._checks import assert_moments_exact, compare_to_reference
from .test_hmc_nuts_gaussian import check_cov, gaussian

# short runs check the samplers' numbers; their diagnostics warnings (ESS below 100 per chain, ...)
# are expected here and tested in test_checks.py
pytestmark = pytest.mark.filterwarnings("ignore::arrcoc.bayes.mcmc.MCMCDiagnosticWarning")

HAVE_CXX = any(shutil.which(c) for c in ("g++", "c++", "clang++"))
needs_cxx = pytest.mark.skipif(not HAVE_CXX, reason="torch.compile on CPU needs a C++ compiler")


def std_normal(x):
    return -0.5 * (x * x).sum(-1)


def test_async_tree_statistics_match_lockstep():
    """Fixed step size, no adaptation: the distribution of leapfrog steps per draw, the mean
    acceptance statistic and the moments agree between the two batchings (two-sample chi-square)."""
    runs = {}
    for batching in ("lockstep", "async"):
        runs[batching] = sample(NUTS(step_size=0.45, batching=batching), std_normal, dim=3, num_chains=8,
                                num_warmup=0, num_samples=300, generator=torch.Generator().manual_seed(11),
                                progress=False)
    a, b = (runs[k].info["num_steps"].flatten().long() for k in ("lockstep", "async"))
    top = int(max(a.max(), b.max())) + 1
    ca, cb = torch.bincount(a, minlength=top).double(), torch.bincount(b, minlength=top).double()
    keep = (ca + cb) >= 10                                             # pool sparse bins
    ca = torch.cat([ca[keep], ca[~keep].sum(0, keepdim=True)])
    cb = torch.cat([cb[keep], cb[~keep].sum(0, keepdim=True)])
    ca, cb = ca[(ca + cb) > 0], cb[(ca + cb) > 0]
    n_a, n_b = ca.sum(), cb.sum()
    chi2 = float((((ca / n_a - cb / n_b) ** 2) / (ca + cb) * n_a * n_b).sum())
    dof = ca.numel() - 1
    from scipy.stats import chi2 as chi2_dist
    assert chi2_dist.sf(chi2, dof) > 1e-3, f"tree sizes differ: chi2 {chi2:.1f} on {dof} dof"
    acc_a, acc_b = (runs[k].info["accept_prob"] for k in ("lockstep", "async"))
    se = math.sqrt(float(acc_a.var()) / acc_a.numel() + float(acc_b.var()) / acc_b.numel())
    assert abs(float(acc_a.mean() - acc_b.mean())) < 4 * se
    for res in runs.values():
        assert_moments_exact(res.unconstrained, torch.zeros(3, dtype=torch.float64),
                             torch.ones(3, dtype=torch.float64), label=res.params.step_size[0].item())


def test_async_correlated_gaussian_dense_metric():
    mu, cov, logp = gaussian(6, 0.6, seed=4)
    res = sample(NUTS(metric="dense", batching="async"), logp, dim=6, num_chains=4, num_warmup=200,
                 num_samples=400, generator=torch.Generator().manual_seed(5), progress=False)
    assert_moments_exact(res.unconstrained, mu, cov.diagonal().sqrt(), label="async d=6")
    check_cov(res.unconstrained, cov)
    assert res.num_divergent == 0


def test_async_driver_bookkeeping_thinning_and_reproducibility():
    kw = dict(num_chains=3, num_warmup=40, num_samples=7, thin=2, dim=2, progress=False)
    r1 = sample(NUTS(batching="async"), std_normal, generator=torch.Generator().manual_seed(3), **kw)
    r2 = sample(NUTS(batching="async"), std_normal, generator=torch.Generator().manual_seed(3), **kw)
    assert r1.unconstrained.shape == (3, 7, 2)
    assert torch.equal(r1.unconstrained, r2.unconstrained)
    for name in ("accept_prob", "is_divergent", "energy", "tree_depth", "num_steps", "step_size"):
        assert r1.info[name].shape == (3, 7), name
        assert r1.warmup_info[name].shape == (3, 40), name
    assert r1.info["is_divergent"].dtype == torch.bool
    # every chain samples with its own adapted step size, constant after warmup
    assert torch.equal(r1.info["step_size"], r1.params.step_size[:, None].expand(3, 7))
    assert len(set(r1.params.step_size.tolist())) == 3
    # the warmup step sizes move (dual averaging) and every recorded draw took >= 1 leapfrog step
    assert float(r1.warmup_info["step_size"].std()) > 0
    assert bool((r1.info["num_steps"] >= 1).all())
    # draws are the states the chains were at: each recorded position has the recorded energy's logp
    assert torch.isfinite(r1.info["energy"]).all()


def test_async_step_advances_every_chain_one_leapfrog_step():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    st = nuts_async_init(hmc_init(x, std_normal), max_tree_depth=4)
    metric = identity_metric(5, 4)
    eps = torch.full((5,), 0.3, dtype=torch.float64)
    steps = torch.zeros(5, dtype=torch.float64)
    finished = torch.zeros(5, dtype=torch.long)
    for _ in range(60):
        st, info = nuts_async_step(st, g, std_normal, eps, metric, max_tree_depth=4)
        steps += 1
        finished += info.finished.long()
        # a finished chain's info counts the steps since its previous draw; depth <= max depth
        assert bool((info.tree_depth[info.finished] <= 4).all())
        assert bool((info.num_steps[info.finished] <= 2 ** 4).all())
    assert bool((finished >= 60 // 2 ** 4).all())
    with pytest.raises(ValueError, match="max_tree_depth"):
        nuts_async_step(st, g, std_normal, eps, metric, max_tree_depth=5)


def test_runs_of_leapfrog_steps_stop_when_a_draw_ends():
    """leapfrog_per_call = 3: a call runs until some chain's draw ends (at most 3 steps), so draws and
    tree statistics are those of one-step calls (same per-chain algorithm, no chain idles)."""
    res = sample(NUTS(step_size=0.45, batching="async", leapfrog_per_call=3), std_normal, dim=3, num_chains=8,
                 num_warmup=0, num_samples=250, generator=torch.Generator().manual_seed(12), progress=False)
    assert_moments_exact(res.unconstrained, torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    # leapfrog steps per draw are a tree's sizes (1, 3, 7, ... or a U-turn inside a subtree); with
    # step 0.45 on N(0, I) trees of 3-15 steps dominate
    steps = res.info["num_steps"]
    depth = res.info["tree_depth"]
    assert bool((steps <= 2 ** (depth + 1) - 1).all()) and bool((steps >= 2 ** depth - 1).all())
    assert 3 <= float(steps.mean()) <= 15


def _std_normal_vg(q):
    return std_normal(q), -q


def _tree_inputs(seed):
    """Generator, a fresh tree state of 4 chains on N(0, I_3), identity metric, step 0.4."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    state = nuts_async_init(hmc_init(x, std_normal), max_tree_depth=6)
    return g, state, identity_metric(4, 3), torch.full((4,), 0.4, dtype=torch.float64)


def test_tree_run_stops_after_the_first_finished_draw_and_equals_single_steps():
    """tree_run over L pre-drawn steps = tree_step applied one step at a time up to and including the
    first step where a chain finishes (same state, same info); with no finish it runs all L."""
    g, state, metric, eps = _tree_inputs(3)
    for _ in range(5):                                  # a few calls, from fresh and mid-tree states
        L = 6
        normal = torch.randn(L, 4, 3, generator=g, dtype=torch.float64)
        uniform = torch.rand(L, 4, 3, generator=g, dtype=torch.float64)
        ref, taken = state, 0
        for j in range(L):
            ref, ref_info = tree_step(ref, normal[j], uniform[j], eps, metric.inverse_mass, None, _std_normal_vg, 6,
                                      1000.0)
            taken += 1
            if bool((ref_info[:, 0] > 0).any()):
                break
        out, info = tree_run(state, normal, uniform, eps, metric.inverse_mass, None, _std_normal_vg, 6, 1000.0)
        for a, b in zip(out, ref):
            assert torch.equal(a, b)
        assert torch.equal(info, ref_info)
        assert taken == L or bool((info[:, 0] > 0).any())
        state = out


@needs_cxx
def test_compiled_tree_run_matches_eager():
    """The while_loop graph (compile_graph) gives the eager loop's state and info on the same draws."""
    from arrcoc.bayes.mcmc.compiled import compile_graph
    g, state, metric, eps = _tree_inputs(5)

    def run(position, logdensity, grad, tree, flags, normal, uniform, step_size, inverse_mass):
        out, info = tree_run(NUTSTreeState(position, logdensity, grad, tree, flags), normal, uniform, step_size,
                             inverse_mass, None, _std_normal_vg, 6, 1000.0)
        return (*out, info)
    normal = torch.randn(8, 4, 3, generator=g, dtype=torch.float64)
    uniform = torch.rand(8, 4, 3, generator=g, dtype=torch.float64)
    args = (*state, normal, uniform, eps, metric.inverse_mass)
    graph = compile_graph(run, args)                   # check=True: compares with eager on args itself
    for _ in range(3):
        got, want = graph(*args), run(*args)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        args = (*got[:5], normal, uniform, eps, metric.inverse_mass)


@needs_cxx
def test_tree_run_under_torch_compile_takes_one_step():
    """CompiledLogDensity's last compiled fallback is torch.compile, which refuses the loop operator:
    there tree_run takes exactly one step (tree_step's result), still a valid run for the driver."""
    g, state, metric, eps = _tree_inputs(7)
    normal = torch.randn(8, 4, 3, generator=g, dtype=torch.float64)
    uniform = torch.rand(8, 4, 3, generator=g, dtype=torch.float64)

    def run(*a):
        out, info = tree_run(NUTSTreeState(*a[:5]), a[5], a[6], a[7], a[8], None, _std_normal_vg, 6, 1000.0)
        return (*out, info)
    got = torch.compile(run, fullgraph=True, dynamic=False)(*state, normal, uniform, eps, metric.inverse_mass)
    out, info = tree_step(state, normal[0], uniform[0], eps, metric.inverse_mass, None, _std_normal_vg, 6, 1000.0)
    for a, b in zip(got, (*out, info)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_batching_validation():
    with pytest.raises(ValueError, match="batching"):
        NUTS(batching="parallel")
    with pytest.raises(ValueError, match="leapfrog"):
        NUTS(batching="async", integrator="mclachlan")
    with pytest.raises(ValueError, match="leapfrog_per_call"):
        NUTS(leapfrog_per_call=0)
    with pytest.raises(ValueError, match="pool_chains"):
        NUTS(batching="async", adaptation=AdaptationConfig(pool_chains=True))
    assert not NUTS().is_asynchronous(std_normal)
    assert NUTS().is_asynchronous(CompiledLogDensity(std_normal))
    assert not NUTS(batching="lockstep").is_asynchronous(CompiledLogDensity(std_normal))


@needs_cxx
def test_compiled_async_dense_metric_after_adaptation_stays_compiled():
    """The adapted dense metric's Cholesky factor comes back column-major; the compiled step must
    keep running compiled (no fallback warning) and sample the right Gaussian."""
    import warnings
    mu, cov, logp = gaussian(5, 0.7, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = sample(NUTS(metric="dense"), logp, dim=5, num_chains=4, num_warmup=150, num_samples=300,
                     generator=torch.Generator().manual_seed(9), progress=False, compile=True)
    assert res.timings["compile_s"] > 0
    assert_moments_exact(res.unconstrained, mu, cov.diagonal().sqrt(), label="compiled dense")
    check_cov(res.unconstrained, cov)


@needs_cxx
def test_compiled_async_nuts_matches_eight_schools_reference():
    c = case("eight_schools_noncentered")
    res = sample(NUTS(target_accept=0.95), c.model, num_chains=4, num_warmup=250, num_samples=500,
                 generator=torch.Generator().manual_seed(1), progress=False, compile=True)
    assert res.unconstrained.shape == (4, 500, c.model.dim)
    ref = load_reference(c.posterior)
    _, _, max_rhat = compare_to_reference(c.reported(res.draws), ref)
    assert max_rhat < 1.01
    assert res.num_divergent == 0


@needs_cxx
@pytest.mark.slow
def test_compiled_nuts_with_untraceable_log_density_warns_and_stays_correct():
    """A Python branch on a tensor value cannot be one graph: every compiled tier reports it with a
    warning and the run falls back (to a partly compiled or eager step) with correct draws."""
    def guarded(x):
        if bool((x.abs() > 1e3).any()):            # data-dependent control flow
            return torch.full(x.shape[:1], -math.inf, dtype=x.dtype)
        return std_normal(x)
    with pytest.warns(RuntimeWarning):
        res = sample(NUTS(), guarded, dim=2, num_chains=4, num_warmup=200, num_samples=400,
                     generator=torch.Generator().manual_seed(8), progress=False, compile=True)
    assert_moments_exact(res.unconstrained, torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))


def test_async_step_keeps_the_state_dtype_under_promotion():
    """float32 chains with a float64 step size and float64 data: the arithmetic promotes, the state
    must stay float32 (a compiled graph built for float32 inputs must not be fed float64 next)."""
    mu = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    def logp(x):
        return -0.5 * ((x - mu) ** 2).sum(-1)                         # float64 for float32 x
    x = torch.zeros(4, 3)
    lp = logp(x)
    g = (mu - x).float()
    state = nuts_async_init(HMCState(x, lp.float(), g), max_tree_depth=5)
    gen = torch.Generator().manual_seed(0)
    metric = identity_metric(4, 3, dtype=torch.float32)
    for _ in range(12):
        state, info = nuts_async_step(state, gen, logp, torch.full((4,), 0.3, dtype=torch.float64), metric,
                                      max_tree_depth=5)
        assert {t.dtype for t in state[:4]} == {torch.float32}
        assert info.accept_prob.dtype == torch.float32


@needs_cxx
def test_compiled_async_float32_chains_with_float64_data():
    """The case that broke: compiled, float32 chains, a model closing over float64 data (step sizes
    collapsed to 1e-12 when the float64-promoted state was fed to the float32 graph)."""
    import warnings
    mu = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    sd = torch.tensor([0.5, 1.0, 2.0, 0.2], dtype=torch.float64)

    def logp(x):
        return -0.5 * (((x - mu) / sd) ** 2).sum(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = sample(NUTS(), logp, dim=4, num_chains=4, num_warmup=200, num_samples=400, dtype=torch.float32,
                     generator=torch.Generator().manual_seed(4), progress=False, compile=True)
    assert res.unconstrained.dtype == torch.float32
    assert float(res.info["num_steps"].double().mean()) < 16                 # (was 900+: step size collapsed)
    assert_moments_exact(res.unconstrained.double(), mu, sd, label="compiled float32")
