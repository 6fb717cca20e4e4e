"""Diagnostics against arviz-stats (and legacy arviz) on the same draws, closed forms, and input checks."""
import doctest
import math
import warnings

import numpy as np
import pytest
import torch

import arrcoc.bayes.diagnostics as diag
from arrcoc.bayes.diagnostics import (Summary, autocorr, autocov, ess, eti, hdi, mcse, rhat,
                                      summary)
from arrcoc.bayes.diagnostics import _array as A
from arrcoc.bayes.diagnostics._special import betainc, betaincinv

azs = pytest.importorskip("arviz_stats.base").array_stats
az = pytest.importorskip("arviz")
scipy_stats = pytest.importorskip("scipy.stats")
scipy_special = pytest.importorskip("scipy.special")

RTOL = 1e-6


def _ar1(rng, shape, phi):
    e = rng.normal(size=shape)
    x = np.empty_like(e)
    x[:, 0] = e[:, 0] / math.sqrt(1 - phi ** 2)
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def _make_cases():
    rng = np.random.default_rng(20261124)
    const = np.concatenate([
        np.full((4, 60, 1), 2.5),  # every draw equal
        np.ones((4, 60, 1)) * np.arange(4)[:, None, None],  # constant chains at different values
        rng.normal(size=(4, 60, 1)),  # an ordinary parameter next to them
    ], axis=-1)
    return {
        "iid": rng.normal(size=(4, 200, 2, 3)),
        "poorly_mixed": rng.normal(size=(4, 200, 2, 2)) + np.arange(4)[:, None, None, None]
        * np.array([0.0, 0.3, 1.0, 3.0]).reshape(2, 2),
        "ar1": _ar1(rng, (4, 300, 2, 2), 0.9),
        "ar1_antithetic": _ar1(rng, (3, 301, 3), -0.6),  # odd draws: split drops the middle one
        "constant": const,
        "ties": rng.integers(0, 3, size=(4, 100, 3)).astype(np.float64),
    }


CASES = _make_cases()


def _close(ours, ref, rtol=RTOL):
    """Relative agreement; NaN must match NaN, and +inf matches any value >= 1e10 (ArviZ's 0/0 can
    come out as 6e15 instead of inf from rounding in np.var of a constant)."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    both_nan = np.isnan(ours) & np.isnan(ref)
    assert not (np.isnan(ours) ^ np.isnan(ref)).any(), (ours, ref)
    huge = np.isposinf(ours) & (ref >= 1e10)
    ok = both_nan | huge | (ours == ref) | np.isclose(ours, ref, rtol=rtol, atol=0)
    assert ok.all(), f"max rel err {np.nanmax(np.abs(ours - ref) / np.abs(ref))}\n{ours}\n{ref}"


def _quiet(fn, *args, **kwargs):
    """Call one of ours and fail on any warning (no warning storms, also for constant input)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def _ref(fn, *args, **kwargs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method", diag.RHAT_METHODS)
def test_rhat_matches_arviz_stats(case, method):
    x = CASES[case]
    ours = _quiet(rhat, torch.from_numpy(x), method=method)
    assert ours.shape == x.shape[2:] and ours.dtype == torch.float64
    _close(ours, _ref(azs.rhat, x, chain_axis=0, draw_axis=1, method=method))


ESS_CALLS = [("bulk", None), ("tail", None), ("tail", 0.1), ("mean", None), ("sd", None),
             ("median", None), ("quantile", 0.3), ("local", (0.2, 0.7)), ("mad", None),
             ("folded", None), ("z_scale", None), ("identity", None)]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method,prob", ESS_CALLS)
def test_ess_matches_arviz_stats(case, method, prob):
    x = CASES[case]
    ours = _quiet(ess, torch.from_numpy(x), method=method, prob=prob)
    ref_prob = 0.05 if (method == "tail" and prob is None) else prob
    _close(ours, _ref(azs.ess, x, chain_axis=0, draw_axis=1, method=method, prob=ref_prob))


@pytest.mark.parametrize("case", ["iid", "ar1", "ar1_antithetic"])
def test_relative_ess_matches_arviz_stats(case):
    x = CASES[case]
    ours = _quiet(ess, torch.from_numpy(x), method="bulk", relative=True)
    _close(ours, _ref(azs.ess, x, chain_axis=0, draw_axis=1, method="bulk", relative=True))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method,prob", [("mean", None), ("sd", None), ("median", None),
                                         ("quantile", 0.1), ("quantile", 0.85)])
def test_mcse_matches_arviz_stats(case, method, prob):
    x = CASES[case]
    ours = _quiet(mcse, torch.from_numpy(x), method=method, prob=prob)
    _close(ours, _ref(azs.mcse, x, chain_axis=0, draw_axis=1, method=method, prob=prob))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("prob", [0.5, 0.89, 0.95])
def test_intervals_match_arviz_stats(case, prob):
    x = CASES[case]
    _close(_quiet(hdi, torch.from_numpy(x), prob), _ref(azs.hdi, x, prob, axis=(0, 1)))
    _close(_quiet(eti, torch.from_numpy(x), prob), _ref(azs.eti, x, prob, axis=(0, 1)))


@pytest.mark.parametrize("case", ["iid", "ar1", "ar1_antithetic"])
def test_autocov_autocorr_match_arviz_stats(case):
    x = CASES[case]
    _close(autocov(torch.from_numpy(x), dim=1), azs.autocov(x, axis=1), rtol=1e-9)
    ours = autocorr(torch.from_numpy(x), dim=1)
    ref = azs.autocorr(x, axis=1)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-9, atol=1e-12)
    assert torch.all(ours[:, 0] == 1)


@pytest.mark.parametrize("case", ["iid", "poorly_mixed", "ar1", "constant"])
def test_matches_legacy_arviz(case):
    """Legacy arviz (0.x) agrees with arviz-stats on everything here except mcse(method="sd"):
    legacy uses the ESS of the squared deviations, arviz-stats (and we) the ESS of the draws."""
    x = CASES[case]
    t = torch.from_numpy(x)
    ds = az.convert_to_dataset(x)
    _close(rhat(t), _ref(az.rhat, ds)["x"].values)
    for method in ("bulk", "tail", "mean", "sd", "median"):
        _close(ess(t, method=method), _ref(az.ess, ds, method=method)["x"].values)
    for method in ("mean", "median"):
        _close(mcse(t, method=method), _ref(az.mcse, ds, method=method)["x"].values)
    _close(hdi(t, 0.94), _ref(az.hdi, ds, hdi_prob=0.94)["x"].values)


def test_legacy_arviz_mcse_sd_disagreement_is_the_ess_choice():
    x = CASES["poorly_mixed"]
    legacy = _ref(az.mcse, az.convert_to_dataset(x), method="sd")["x"].values
    ours = mcse(torch.from_numpy(x), method="sd").numpy()
    # reproduce legacy from its definition with our pieces: ESS of (x - mean)^2 instead of ESS of x
    flat = x.reshape(-1, *x.shape[2:])
    c2 = (x - flat.mean(0)) ** 2
    evar = c2.reshape(flat.shape).mean(0)
    varvar = ((c2 ** 2).reshape(flat.shape).mean(0) - evar ** 2)
    legacy_ours = np.sqrt(varvar / ess(torch.from_numpy(c2), method="mean").numpy() / evar / 4)
    _close(legacy_ours, legacy)
    assert not np.allclose(ours, legacy, rtol=1e-2)  # the two libraries really differ here


def test_constant_inputs_documented_values_without_warnings():
    x = torch.from_numpy(CASES["constant"])  # (4, 60, 3): all equal | chains constant | normal
    r = _quiet(rhat, x)
    assert math.isnan(r[0]) and math.isinf(r[1]) and 0.9 < r[2] < 1.1
    e = _quiet(ess, x)
    assert e[0] == 4 * 60  # constant series: ESS = number of draws (ArviZ's convention)
    assert _quiet(ess, x, relative=True)[0] == 4 * 60  # ... also when relative, as ArviZ
    m = _quiet(mcse, x)
    assert m[0] == 0 and m[1] > 0
    assert math.isnan(_quiet(mcse, x, method="sd")[0])
    assert _quiet(mcse, x, method="median")[0] == 0
    s = _quiet(summary, {"c": x})
    assert math.isnan(s["c[0]"]["r_hat"]) and s["c[0]"]["sd"] == 0


def test_ess_and_autocorr_of_ar1_match_theory():
    """AR(1) with coefficient phi: autocorrelation phi^k and ESS/S = (1 - phi)/(1 + phi)."""
    rng = np.random.default_rng(7)
    phi = 0.5
    x = torch.from_numpy(_ar1(rng, (4, 20000, 2), phi))
    rel = ess(x, method="mean", relative=True)
    assert torch.allclose(rel, torch.full_like(rel, (1 - phi) / (1 + phi)), rtol=0.08)
    ac = autocorr(x, dim=1)[:, :4].mean(dim=(0, 2))
    assert torch.allclose(ac, phi ** torch.arange(4.0, dtype=ac.dtype), atol=0.02)
    iid = torch.from_numpy(rng.normal(size=(4, 5000, 2)))
    assert torch.allclose(ess(iid, relative=True), torch.ones(2, dtype=torch.float64), atol=0.08)


def test_rhat_flags_poor_mixing_and_passes_good_mixing():
    r = rhat(torch.from_numpy(CASES["poorly_mixed"]))  # chain offsets 0, 0.3, 1, 3
    assert r[0, 0] < 1.02 and r[1, 1] > 1.5


def test_hdi_and_eti_closed_forms():
    # draws at the exact quantiles of Exp(1): HDI starts at 0, ETI is the (1-p)/2 quantile pair
    s = 40000
    u = (torch.arange(s, dtype=torch.float64) + 0.5) / s
    x = (-torch.log1p(-u)).reshape(4, s // 4)[..., None]  # (4, S/4, 1)
    p = 0.9
    h = hdi(x, p)[0]
    assert abs(h[0]) < 1e-3 and abs(h[1] - (-math.log(1 - p))) < 1e-3
    e = eti(x, p)[0]
    exact = [-math.log(1 - 0.05), -math.log(0.05)]
    assert abs(e[0] - exact[0]) < 1e-3 and abs(e[1] - exact[1]) < 1e-3
    # standard normal quantile draws: HDI = ETI = +-1.6449 for p = 0.9
    z = torch.special.ndtri(u).reshape(4, s // 4)
    assert torch.allclose(hdi(z, p), torch.tensor([-1.6449, 1.6449], dtype=torch.float64), atol=1e-3)


def test_axes_dtypes_and_chunking(monkeypatch):
    x = torch.from_numpy(CASES["ar1"])  # (4, 300, 2, 2)
    ref = rhat(x)
    moved = x.permute(3, 1, 2, 0)  # (p1, draw, p0, chain)
    assert torch.equal(rhat(moved, chain_axis=-1, draw_axis=1), ref.T)
    r32 = rhat(x.float())
    assert r32.dtype == torch.float32 and torch.allclose(r32.double(), ref, rtol=1e-5)
    assert ess(x[:, :, 0, 0]).shape == ()  # scalar parameter
    ints = torch.from_numpy(CASES["ties"]).long()
    assert ess(ints).dtype == torch.get_default_dtype()
    torch.testing.assert_close(ess(ints).double(), ess(ints.double()), rtol=1e-6, atol=0)
    half = rhat(x.to(torch.bfloat16))
    assert half.dtype == torch.float32
    torch.testing.assert_close(half.double(), rhat(x.to(torch.bfloat16).double()), rtol=1e-6, atol=0)
    unchunked = summary({"a": x}).values
    monkeypatch.setattr(A, "CHUNK_ELEMENTS", 700)  # one parameter per chunk
    torch.testing.assert_close(rhat(x), ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(summary({"a": x}).values, unchunked, rtol=1e-12, atol=0)


def test_single_chain_ess_and_mcse_match_arviz_stats():
    x = CASES["ar1"][:1]
    _close(ess(torch.from_numpy(x)), _ref(azs.ess, x, 0, 1, method="bulk"))
    _close(ess(torch.from_numpy(x), method="identity"), _ref(azs.ess, x, 0, 1, method="identity"))
    _close(mcse(torch.from_numpy(x)), _ref(azs.mcse, x, 0, 1, method="mean"))
    assert torch.isnan(summary(torch.from_numpy(x)).column("r_hat")).all()


def test_summary_columns_equal_the_functions():
    x = torch.from_numpy(CASES["ar1_antithetic"])  # odd number of draws
    mu = torch.from_numpy(CASES["iid"])[:, :-1, 0, 0].contiguous()  # (4, 199) scalar
    s = summary({"theta": x, "mu": mu}, prob=0.8)
    assert isinstance(s, Summary)
    assert s.names == ("theta[0]", "theta[1]", "theta[2]", "mu")
    assert s.columns == ("mean", "sd", "hdi80_lb", "hdi80_ub", "mcse_mean", "mcse_sd", "ess_bulk",
                         "ess_tail", "r_hat")
    for var, t in (("theta", x), ("mu", mu)):
        rows = [i for i, n in enumerate(s.names) if n.startswith(var)]
        got = s.values[rows]
        flat = t.reshape(-1, *t.shape[2:])
        expect = torch.stack([
            flat.mean(0), flat.std(0), hdi(t, 0.8)[..., 0], hdi(t, 0.8)[..., 1], mcse(t),
            mcse(t, method="sd"), ess(t), ess(t, method="tail"), rhat(t)], dim=-1).reshape(-1, 9)
        torch.testing.assert_close(got, expect, rtol=1e-12, atol=0)
    se = summary({"theta": x}, interval="eti", prob=0.9, var_names=["theta"])
    torch.testing.assert_close(se.values[:, 2:4], eti(x, 0.9), rtol=1e-12, atol=0)
    assert se.columns[2:4] == ("eti90_lb", "eti90_ub")
    d = s.to_dict()
    assert list(d) == list(s.names) and d["mu"]["mean"] == pytest.approx(float(mu.mean()))
    assert s["theta[1]"]["r_hat"] == d["theta[1]"]["r_hat"]
    torch.testing.assert_close(s.column("ess_bulk")[:3], ess(x))


def test_summary_str_is_an_aligned_table():
    s = summary({"theta": torch.from_numpy(CASES["iid"]), "c": torch.from_numpy(CASES["constant"])})
    lines = str(s).splitlines()
    assert len(lines) == 1 + 6 + 3
    assert len({len(line) for line in lines}) == 1  # every row equally wide
    assert lines[0].split() == list(s.columns)
    assert lines[1].startswith("theta[0,0] ") and "nan" in lines[-3]
    for name, line in zip(s.names, lines[1:]):
        assert line.split()[0] == name
        assert float(line.split()[-1]) == pytest.approx(s[name]["r_hat"], abs=1e-3, nan_ok=True)


def test_summary_matches_legacy_arviz_summary():
    x = CASES["ar1"]
    s = summary({"x": torch.from_numpy(x)}, prob=0.94)
    ref = _ref(az.summary, az.convert_to_dataset(x), hdi_prob=0.94, round_to="none")
    ours = {"mean": "mean", "sd": "sd", "hdi94_lb": "hdi_3%", "hdi94_ub": "hdi_97%",
            "mcse_mean": "mcse_mean", "ess_bulk": "ess_bulk", "ess_tail": "ess_tail",
            "r_hat": "r_hat"}
    for col, ref_col in ours.items():
        _close(s.column(col), ref[ref_col].to_numpy())
    _close(s.column("mcse_sd"), _ref(azs.mcse, x, 0, 1, method="sd").reshape(-1))


@pytest.mark.parametrize("fn,kwargs", [(rhat, {}), (ess, {}), (mcse, {}), (summary, {})])
def test_input_validation(fn, kwargs):
    good = torch.randn(4, 50, 2)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fn(torch.randn(50), **kwargs)
    with pytest.raises(ValueError, match="draw"):
        fn(torch.randn(4, 3, 2), **kwargs)
    bad = good.clone()
    bad[1, 7, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fn(bad, **kwargs)
    bad[1, 7, 0] = float("inf")
    with pytest.raises(ValueError, match="infinite"):
        fn(bad, **kwargs)
    with pytest.raises(TypeError):
        fn([[1.0, 2.0]], **kwargs)
    if fn is not summary:
        with pytest.raises(ValueError, match="chain_axis"):
            fn(good, chain_axis=1, draw_axis=1)
        with pytest.raises(ValueError, match="method"):
            fn(good, method="nope")


def test_validation_messages_name_the_argument():
    good = torch.randn(4, 50, 2)
    with pytest.raises(ValueError, match=r"`x` has 1 chain.*rhat needs at least 2"):
        rhat(torch.randn(1, 50, 2))
    with pytest.raises(ValueError, match="`x` has 3 draw"):
        ess(torch.randn(2, 3))
    with pytest.raises(ValueError, match="`prob`"):
        ess(good, method="quantile")
    with pytest.raises(ValueError, match="`prob`"):
        ess(good, method="local", prob=0.3)
    with pytest.raises(ValueError, match="`prob`"):
        ess(good, method="tail", prob=(0.1, 1.2))
    with pytest.raises(ValueError, match="`prob`"):
        mcse(good, method="quantile", prob=1.5)
    for p in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="`prob`"):
            hdi(good, p)
        with pytest.raises(ValueError, match="`prob`"):
            eti(good, p)
    with pytest.raises(ValueError, match="`var_names`"):
        summary({"a": good}, var_names=["b"])
    with pytest.raises(ValueError, match="`interval`"):
        summary(good, interval="hpd")
    with pytest.raises(ValueError, match=r"draws\['a'\]"):
        summary({"a": torch.full((4, 50), float("nan"))})
    with pytest.raises(TypeError, match="real-valued"):
        rhat(torch.randn(4, 50, dtype=torch.complex64))


def test_beta_quantile_function_matches_scipy():
    a = torch.tensor([1.0, 2.5, 30.0, 401.0, 3600.0, 2.0e4], dtype=torch.float64)
    b = torch.tensor([1.0, 7.0, 3.0, 3601.0, 41.0, 1.5e4], dtype=torch.float64)
    q = torch.tensor([0.1586553, 0.5, 0.8413447, 0.01, 0.99], dtype=torch.float64)
    ours = betaincinv(a[:, None], b[:, None], q[None, :])
    ref = scipy_stats.beta.ppf(q.numpy()[None, :], a.numpy()[:, None], b.numpy()[:, None])
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10)
    x = torch.linspace(0.001, 0.999, 7, dtype=torch.float64)
    np.testing.assert_allclose(betainc(a[:, None], b[:, None], x[None, :]).numpy(),
                               scipy_special.betainc(a.numpy()[:, None], b.numpy()[:, None],
                                                     x.numpy()[None, :]), rtol=1e-10, atol=1e-15)


def test_module_doctest():
    assert doctest.testmod(diag).failed == 0


@pytest.mark.gpu
def test_cuda_matches_cpu():
    x = torch.from_numpy(CASES["ar1"])
    xc = x.cuda()
    for fn, kw in ((rhat, {}), (ess, {}), (ess, {"method": "tail"}), (mcse, {"method": "median"}),
                   (hdi, {"prob": 0.9})):
        out = fn(xc, **kw)
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), fn(x, **kw), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(summary(xc).values, summary(x).values, rtol=1e-9, atol=1e-12)
