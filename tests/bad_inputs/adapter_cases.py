"""Bad-input cases of the own-tower VLM adapters' shared pieces (``arrcoc.adapters`` factory, query
channel, base scoring). Per-family adapters add their cases here or in ``vision_cases``."""
from __future__ import annotations

import functools

import torch
from torch import nn

from . import keyword_cases, BAD_CALLABLE, BAD_POSITIVE, BAD_REAL, BAD_TENSOR

kw = keyword_cases("arrcoc.", examples=4)


@functools.lru_cache(maxsize=1)
def _embedding():
    return nn.Embedding(8, 4)


def _tokenizer(text, add_special_tokens=False):
    return {"input_ids": [len(w) % 8 for w in text.split()]}


CASES = [
    kw("adapters.from_vlm", {}, "vlm", BAD_TENSOR),
    kw("adapters.EmbeddingSimilarityScorer", lambda: {"embed_tokens": _embedding(), "grid": 2},
       "tokenizer", BAD_CALLABLE),
    kw("adapters.EmbeddingSimilarityScorer", lambda: {"embed_tokens": _embedding(), "tokenizer": _tokenizer,
                                                      "grid": 2}, "temperature", BAD_POSITIVE),
    kw("adapters.EmbeddingSimilarityScorer", lambda: {"tokenizer": _tokenizer, "grid": 2}, "embed_tokens", BAD_TENSOR),
    kw("adapters.base.check_answers", {"batch": 1}, "answer_ids", BAD_TENSOR, finite=False),
    kw("adapters.lmms_eval_plugin.parse_budget", {"full_tokens": 1024}, "budget", BAD_POSITIVE),
    kw("adapters.lmms_eval_plugin.build_adapter", {"pretrained": "/nonexistent"}, "dtype", BAD_REAL, examples=2),
]

EXEMPT = {
    "arrcoc.adapters.SUPPORTED_VLMS": "constant (VLM class name -> adapter)",
    "arrcoc.adapters.lmms_eval_plugin.manifest": "takes no input (lmms-eval's entry-point payload)",
    "arrcoc.adapters.lmms_eval_plugin.main": "argv goes to lmms-eval's own argument parser",
}

XFAIL: dict = {}  # public name -> known finding (none)
