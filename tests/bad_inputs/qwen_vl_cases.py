"""Bad-input cases of the Qwen2-VL / Qwen2.5-VL / Qwen3-VL own-tower adapter (``arrcoc.adapters.qwen_vl``)."""
from __future__ import annotations

import functools

import torch

from . import keyword_cases, BAD_COUNT, BAD_TENSOR, bad_tensor

kw = keyword_cases("arrcoc.", examples=4)


@functools.lru_cache(maxsize=1)
def _vlm():
    from tests.adapters.tiny_qwen import tiny_vlm

    return tiny_vlm("qwen2_vl", layers=1)


_PIXELS = bad_tensor((1, 3, 8, 8), wrong_shapes=[(), (0,), (3, 8, 8), (1, 3, 8, 12)])
_PATCH = {"patch_size": 4, "merge_size": 2, "temporal_patch_size": 2}

CASES = [
    kw("adapters.QwenVLTower", {}, "vlm", BAD_TENSOR),
    kw("adapters.QwenVLTower", lambda: {"vlm": _vlm()}, "native_tokens", BAD_COUNT),
    kw("adapters.QwenVLAdapter", {}, "vlm", BAD_TENSOR),
    kw("adapters.qwen_vl.qwen_patchify", _PATCH, "pixel_values", _PIXELS),
    kw("adapters.qwen_vl.qwen_patchify", lambda: {**_PATCH, "pixel_values": torch.zeros(1, 3, 8, 8)}, "patch_size",
       BAD_COUNT, name="patch"),
]

EXEMPT = {
    "arrcoc.adapters.qwen_vl.QWEN_VL_CLASSES": "constant (the VLM class names the adapter takes)",
}
XFAIL: dict[str, str] = {}
