"""Export of draws to ArviZ InferenceData (arviz optional)."""
import sys

import numpy as np
import pytest
import torch

from arrcoc.bayes.arviz_io import SAMPLE_STATS_RENAMES, to_inference_data

az = pytest.importorskip("arviz")


def _draws(gen):
    return {
        "mu": torch.randn(4, 100, generator=gen, dtype=torch.float64),
        "theta": torch.randn(4, 100, 3, generator=gen, dtype=torch.float64),
    }


def test_round_trip_values_dims_coords_and_groups(gen):
    post = _draws(gen)
    stats = {"is_divergent": torch.zeros(4, 100, dtype=torch.bool),
             "accept_prob": torch.rand(4, 100, generator=gen),
             "energy": torch.randn(4, 100, generator=gen)}
    loglik = {"y": torch.randn(4, 100, 7, generator=gen)}
    obs = {"y": torch.randn(7, generator=gen)}
    idata = to_inference_data(post, sample_stats=stats, log_likelihood=loglik, observed_data=obs,
                              coords={"school": ["a", "b", "c"]},
                              dims={"theta": ["school"], "y": ["obs"]})
    assert isinstance(idata, az.InferenceData)
    assert set(idata.groups()) == {"posterior", "sample_stats", "log_likelihood", "observed_data"}
    np.testing.assert_array_equal(idata.posterior["mu"].values, post["mu"].numpy())
    np.testing.assert_array_equal(idata.posterior["theta"].values, post["theta"].numpy())
    assert idata.posterior["theta"].dims == ("chain", "draw", "school")
    assert list(idata.posterior["theta"].coords["school"].values) == ["a", "b", "c"]
    assert set(idata.sample_stats.data_vars) == {"diverging", "acceptance_rate", "energy"}
    assert idata.sample_stats["diverging"].dtype == bool
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "obs")
    np.testing.assert_array_equal(idata.observed_data["y"].values, obs["y"].numpy())


def test_arviz_functions_run_on_the_export(gen):
    idata = to_inference_data(_draws(gen), log_likelihood={"y": -torch.rand(4, 100, 5,
                                                                              generator=gen)})
    table = az.summary(idata, round_to="none")
    assert list(table.index) == ["mu", "theta[0]", "theta[1]", "theta[2]"]
    from arrcoc.bayes.diagnostics import summary
    # float64 draws: for float32 ArviZ folds |x - median| in float32, we always in float64
    ours = summary(_draws(torch.Generator().manual_seed(20261124)), prob=0.94)
    np.testing.assert_allclose(ours.column("ess_bulk").numpy(), table["ess_bulk"].to_numpy(),
                               rtol=1e-6)
    np.testing.assert_allclose(ours.column("r_hat").numpy(), table["r_hat"].to_numpy(), rtol=1e-6)
    assert np.isfinite(float(az.waic(idata).elpd_waic))


def test_half_precision_grad_and_rename_off(gen):
    post = {"w": torch.randn(2, 50, 2, generator=gen).to(torch.bfloat16),
            "v": torch.randn(2, 50, generator=gen, requires_grad=True)}
    idata = to_inference_data(post, sample_stats={"accept_prob": torch.rand(2, 50, generator=gen)},
                              rename_stats=False)
    assert idata.posterior["w"].dtype == np.float32
    np.testing.assert_array_equal(idata.posterior["w"].values, post["w"].float().numpy())
    np.testing.assert_array_equal(idata.posterior["v"].values, post["v"].detach().numpy())
    assert list(idata.sample_stats.data_vars) == ["accept_prob"]
    assert SAMPLE_STATS_RENAMES["accept_prob"] == "acceptance_rate"


def test_bad_input_raises_naming_the_argument(gen):
    post = _draws(gen)
    with pytest.raises(ValueError, match="`posterior`"):
        to_inference_data({})
    with pytest.raises(ValueError, match="`posterior`"):
        to_inference_data(torch.zeros(4, 100))
    with pytest.raises(ValueError, match=r"`posterior\['b'\]`.*\(chain, draw\)"):
        to_inference_data({"a": torch.zeros(4, 100), "b": torch.zeros(4, 90)})
    with pytest.raises(ValueError, match=r"`posterior\['a'\]` must be shaped"):
        to_inference_data({"a": torch.zeros(100)})
    with pytest.raises(ValueError, match=r"`sample_stats\['lp'\]`"):
        to_inference_data(post, sample_stats={"lp": torch.zeros(4, 99)})
    with pytest.raises(ValueError, match=r"`log_likelihood\['y'\]`"):
        to_inference_data(post, log_likelihood={"y": torch.zeros(3, 100, 2)})
    with pytest.raises(TypeError, match=r"`posterior\['a'\]`"):
        to_inference_data({"a": "not an array"})
    with pytest.raises(TypeError, match="`sample_stats`"):
        to_inference_data(post, sample_stats=[1, 2])
    with pytest.raises(ValueError, match="two entries named 'diverging'"):
        to_inference_data(post, sample_stats={"is_divergent": torch.zeros(4, 100),
                                              "diverging": torch.zeros(4, 100)})
    with pytest.raises(TypeError, match="`dims`"):
        to_inference_data(post, dims=["theta"])


def test_missing_arviz_raises_import_error_with_install_hint(monkeypatch, gen):
    monkeypatch.setitem(sys.modules, "arviz", None)  # makes `import arviz` raise ImportError
    with pytest.raises(ImportError, match=r"pip install arrcoc\[arviz\]"):
        to_inference_data(_draws(gen))
