"""Make ``import torchvision`` (and so ``import timm`` and transformers' vision models) work when
torchvision's compiled ops cannot load.

Why this exists: PyPI's only torchvision wheel for torch 2.13 is a CUDA build. Its ``_C`` extension
links ``libtorch_cuda.so``/``libc10_cuda.so``, which a CPU torch does not ship, so loading it fails.
torchvision tolerates that (``torchvision.extension._has_ops()`` becomes False) except in one place:
``torchvision/_meta_registrations.py`` calls ``torch.library.register_fake("torchvision::nms")`` (and
``::qnms``) unconditionally, which raises ``RuntimeError: operator torchvision::nms does not exist``.
That aborts ``import torchvision``, and with it ``import timm`` and every transformers model import
that touches torchvision (transformers imports it whenever it is installed).

The fix, applied only when needed: *before* torchvision is imported, try to load its ``_C`` library
the same way torchvision does; if that fails, define the two op schemas that the unconditional
registrations require, with a pure-PyTorch ``nms`` kernel (any device) and a ``qnms`` kernel that
raises a clear ``NotImplementedError``. Nothing in torchvision is patched: its Python ops still see
``_has_ops() == False`` and raise torchvision's own "Couldn't load custom C++ ops" error when called
(ARR-COC never calls them), while model definitions, transforms and timm import and run normally.
When the compiled ops do load (a matching CPU or CUDA build), this module does nothing.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

import torch

__all__ = [
    "torchvision_extension_path",
    "torchvision_ops_loadable",
    "ensure_torchvision_importable",
    "nms_reference",
    "compat_applied",
]

# Library objects must stay alive for their definitions to stay registered.
_LIBS: list = []
_STATE = {"checked": False, "applied": False}

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def torchvision_extension_path() -> str | None:
    """Path of torchvision's compiled ``_C`` library, found without importing torchvision.

    Returns None when torchvision is not installed or ships no ``_C`` library.
    """
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib_dir = list(spec.submodule_search_locations)[0]
    loader_details = (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
    ext = importlib.machinery.FileFinder(lib_dir, loader_details).find_spec("_C")
    return None if ext is None else ext.origin


def torchvision_ops_loadable() -> bool | None:
    """Whether torchvision's compiled ops load with this torch (None: torchvision not installed).

    Loading is what torchvision itself does first on import, so a success here costs nothing later.
    """
    if "torchvision" in sys.modules:  # already imported: trust its own verdict
        ext = sys.modules.get("torchvision.extension")
        return bool(ext._has_ops()) if ext is not None else None
    path = torchvision_extension_path()
    if path is None:
        return None if importlib.util.find_spec("torchvision") is None else False
    try:
        torch.ops.load_library(path)
    except (OSError, ImportError):
        return False
    return True


def nms_reference(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression in plain PyTorch, same contract as ``torchvision::nms``.

    dets (N, 4) boxes as (x1, y1, x2, y2); scores (N,); returns the kept indices (K,) long, sorted by
    decreasing score. A box is dropped when its IoU with an already kept box is > iou_threshold.
    """
    if dets.dim() != 2 or dets.size(-1) != 4:
        raise ValueError(f"dets must have shape (N, 4), got {tuple(dets.shape)}")
    if scores.dim() != 1 or scores.size(0) != dets.size(0):
        raise ValueError(f"scores must have shape ({dets.size(0)},), got {tuple(scores.shape)}")
    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=dets.device)
    order = torch.argsort(scores, descending=True, stable=True)  # (N,)
    boxes = dets[order].to(torch.float64)  # (N, 4)
    area = (boxes[:, 2] - boxes[:, 0]).clamp_min(0) * (boxes[:, 3] - boxes[:, 1]).clamp_min(0)  # (N,)
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])  # (N, N, 2)
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])  # (N, N, 2)
    inter = (rb - lt).clamp_min(0).prod(-1)  # (N, N)
    iou = inter / (area[:, None] + area[None, :] - inter)  # (N, N); 0/0 -> nan compares False
    suppress = (iou > iou_threshold).cpu()
    keep = torch.ones(boxes.size(0), dtype=torch.bool)
    for i in range(boxes.size(0)):  # greedy pass, O(N) python steps over a precomputed matrix
        if keep[i]:
            later = suppress[i].clone()
            later[: i + 1] = False
            keep &= ~later
    return order[keep.to(order.device)]


def _qnms_unavailable(dets, scores, iou_threshold):
    raise NotImplementedError(
        "torchvision::qnms (quantized NMS) needs torchvision's compiled ops, which cannot load with "
        "this torch build; install a torchvision wheel built for your torch to use it."
    )


def ensure_torchvision_importable() -> bool:
    """Apply the fix when torchvision is installed but its compiled ops cannot load.

    Idempotent. Returns True when the fix is (or already was) applied, False when not needed
    (torchvision absent, already imported, or its ops load).
    """
    if _STATE["checked"]:
        return _STATE["applied"]
    _STATE["checked"] = True
    if os.environ.get("ARRCOC_NO_TORCHVISION_COMPAT"):
        return False
    if "torchvision" in sys.modules or torchvision_ops_loadable() is not False:
        return False
    lib = torch.library.Library("torchvision", "FRAGMENT")  # noqa: TOR901 - defines missing schemas
    for name, schema in _SCHEMAS.items():
        if torch._C._dispatch_has_kernel(f"torchvision::{name}"):  # defined by someone else already
            continue
        lib.define(schema)
    lib.impl("nms", nms_reference, "CompositeExplicitAutograd")
    lib.impl("qnms", _qnms_unavailable, "CompositeExplicitAutograd")
    _LIBS.append(lib)
    _STATE["applied"] = True
    return True


def compat_applied() -> bool:
    """Whether :func:`ensure_torchvision_importable` defined the fallback ops in this process."""
    return _STATE["applied"]
