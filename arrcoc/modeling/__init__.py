"""Hugging Face face of ARR-COC: config, PreTrainedModel, ModelOutput, image processor.

Importing this package registers ``arrcoc_vision`` with AutoConfig/AutoModel (and the classes for
``register_for_auto_class``, so a saved folder carries its code and loads with
``trust_remote_code=True``).
"""
import arrcoc.backbones  # noqa: F401  (applies the torchvision fix before transformers loads)

from transformers import AutoConfig, AutoModel  # noqa: E402

from .configuration_arrcoc import ARRCOCVisionConfig
from .image_processing_arrcoc import ARRCOCImageProcessor
from .modeling_arrcoc import GLOBAL_REGION, PAD_REGION, ARRCOCVisionModel, ARRCOCVisionOutput
from .regions import grid_boxes

__all__ = ["ARRCOCVisionConfig", "ARRCOCVisionModel", "ARRCOCVisionOutput", "ARRCOCImageProcessor",
           "GLOBAL_REGION", "PAD_REGION", "grid_boxes", "load_default_model"]

AutoConfig.register(ARRCOCVisionConfig.model_type, ARRCOCVisionConfig, exist_ok=True)
AutoModel.register(ARRCOCVisionConfig, ARRCOCVisionModel, exist_ok=True)
ARRCOCVisionConfig.register_for_auto_class()
ARRCOCVisionModel.register_for_auto_class("AutoModel")


def load_default_model(**config_overrides) -> tuple[ARRCOCVisionModel, ARRCOCImageProcessor]:
    """The pretrained default (EfficientNet-Lite0 + MiniLM-L6 from their PyPI packages) in eval
    mode, with its image processor. Raises an ImportError naming any missing package."""
    config = ARRCOCVisionConfig(**config_overrides)
    model = ARRCOCVisionModel(config).eval()
    return model, ARRCOCImageProcessor.from_model_config(model.config)
