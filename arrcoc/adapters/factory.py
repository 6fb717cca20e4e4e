"""``from_vlm``: the one entry point that wraps a transformers VLM the user already runs.

It picks the adapter for the VLM's class (the class or any base class, so a user subclass works),
builds the ARR-COC encoder around the VLM's OWN vision tower (shared modules, nothing copied), and,
by default, attaches the training-free question channel from the VLM itself
(``EmbeddingSimilarityScorer``: the region's glimpse tokens against the question's words in the
LLM's input-embedding space) when a tokenizer is available.
"""
from __future__ import annotations

import importlib

__all__ = ["from_vlm", "SUPPORTED_VLMS"]

# VLM class name -> (module, adapter class). Imported lazily: a model family's adapter loads only
# when it is used.
SUPPORTED_VLMS = {
    "Qwen2VLForConditionalGeneration": ("arrcoc.adapters.qwen_vl", "QwenVLAdapter"),
    "Qwen2_5_VLForConditionalGeneration": ("arrcoc.adapters.qwen_vl", "QwenVLAdapter"),
    "Qwen3VLForConditionalGeneration": ("arrcoc.adapters.qwen_vl", "QwenVLAdapter"),
    "LlavaForConditionalGeneration": ("arrcoc.adapters.llava", "LlavaAdapter"),
    "LlavaNextForConditionalGeneration": ("arrcoc.adapters.llava", "LlavaAdapter"),
    "LlavaOnevisionForConditionalGeneration": ("arrcoc.adapters.llava", "LlavaAdapter"),
    "Idefics3ForConditionalGeneration": ("arrcoc.adapters.idefics3", "Idefics3Adapter"),
    "SmolVLMForConditionalGeneration": ("arrcoc.adapters.idefics3", "Idefics3Adapter"),
}


def _adapter_class(vlm):
    for klass in type(vlm).__mro__:
        if klass.__name__ in SUPPORTED_VLMS:
            module, name = SUPPORTED_VLMS[klass.__name__]
            return getattr(importlib.import_module(module), name)
    raise TypeError(f"no ARR-COC adapter for {type(vlm).__name__}; supported VLM classes: "
                    f"{', '.join(SUPPORTED_VLMS)}")


def from_vlm(vlm, processor=None, region_scorer="similarity", **config):
    """Wrap ``vlm`` (a transformers VLM instance) in its training-free ARR-COC adapter.

    processor: the VLM's own processor (normalisation, tokenizer, chat template); optional, but
        ``chat_prompts`` and the default question channel need it.
    region_scorer: "similarity" (default: ``EmbeddingSimilarityScorer`` over the LLM's input
        embeddings and the processor's tokenizer; skipped without a tokenizer), None (no VLM
        question channel: the question's reading / colour / position cues still apply) or a
        callable of the ``ARRCOCVisionModel`` ``region_scorer`` signature.
    config: ``ARRCOCVisionConfig`` fields over the adapter's own defaults (``budget``, ``levels``,
        ``grid``, ``relevance={...}``, ...).
    """
    cls = _adapter_class(vlm)
    if region_scorer == "similarity":
        tok = getattr(processor, "tokenizer", None)
        if tok is None:
            region_scorer = None
        else:
            from .query import EmbeddingSimilarityScorer

            grid = config.get("grid", getattr(cls, "DEFAULTS", {}).get("grid", 4))
            region_scorer = EmbeddingSimilarityScorer(vlm.get_input_embeddings(), tok, grid)
    elif region_scorer is not None and not callable(region_scorer):
        raise TypeError(f"region_scorer must be 'similarity', None or a callable, got {region_scorer!r}")
    return cls(vlm, processor=processor, region_scorer=region_scorer, **config)
