"""ARR-COC: adaptive relevance realization for vision-language token budgets.

Subpackages (imports point one way: each uses only those above it)
-----------
bayes       general Bayesian inference toolkit (usable alone; imports nothing else of ours)
relevance   scorers -> relevance posterior -> Thompson sampling -> budgeted allocation (uses bayes)
backbones   uniform access to HF vision models, timm models and the bundled pretrained default
modeling    Hugging Face config / PreTrainedModel / image processor (uses relevance, backbones)
adapters    drop-in use inside transformers VLM classes (uses modeling)
serving     Triton export, uncertainty-aware cache, CPU backends (uses modeling)
training    Accelerate training of the query head, calibration and a reader (uses modeling)

``import arrcoc`` loads none of them; ``import arrcoc.bayes`` loads no vision, transformers or timm
code (the torchvision compatibility fix runs when ``arrcoc.backbones`` is imported).
"""
import importlib

__version__ = "0.1.0"
__all__ = ["__version__", "bayes", "relevance", "backbones", "modeling", "adapters", "serving", "training"]


def __getattr__(name):  # lazy subpackages: `import arrcoc` stays cheap
    if name in ("bayes", "relevance", "modeling", "backbones", "adapters", "serving", "training"):
        return importlib.import_module(f"arrcoc.{name}")
    raise AttributeError(f"module 'arrcoc' has no attribute {name!r}")
