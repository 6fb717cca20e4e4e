"""Drop-in use of ARR-COC inside real VLM classes (LLaVA, Qwen2-VL).

Lives at ``arrcoc.adapters`` so it never shadows the PyPI package ``adapters``.
"""
import arrcoc.backbones  # noqa: F401  (applies the torchvision fix before transformers loads)

from .base import AdapterOutput, ARRCOCAdapter
from .llava import LlavaARRCOCAdapter
from .llava import LlavaAdapter, LlavaTower
from .qwen2_vl import ARRCOCProjector, Qwen2VLARRCOCAdapter

__all__ = ["AdapterOutput", "ARRCOCAdapter", "LlavaARRCOCAdapter", "LlavaAdapter", "LlavaTower", "Qwen2VLARRCOCAdapter", "ARRCOCProjector"]
