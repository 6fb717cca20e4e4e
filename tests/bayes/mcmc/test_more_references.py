"""Compiled (asynchronous) NUTS, the path benchmarks/mcmc.py measures, against reference posteriors
beyond eight schools: posteriordb's arK (an AR(5) time series, dense metric) and a Gaussian-process
Poisson regression whose log density takes a Cholesky factor at every evaluation (reference: NumPyro's
NUTS on the same data, tests/data/gp_poisson).  Every reported quantity's mean and sd within 4 x the
combined MCSE of both sides, max R-hat < 1.01, no divergences.  Both GP runs are slow (~50 batched
Choleskys and their gradients per draw: ~2 min compiled, ~6 min eager lock-step on a 2-core box); the
default suite checks the vendored GP data and reference against the model.
"""
import json
import shutil

import pytest
import torch

from arrcoc.bayes.mcmc import NUTS, sample

from ..gp_models import GP_DIR, kernel_cholesky, gp_poisson, latent_f, load_gp_data, load_gp_reference
from ..posteriordb_models import case, load_reference
from ._checks import compare_to_reference

pytestmark = pytest.mark.filterwarnings("ignore::arrcoc.bayes.mcmc.MCMCDiagnosticWarning")
needs_cxx = pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                               reason="torch.compile on CPU needs a C++ compiler")


def _check(c, res, ref):
    z_mean, z_sd, max_rhat = compare_to_reference(c.reported(res.draws), ref)
    assert max_rhat < 1.01, f"max R-hat {max_rhat:.4f}"
    assert res.num_divergent == 0, f"{res.num_divergent} divergent transitions"
    return z_mean, z_sd


@needs_cxx
def test_compiled_async_nuts_matches_arK_reference():
    c = case("arK")
    res = sample(NUTS(metric="dense"), c.model, num_chains=4, num_warmup=250, num_samples=800,
                 generator=torch.Generator().manual_seed(1), progress=False, compile=True)
    assert res.timings["compile_s"] > 0                      # the compiled step ran, not a fallback
    _check(c, res, load_reference(c.posterior))


@needs_cxx
@pytest.mark.slow          # ~2 min on the 2-core box (8 chains x 500 iterations x ~50 leapfrog steps)
def test_compiled_async_nuts_matches_gp_poisson_reference():
    # 8 chains: the asynchronous step advances every chain at once at about the cost of one, and
    # 4 x 400 draws left max R-hat at 1.016 (rho and alpha mix slowly: ~50 leapfrog steps per draw)
    c = gp_poisson()
    res = sample(NUTS(), c.model, num_chains=8, num_warmup=200, num_samples=300,
                 generator=torch.Generator().manual_seed(1), progress=False, compile=True)
    assert res.timings["compile_s"] > 0
    _check(c, res, load_gp_reference())


@pytest.mark.slow
def test_lockstep_nuts_matches_gp_poisson_reference():
    c = gp_poisson()
    res = sample(NUTS(), c.model, num_chains=4, num_warmup=250, num_samples=400,
                 generator=torch.Generator().manual_seed(1), progress=False)
    _check(c, res, load_gp_reference())


def test_gp_reference_is_complete_and_consistent_with_the_model():
    """The vendored GP data and reference: 30 points, 10 x 1000 draws of rho, alpha, f[1..30], made
    without trouble (R-hat, ESS in its info), and f = L z of the model agrees with the reference's
    f at the reference's own hyperparameters to the extent that L z can be inverted (f's scale)."""
    x, y = load_gp_data()
    assert x.shape == y.shape == (30,) and bool((y >= 0).all()) and bool((y == y.round()).all())
    ref = load_gp_reference()
    assert set(ref) == {"rho", "alpha"} | {f"f[{i}]" for i in range(1, 31)}
    assert all(v.shape == (10, 1000) for v in ref.values())
    info = json.loads((GP_DIR / "reference_info.json").read_text())
    assert info["max_rhat"] < 1.01 and info["min_n_eff"] > 4000
    # z = L^-1 f recovered from the reference draws maps back through the model's own L to f
    rho, alpha = ref["rho"][:, :20], ref["alpha"][:, :20]                          # (10, 20)
    f = torch.stack([ref[f"f[{i}]"][:, :20] for i in range(1, 31)], -1)            # (10, 20, 30)
    z = torch.linalg.solve_triangular(kernel_cholesky(x, rho, alpha), f.unsqueeze(-1), upper=False).squeeze(-1)
    torch.testing.assert_close(latent_f(x, {"rho": rho, "alpha": alpha, "z": z}), f, rtol=1e-8, atol=1e-8)
    # the reference's z are standard normal-ish (the model's prior on z, updated by 30 counts)
    assert abs(float(z.mean())) < 0.3 and 0.6 < float(z.std()) < 1.4
