"""Bad-input cases of the LLaVA / LLaVA-NeXT and Idefics3 / SmolVLM own-tower adapters
(``arrcoc.adapters.llava``, ``arrcoc.adapters.idefics3``); their prompt checks (two placeholders,
batch / prompt count, ids outside the vocabulary) are in tests/adapters/test_llava.py and
test_idefics3.py."""
from __future__ import annotations

import functools

from . import keyword_cases, BAD_COUNT, BAD_TENSOR, BAD_BOOL

kw = keyword_cases("arrcoc.", examples=4)
SMALL = {"query_encoder": {"type": "bytes", "dim": 16}, "relevance": {"num_heads": 2, "head_dim": 8},
         "grid": 1, "global_tokens": 0, "levels": (0, 16), "budget": 16, "image_size": 32}


@functools.lru_cache(maxsize=1)
def _llava():
    from tests.adapters.tiny_llava import tiny_llava

    return tiny_llava()


@functools.lru_cache(maxsize=1)
def _idefics3():
    from tests.adapters.tiny_llava import tiny_idefics3

    return tiny_idefics3()


def _with(vlm_fn, **extra):
    def base():
        model, proc = vlm_fn()
        return {"vlm": model, "processor": proc, **SMALL, **extra}
    return base


CASES = [
    kw("adapters.LlavaTower", {}, "vlm", BAD_TENSOR),
    kw("adapters.LlavaAdapter", {}, "vlm", BAD_TENSOR),
    kw("adapters.LlavaAdapter", _with(_llava), "budget", BAD_COUNT, name="budget"),
    kw("adapters.LlavaAdapter", _with(_llava), "region_embeddings", BAD_BOOL, name="region_embeddings"),
    kw("adapters.Idefics3Tower", {}, "vlm", BAD_TENSOR),
    kw("adapters.Idefics3Adapter", {}, "vlm", BAD_TENSOR),
    kw("adapters.Idefics3Adapter", _with(_idefics3), "processor", BAD_TENSOR, name="processor"),
    kw("adapters.Idefics3Adapter", _with(_idefics3), "grid", BAD_COUNT, name="grid"),
]

EXEMPT = {
    "arrcoc.adapters.llava.LLAVA_CLASSES": "constant (the VLM class names LlavaAdapter takes)",
    "arrcoc.adapters.idefics3.IDEFICS3_CLASSES": "constant (the VLM class names Idefics3Adapter takes)",
}
XFAIL: dict[str, str] = {}
