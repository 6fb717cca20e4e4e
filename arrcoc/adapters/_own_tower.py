"""Pieces shared by the own-tower adapters (LLaVA, LLaVA-NeXT, Idefics3 / SmolVLM): building the
ARR-COC encoder around a VLM's own vision tower, and the prompt checks every adapter applies."""
from __future__ import annotations

from typing import Any, Sequence

from arrcoc.modeling import ARRCOCVisionConfig, ARRCOCVisionModel

__all__ = ["build_tower_encoder", "check_vocab", "splice"]


def build_tower_encoder(tower, vlm, processor=None, query_encoder=None, region_scorer=None,
                        **config: Any) -> ARRCOCVisionModel:
    """An ``ARRCOCVisionModel`` whose backbone is ``tower`` (the VLM's own modules, shared).

    ``config``: ``ARRCOCVisionConfig`` fields. ``region_embeddings`` is off (the LLM must see only
    tokens it was trained on; True is an error); ``query_encoder`` is a text-encoder module or a spec
    dict; the normalisation is the processor's (else the
    tower's), so the processor's ``pixel_values`` go in unchanged.
    """
    if config.get("region_embeddings", False):
        raise ValueError("region_embeddings must be False inside a VLM: the LLM must receive only tokens its own "
                         "vision tower and projector produce (no ARR-COC embedding added)")
    if "backbone" in config:
        raise ValueError("backbone is the VLM's own vision tower here; do not pass a backbone spec")
    config["region_embeddings"] = False
    if isinstance(query_encoder, dict):  # a spec (arrcoc.backbones.build_query_encoder), not a module
        config["query_encoder"], query_encoder = query_encoder, None
    config["backbone"] = {"type": "vlm", "vlm_class": type(vlm).__name__, "tower": type(tower).__name__}
    image_proc = getattr(processor, "image_processor", None)
    if image_proc is not None and config.get("image_mean") is None:
        config["image_mean"] = [float(v) for v in image_proc.image_mean]
        config["image_std"] = [float(v) for v in image_proc.image_std]
    if config.get("image_mean") is not None:
        tower.image_mean = tuple(config["image_mean"])
        tower.image_std = tuple(config["image_std"] if config.get("image_std") is not None else tower.image_std)
    encoder = ARRCOCVisionModel(ARRCOCVisionConfig(**config), backbone=tower, query_encoder=query_encoder,
                                region_scorer=region_scorer)
    return encoder.to(vlm.device).eval()


def check_vocab(prompts: Sequence[Sequence[int]], vocab_size: int) -> None:
    """Every token id of every prompt below the LLM's vocabulary size."""
    for i, p in enumerate(prompts):
        bad = [t for t in p if t >= vocab_size]
        if bad:
            raise ValueError(f"prompt_ids[{i}] holds token ids {sorted(set(bad))[:5]} outside the vocabulary "
                             f"(size {vocab_size}); tokenize with the VLM's own processor")


def splice(prompt: list[int], placeholder: int, image_ids: list[int]) -> tuple[list[int], int]:
    """Replace the prompt's image placeholder (or, without one, prepend) by ``image_ids``.

    Returns (ids, position of the first image id)."""
    at = prompt.index(placeholder) if placeholder in prompt else 0
    rest = prompt[at + 1:] if placeholder in prompt else prompt
    return prompt[:at] + image_ids + rest, at
