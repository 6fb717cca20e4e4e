"""Pieces shared by the own-tower adapters (LLaVA, LLaVA-NeXT, Idefics3 / SmolVLM): building the
ARR-COC encoder around a VLM's own vision tower, and the prompt checks every adapter applies."""
from __future__ import annotations

import math
from typing import Any, Sequence

from arrcoc._checks import check_int
from arrcoc.backbones import VisionBackbone
from arrcoc.modeling import ARRCOCVisionConfig, ARRCOCVisionModel

__all__ = ["OwnTower", "build_tower_encoder", "check_vocab", "splice", "tower_defaults", "TOWER_DEFAULTS"]



class OwnTower(VisionBackbone):
    """What the LLaVA and Idefics3 towers share: one LLM token per ``patch_size`` pixels, a native side."""

    @property
    def native_tokens(self) -> int:
        """LLM tokens of one crop at the tower's native side (LLaVA-1.5-336: 24 x 24 = 576)."""
        return (self.native_size // self.patch_size) ** 2

    def spec(self) -> dict:
        return {"type": "vlm", "tower": type(self).__name__}

# Defaults of the LLaVA / Idefics3 adapters that do not depend on the model (each with its reason).
TOWER_DEFAULTS = dict(
    grid=2,                    # 4 cells; at the top level each gets the tower's native detail (4x the VLM's own)
    concept=False,             # ConSE needs EfficientNet's ImageNet head; the VLM's own scorer takes its place
    query_encoder={"type": "bytes", "dim": 64},  # the learned head is silent untrained: keep it tiny
)


def tower_defaults(tower, config: dict) -> dict:
    """``config`` over ``TOWER_DEFAULTS`` and the model-dependent defaults, from the tower's native
    token side s (LLaVA-1.5-336: 24, Idefics3: 13, SmolVLM-256M: 8):

    levels (0, (s/3)^2, (s/2)^2, (2s/3)^2, s^2): a cheap look up to the tower's native detail
        (LLaVA-1.5: 0, 64, 144, 256, 576);
    global_tokens max(s/3, grid)^2: the cheapest level as the thumbnail, which is also the glimpse
        pass (so at least one glimpse token per region);
    budget s^2: what the VLM itself spends on one native view, here spent where the question needs
        it (about a quarter of ARR-COC's full detail, global + 4 s^2);
    image_size 2 x native: each of the 2 x 2 cells at the tower's native side;
    glimpse_side max(thumbnail side, 2 x grid): at least 2 x 2 glimpse tokens per region for the
        scorers (the thumbnail pass itself when it is that fine: LLaVA-1.5's 8 x 8).
    """
    side = tower.native_size // tower.patch_size
    grid = check_int(config.get("grid", TOWER_DEFAULTS["grid"]), "grid", minimum=1)
    sides = sorted({max(1, side // 3), max(1, side // 2), max(1, (2 * side) // 3), side})
    glob = max(sides[0], grid)  # the thumbnail is also the glimpse: at least one token per region
    out = dict(TOWER_DEFAULTS, levels=tuple([0] + [v * v for v in sides]), global_tokens=glob * glob,
               budget=side * side, image_size=grid * tower.native_size)
    out.update(config, grid=grid)
    glob_given = out["global_tokens"]
    if config.get("glimpse_side") is None and isinstance(glob_given, int) and not isinstance(glob_given, bool) \
            and glob_given >= 0:  # (a bad global_tokens is the config's to report)
        out["glimpse_side"] = max(math.isqrt(glob_given), 2 * grid)
    return out


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
