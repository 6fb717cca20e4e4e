"""Drop-in use of ARR-COC inside real VLM classes (Qwen2/2.5/3-VL, LLaVA(-NeXT), Idefics3 / SmolVLM).

``from_vlm(vlm, processor)`` is the entry point: training-free, each region encoded by the VLM's own
vision tower. The ``*ARRCOCAdapter`` classes are the train-your-own-projector path.

Lives at ``arrcoc.adapters`` so it never shadows the PyPI package ``adapters``.
"""
import arrcoc.backbones  # noqa: F401  (applies the torchvision fix before transformers loads)

from .base import AdapterOutput, ARRCOCAdapter
from .factory import SUPPORTED_VLMS, from_vlm
from .query import EmbeddingSimilarityScorer
from .llava import LlavaARRCOCAdapter
from .llava import LlavaAdapter, LlavaTower
from .idefics3 import Idefics3Adapter, Idefics3Tower
from .qwen2_vl import ARRCOCProjector, Qwen2VLARRCOCAdapter
from .qwen_vl import QwenVLAdapter, QwenVLTower

__all__ = ["from_vlm", "SUPPORTED_VLMS", "EmbeddingSimilarityScorer", "AdapterOutput", "ARRCOCAdapter", "LlavaARRCOCAdapter", "LlavaAdapter", "LlavaTower", "Idefics3Adapter", "Idefics3Tower", "Qwen2VLARRCOCAdapter", "ARRCOCProjector", "QwenVLAdapter", "QwenVLTower"]
