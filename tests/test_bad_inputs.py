"""Bad-input property suite over every public name of arrcoc (issue 14).

``test_every_public_name_has_a_case`` walks every public module (``pkgutil``; private ``_*`` modules
skipped), collects every name in every ``__all__`` and requires a bad-input case for each callable
(functions and class constructors) unless it is in an explicit exemption list with its reason (result
types, state containers, constants). ``test_bad_input`` runs each case: hypothesis draws bad values
(NaN, inf, negative, wrong dtype / shape / type, empty, non-integer) and the call must raise a
``TypeError`` / ``ValueError`` naming the argument, or return a finite value in range. The CLI cases
(``tests/bad_inputs/cli_cases.py``) require a one-line error and no traceback.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import math
import pkgutil
import signal
import warnings

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import arrcoc
from tests.bad_inputs import Case, resolve
from tests.bad_inputs import (adapter_cases, bayes_cases, cli_cases, mcmc_cases, qwen_vl_cases, relevance_cases,
                               serving_cases, tower_vlm_cases, training_cases, vision_cases)

CASE_MODULES = (bayes_cases, mcmc_cases, relevance_cases, vision_cases, cli_cases, serving_cases, adapter_cases,
                qwen_vl_cases, tower_vlm_cases, training_cases)
CASES: list[Case] = [c for m in CASE_MODULES for c in m.CASES]
EXEMPT: dict[str, str] = {k: v for m in CASE_MODULES for k, v in m.EXEMPT.items()}
XFAIL: dict[str, str] = {k: v for m in CASE_MODULES for k, v in m.XFAIL.items()}
TIME_LIMIT_S = 30  # per example: a hang fails instead of blocking the suite


def public_names() -> dict[str, object]:
    """Every name in every public ``__all__`` -> its object, keyed ``module.Name`` (first public module
    that exports it); re-exports of one object are one entry."""
    out, seen = {}, set()
    for info in pkgutil.walk_packages(arrcoc.__path__, "arrcoc."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        mod = importlib.import_module(info.name)
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name, None)
            if inspect.ismodule(obj) or name == "__version__":
                continue
            key = id(obj) if (inspect.isclass(obj) or inspect.isfunction(obj)) else (info.name, name)
            if key in seen:
                continue
            seen.add(key)
            out[f"{info.name}.{name}"] = obj
    return out


def _covered_ids() -> set[int]:
    ids = set()
    for case in CASES:
        with contextlib.suppress(Exception):
            ids.add(id(resolve(case.target)))
    return ids


def test_every_public_name_has_a_case():
    names = public_names()
    covered = _covered_ids()
    exempt_short = {k.rsplit(".", 1)[-1]: v for k, v in EXEMPT.items()}
    missing = []
    for path, obj in names.items():
        short = path.rsplit(".", 1)[-1]
        if id(obj) in covered or path in EXEMPT or (short in exempt_short and not callable(obj)):
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            qual = f"{obj.__module__}.{obj.__qualname__}"
            if qual in EXEMPT or any(resolve_ok(k) is obj for k in EXEMPT):
                continue
        missing.append(path)
    assert not missing, (f"{len(missing)} public names have no bad-input case (add one to tests/bad_inputs/ or an "
                         f"exemption with the reason): {missing}")


def resolve_ok(path):
    try:
        return resolve(path)
    except Exception:  # noqa: BLE001 - a stale exemption is reported by test_exemptions_resolve
        return None


def test_exemptions_and_cases_resolve():
    stale = [k for k in EXEMPT if resolve_ok(k) is None]
    unresolved = sorted({c.target for c in CASES if resolve_ok(c.target) is None})
    ids = {c.id for c in CASES}
    orphan = sorted(k for k in XFAIL if k not in ids)
    assert not stale and not unresolved and not orphan, (
        f"stale exemptions {stale}; case targets not found {unresolved}; xfail entries without a case {orphan}")


def _check_finite(obj, where="result", depth=0):
    if depth > 4 or obj is None or isinstance(obj, (str, bytes, bool, torch.nn.Module, type)):
        return
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            assert bool(torch.isfinite(obj).all()), f"{where} has NaN/inf entries: {obj.flatten()[:6].tolist()}"
        return
    if isinstance(obj, float):
        assert math.isfinite(obj), f"{where} = {obj}"
        return
    if isinstance(obj, dict):
        for k, v in list(obj.items())[:50]:
            _check_finite(v, f"{where}[{k!r}]", depth + 1)
        return
    if isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj[:50]):
            _check_finite(v, f"{where}[{i}]", depth + 1)
        return
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            _check_finite(getattr(obj, f.name), f"{where}.{f.name}", depth + 1)


@contextlib.contextmanager
def _time_limit(seconds: int):
    def fail(*_):
        raise TimeoutError(f"no result or error within {seconds} s (a hang on bad input)")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_case(case: Case, value) -> None:
    """The property for one bad value."""
    with _time_limit(TIME_LIMIT_S), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = case.call(value)
        except (TypeError, ValueError) as err:
            msg = str(err)
            assert case.arg.lower() in msg.lower(), (
                f"{case.target}({case.arg}={value!r}) raised {type(err).__name__} that does not name "
                f"{case.arg!r}: {msg[:300]}")
            return
        except Exception as err:  # noqa: BLE001 - any other exception type is a finding
            raise AssertionError(f"{case.target}({case.arg}={value!r}) raised {type(err).__name__} (not a clear "
                                 f"TypeError/ValueError): {str(err)[:300]}") from err
    if case.finite:
        _check_finite(result, f"{case.target}({case.arg}={value!r})")
    if case.check is not None:
        case.check(result)


def _params():
    for case in CASES:
        reason = case.xfail or XFAIL.get(case.id)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", list(_params()))
def test_bad_input(case: Case):
    @settings(max_examples=case.examples, deadline=None, derandomize=True, database=None,
              phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))
    @given(st.data())
    def prop(data):
        run_case(case, data.draw(case.bad, label=case.arg))
    prop()
