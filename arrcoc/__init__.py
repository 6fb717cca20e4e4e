"""ARR-COC: adaptive relevance realization for vision-language token budgets.

Subpackages
-----------
bayes       general Bayesian inference toolkit (usable alone; imports nothing else of ours)
relevance   scorers -> relevance posterior -> Thompson sampling -> budgeted allocation
modeling    Hugging Face config / PreTrainedModel / image processor
backbones   uniform access to HF vision models, timm models and the bundled pretrained default
"""
import importlib

# PyPI's only torchvision for torch 2.13 is a CUDA build whose C ops cannot load with CPU torch, which
# breaks `import torchvision`, `import timm` and transformers' vision models. The fix is a no-op when
# torchvision is absent or its ops load; ARRCOC_NO_TORCHVISION_COMPAT=1 turns it off.
from arrcoc.backbones._torchvision_compat import ensure_torchvision_importable as _ensure_tv

_ensure_tv()

__version__ = "0.1.0"
__all__ = ["__version__", "bayes", "relevance", "modeling", "backbones"]


def __getattr__(name):  # lazy subpackages: `import arrcoc` stays cheap
    if name in ("bayes", "relevance", "modeling", "backbones", "adapters", "serving", "training"):
        return importlib.import_module(f"arrcoc.{name}")
    raise AttributeError(f"module 'arrcoc' has no attribute {name!r}")
