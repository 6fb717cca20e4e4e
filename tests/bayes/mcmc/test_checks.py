"""Loud diagnostics (arrcoc.bayes.mcmc.checks): after a run ``sample`` warns, one line each with the
numbers, about divergences, max tree depth, R-hat, ESS, a far chain mean, a chain stuck at the end of
warmup and runaway (improper) draws; ``MCMCResult`` keeps the findings and numbers; ``warn=False``
silences.  Each check is shown to fire on a run built to trip it and to stay quiet on a clean run."""
import math
import warnings

import pytest
import torch

from arrcoc.bayes.mcmc import (HMC, NUTS, RWMH, DiagnosticsConfig, MCMCDiagnosticWarning, MCMCWarning,
                               RunDiagnostics, sample)
from arrcoc.bayes.mcmc.checks import diagnose, stuck_chains


def std_normal(x):
    return -0.5 * (x * x).sum(-1)


def improper(x):
    """x[:, 1] has no prior and no likelihood: the posterior is improper in that direction."""
    return -0.5 * x[:, 0] ** 2


def _kinds(res):
    return {w.kind for w in res.warnings}


def test_clean_run_gives_no_warning_and_readable_diagnostics():
    with warnings.catch_warnings():
        warnings.simplefilter("error", MCMCDiagnosticWarning)
        res = sample(NUTS(), std_normal, dim=2, num_chains=4, num_warmup=300, num_samples=500,
                     generator=torch.Generator().manual_seed(0), progress=False)
    assert res.warnings == []
    d = res.diagnostics
    assert isinstance(d, RunDiagnostics) and d.num_divergent == 0 and d.num_max_depth == 0
    assert 1.0 <= d.max_rhat < 1.01 and d.min_ess_bulk > 400 and d.min_ess_tail > 400
    assert len(d.warmup_logdensity) == 4 and d.stuck_chains == [] and d.runaway_coordinates == []
    assert "max R-hat" in str(d) and "min bulk ESS" in str(d)


def test_short_run_warns_with_numbers_and_warn_false_silences():
    kw = dict(dim=3, num_chains=4, num_warmup=20, num_samples=20, progress=False)
    with pytest.warns(MCMCDiagnosticWarning) as record:
        res = sample(NUTS(), std_normal, generator=torch.Generator().manual_seed(0), **kw)
    assert {"ess_bulk", "ess_tail"} <= _kinds(res)
    messages = [str(r.message) for r in record]
    assert messages == [w.message for w in res.warnings]              # one warning per finding, same text
    ess_bulk = next(w for w in res.warnings if w.kind == "ess_bulk")
    assert f"{res.diagnostics.min_ess_bulk:.1f}" in ess_bulk.message and "\n" not in ess_bulk.message
    with warnings.catch_warnings():
        warnings.simplefilter("error", MCMCDiagnosticWarning)
        quiet = sample(NUTS(), std_normal, generator=torch.Generator().manual_seed(0), warn=False, **kw)
    assert [w.kind for w in quiet.warnings] == [w.kind for w in res.warnings]   # still kept in the result
    with pytest.raises(TypeError, match="warn"):
        sample(NUTS(), std_normal, generator=torch.Generator(), warn="no", **kw)


def test_divergences_are_reported():
    def cliff(x):                                   # NaN beyond |x| > 1.5: every crossing diverges
        lp = -0.5 * (x * x).sum(-1)
        return torch.where(x.abs().max(-1).values > 1.5, torch.full_like(lp, math.nan), lp)
    res = sample(HMC(num_steps=10, step_size=0.9), cliff, dim=2, num_chains=4, num_warmup=0, num_samples=200,
                 generator=torch.Generator().manual_seed(1), progress=False, warn=False,
                 init=torch.zeros(2, dtype=torch.float64))
    div = next(w for w in res.warnings if w.kind == "divergences")
    assert res.num_divergent > 0 and res.diagnostics.num_divergent == res.num_divergent
    assert f"{res.num_divergent} of 800 draws" in div.message


def test_max_tree_depth_hits_are_reported():
    res = sample(NUTS(max_tree_depth=2, step_size=0.05, adaptation=__import__("arrcoc").bayes.mcmc.AdaptationConfig(
        adapt_step_size=False)), std_normal, dim=2, num_chains=2, num_warmup=10, num_samples=100,
        generator=torch.Generator().manual_seed(2), progress=False, warn=False)
    hits = int((res.info["tree_depth"] >= 2).sum())
    assert hits > 150 and res.diagnostics.num_max_depth == hits
    assert any(w.kind == "max_tree_depth" and f"{hits} of 200 draws" in w.message for w in res.warnings)
    assert RWMH().max_depth_hits(res.info) is None                  # kernels without a length cap


def test_stuck_chain_at_the_end_of_warmup_is_reported():
    """Two narrow modes 60 sds apart, the minor one 40 nats lower: a chain started there cannot leave
    (its step size adapts to the mode's width, so no trajectory reaches the other)."""
    def two_modes(x):
        major = -0.5 * (((x - 3.0) / 0.1) ** 2).sum(-1)
        minor = -0.5 * (((x + 3.0) / 0.1) ** 2).sum(-1) - 40.0
        return torch.logaddexp(major, minor)
    init = torch.tensor([[3.0, 3.0], [3.0, 3.0], [-3.0, -3.0], [3.0, 3.0]], dtype=torch.float64)
    with pytest.warns(MCMCDiagnosticWarning) as record:
        res = sample(NUTS(), two_modes, dim=2, num_chains=4, num_warmup=200, num_samples=200, init=init,
                     generator=torch.Generator().manual_seed(3), progress=False)
    assert any("stuck" in str(r.message) for r in record)
    stuck = next(w for w in res.warnings if w.kind == "stuck_chain")
    assert stuck.chains == (2,) and res.diagnostics.stuck_chains == [2]
    lp = res.diagnostics.warmup_logdensity
    assert lp[2] < min(lp[0], lp[1], lp[3]) - 30 and f"{lp[2]:.2f}" in stuck.message
    assert {"rhat", "chain_mean"} <= _kinds(res)
    assert any(w.kind == "chain_mean" and w.chains == (2,) for w in res.warnings)


def test_stuck_chains_needs_a_real_gap():
    g = torch.Generator().manual_seed(4)
    lp = torch.randn(4, 100, generator=g, dtype=torch.float64) - 10.0      # same region: none flagged
    means, flagged, _ = stuck_chains(lp, DiagnosticsConfig())
    assert flagged == [] and means.shape == (4,)
    lp[1] -= 8.0                                                            # 8 sds below the others
    assert stuck_chains(lp, DiagnosticsConfig())[1] == [1]
    assert stuck_chains(lp, DiagnosticsConfig(stuck_logdensity_sd=10.0))[1] == []
    assert stuck_chains(lp[:1], DiagnosticsConfig())[1] == []               # one chain: nothing to compare


@pytest.mark.parametrize("kernel", [HMC(num_steps=8), RWMH()])
def test_improper_posterior_runaway_is_reported(kernel):
    """The issue's case: a parameter with no prior drifts without bound, 0 divergences, no warning."""
    res = sample(kernel, improper, dim=2, num_chains=4, num_warmup=200, num_samples=200,
                 generator=torch.Generator().manual_seed(0), progress=False, warn=False)
    assert res.num_divergent == 0
    runaway = next(w for w in res.warnings if w.kind == "runaway")
    assert res.diagnostics.runaway_coordinates == [1]                 # the flat direction only
    assert "improper" in runaway.message and "coordinate 1" in runaway.message
    assert "rhat" in _kinds(res)


@pytest.mark.slow  # ~16 s; the HMC / RWMH runaway cases above stay in the default run
def test_improper_posterior_with_nuts_hits_max_depth_and_runs_away():
    res = sample(NUTS(max_tree_depth=6), improper, dim=2, num_chains=4, num_warmup=150, num_samples=200,
                 generator=torch.Generator().manual_seed(0), progress=False, warn=False)
    assert {"runaway", "max_tree_depth", "rhat"} <= _kinds(res)


def test_diagnose_handles_constant_and_non_finite_parameters():
    C, S = 2, 50
    g = torch.Generator().manual_seed(5)
    draws = {"a": torch.randn(C, S, generator=g, dtype=torch.float64), "c": torch.ones(C, S, dtype=torch.float64),
             "bad": torch.full((C, S), math.inf, dtype=torch.float64)}
    diag, found = diagnose(draws, torch.randn(C, S, 3, generator=g, dtype=torch.float64), {}, None, None,
                           DiagnosticsConfig())
    assert any(w.kind == "non_finite" and "bad" in w.message for w in found)
    assert math.isfinite(diag.max_rhat) and diag.max_rhat_parameter in ("a", "c")
    assert isinstance(found[0], MCMCWarning) and str(found[0]) == found[0].message


@pytest.mark.parametrize("field,value", [("max_rhat", 1.0), ("min_ess_per_chain", -1.0), ("chain_mean_sd", 0.0),
                                         ("stuck_logdensity_sd", math.nan), ("stuck_window", 1.5),
                                         ("runaway_variance_ratio", -0.1)])
def test_diagnostics_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        DiagnosticsConfig(**{field: value})
