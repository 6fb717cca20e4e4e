"""Helpers of the bad-input property suite (``tests/test_bad_inputs.py``).

A :class:`Case` calls one public entry point with one argument replaced by a bad value drawn from a
hypothesis strategy. The suite asserts, for every drawn value, a clear error (``TypeError`` or
``ValueError`` whose message names the argument) or a finite result that passes the case's range
check; never NaN, never another exception type from deep inside torch, never a hang.

Cases live in one module per package (``bayes_cases``, ``mcmc_cases``, ``relevance_cases``,
``vision_cases``); each exports ``CASES`` (a list of :class:`Case`) and ``EXEMPT`` (public name ->
why it takes no user input). ``target`` is a public import path; coverage is checked by object
identity, so a module rename that keeps the public names (``arrcoc.relevance.allocation`` ->
``knapsack``) keeps its cases.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from hypothesis import strategies as st

__all__ = ["Case", "resolve", "keyword_cases", "BAD_REAL", "BAD_POSITIVE", "BAD_INT", "BAD_COUNT", "BAD_PROB", "BAD_TENSOR",
           "BAD_GENERATOR", "BAD_STR", "BAD_CALLABLE", "BAD_BOOL", "bad_tensor", "F64"]

F64 = torch.float64


@dataclass(frozen=True)
class Case:
    """One bad-input property: ``call(bad)`` must raise a clear error naming ``arg`` or return a finite,
    in-range value (``check(result)`` raises AssertionError when out of range)."""
    target: str                      # public import path of the entry point, e.g. "arrcoc.relevance.solve_dp"
    arg: str                         # the argument that receives the bad value (named in the error)
    call: Callable[[Any], Any]       # bad value -> call of the entry point
    bad: st.SearchStrategy           # the bad values
    check: Callable[[Any], None] | None = None  # range check of a returned value (finiteness is always checked)
    xfail: str | None = None         # a known finding in another owner's area (strict: fails once fixed)
    name: str = ""                   # distinguishes several cases of one target
    examples: int = 6                # hypothesis max_examples
    finite: bool = True              # a returned value must be finite (NaN / inf nowhere in it)

    @property
    def id(self) -> str:
        return f"{self.target}:{self.arg}" + (f":{self.name}" if self.name else "")


def resolve(path: str):
    """The object at a public import path ``pkg.mod.Name[.attr]``; an attribute wins over a submodule of
    the same name (``arrcoc.relevance.thompson`` is the function, not the module)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        try:
            for p in parts[i:]:
                obj = getattr(obj, p)
        except AttributeError:
            continue
        return obj
    raise ImportError(path)


class _Opaque:
    """An object of no expected type (not a number, tensor, string or sequence)."""

    def __repr__(self) -> str:
        return "<opaque object>"


OPAQUE = _Opaque()
_WRONG_TYPES = st.sampled_from([OPAQUE, "abc", None, [1.0, "x"], {"a": 1}])

BAD_REAL = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, "1.0", None, OPAQUE, True]),
                     st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not math.isfinite(v)))
BAD_POSITIVE = st.one_of(BAD_REAL, st.floats(max_value=0.0, allow_nan=False, allow_infinity=False), st.just(0))
BAD_PROB = st.one_of(BAD_REAL, st.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
                     st.floats(min_value=1.0, allow_nan=False, allow_infinity=False))
BAD_INT = st.one_of(st.sampled_from([2.5, math.nan, math.inf, "3", None, OPAQUE, True]),
                    st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not float(v).is_integer()))
BAD_COUNT = st.one_of(BAD_INT, st.integers(max_value=0))
BAD_STR = st.one_of(st.sampled_from(["", "no-such-option", None, 3, OPAQUE]), st.text(max_size=5).map(lambda s: "zz" + s))
BAD_CALLABLE = st.sampled_from([None, 3, "f", OPAQUE])
BAD_BOOL = st.sampled_from(["yes", None, 2, OPAQUE])
BAD_GENERATOR = st.sampled_from(["seed", 0, 1.5, np.random.default_rng(0), OPAQUE])


def bad_tensor(shape=(4, 5), *, dtype=F64, wrong_shapes=None, allow_empty_ok: bool = False) -> st.SearchStrategy:
    """NaN / inf entries, wrong dtypes (bool, complex), wrong shapes, empty, wrong types."""
    def with_value(v):
        def make(idx):
            t = torch.zeros(shape, dtype=dtype) + 0.5
            t.view(-1)[idx % max(t.numel(), 1)] = v
            return t
        return st.integers(0, 10 ** 6).map(make)
    shapes = wrong_shapes if wrong_shapes is not None else [(), (0,), tuple(shape) + (2,)]
    odd = [torch.zeros(s, dtype=dtype) for s in shapes] + [torch.zeros(shape, dtype=torch.complex64),
                                                        torch.zeros(shape, dtype=torch.bool)]
    return st.one_of(with_value(math.nan), with_value(math.inf), with_value(-math.inf), st.sampled_from(odd),
                     _WRONG_TYPES)


BAD_TENSOR = bad_tensor()


def keyword_cases(prefix: str, examples: int = 5):
    """The case factory every case module uses: ``kw(path, base, arg, bad, ...)`` builds a Case that
    calls ``prefix + path`` with the keyword arguments ``base`` (a dict, or a callable returning one)
    and ``arg`` replaced by the bad value; names in ``pos`` are passed positionally, in order."""
    def kw(path, base, arg, bad, *, name="", check=None, xfail=None, pos=(), examples=examples, finite=True):
        def call(v):
            args = base() if callable(base) else dict(base)
            args[arg] = v
            positional = [args.pop(p) for p in pos]
            return resolve(prefix + path)(*positional, **args)
        return Case(prefix + path, arg, call, bad, check=check, xfail=xfail, name=name, examples=examples,
                    finite=finite)
    return kw
