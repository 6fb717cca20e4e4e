"""arrcoc.bayes: a batched Bayesian inference toolkit in plain PyTorch.

Submodules load lazily (``arrcoc.bayes.conjugate``, ``arrcoc.bayes.diagnostics``, ...), so importing
the toolkit does not import what you do not use. This package imports nothing else of arrcoc.
"""
import importlib

_SUBMODULES = (
    "conjugate", "diagnostics", "arviz_io", "mcmc", "vi", "laplace", "hierarchical",
    "compare", "predictive", "distributed",
)
__all__ = list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"arrcoc.bayes.{name}")
    raise AttributeError(f"module 'arrcoc.bayes' has no attribute {name!r}")
