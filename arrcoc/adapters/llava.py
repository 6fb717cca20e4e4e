"""ARR-COC inside LLaVA (``LlavaForConditionalGeneration``), LLaVA-NeXT
(``LlavaNextForConditionalGeneration``) and LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``,
the same anyres rules for a single image; its SigLIP tower with "full" selection).

Two ways in:

- ``LlavaAdapter`` (training-free): every region is encoded by the VLM's OWN vision tower (the same
  modules, shared) at the resolution its tokens buy, with the model's own feature layer, feature
  selection and ``multi_modal_projector`` (``LlavaTower``), so the LLM sees only tokens it was
  trained on. A region at level s x s is a crop resampled to s * patch pixels through the tower with
  ``interpolate_pos_encoding=True`` (CLIP / SigLIP resample their position grid; at the native side
  it is the model's own embedding, bit for bit).
- ``LlavaARRCOCAdapter`` (train your own): an ARR-COC encoder of the projector's input width (e.g.
  the packaged EfficientNet one) feeds LLaVA's projector; LLaVA's own tower is not used and the
  projector must be trained on those features.

Feature selection: ``vision_feature_select_strategy="default"`` on a tower with a CLS token (CLIP:
LLaVA-1.5, LLaVA-NeXT) drops CLS and keeps the s x s patch tokens; ``"full"`` on a tower without one
(SigLIP) keeps all patch tokens. The other two combinations are refused with the reason: "full" with
CLS would add one token per region that lies on no grid cell, "default" without CLS drops a patch.

LLaVA-NeXT's (and OneVision's) anyres layout, i.e. how an image reaches its LLM: the base image
resized to the tower's native side, its tokens with no separator, then the grid of high-resolution
tiles with ``image_newline`` after every token row. Here ARR-COC's global view plays the base image
and every allocated region is a one-tile anyres grid at its own resolution: s rows of s tokens, each
row followed by ``image_newline`` (s * (s + 1) LLM tokens for level s * s; the newlines are not
charged to the budget; ``region_newlines=False`` drops them, so the LLM then gets exactly the
allocated count). With ``grid=1, global_tokens=levels[-1]=native, budget=2 * native`` the LLM input
is the model's own anyres encoding of a native-size square image, bit for bit.
"""
from __future__ import annotations

import inspect

import torch
from torch import Tensor
from transformers.modeling_outputs import BaseModelOutputWithPooling

from arrcoc.modeling.regions import level_side

from ._own_tower import TOWER_DEFAULTS, OwnTower, build_tower_encoder, splice, tower_defaults
from .base import ARRCOCAdapter, check_prompts, left_pad

__all__ = ["LLAVA_CLASSES", "LlavaARRCOCAdapter", "LlavaAdapter", "LlavaTower"]

LLAVA_CLASSES = ("LlavaForConditionalGeneration", "LlavaNextForConditionalGeneration",
                 "LlavaOnevisionForConditionalGeneration")
_ANYRES = ("LlavaNextForConditionalGeneration", "LlavaOnevisionForConditionalGeneration")
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _llava_class(vlm) -> str:
    from transformers import (LlavaForConditionalGeneration, LlavaNextForConditionalGeneration,
                              LlavaOnevisionForConditionalGeneration)

    for cls in (LlavaOnevisionForConditionalGeneration, LlavaNextForConditionalGeneration,
                LlavaForConditionalGeneration):
        if isinstance(vlm, cls):
            return cls.__name__
    raise TypeError(f"vlm must be one of {', '.join(LLAVA_CLASSES)}, got {type(vlm).__name__}")


class LlavaTower(OwnTower):
    """A LLaVA / LLaVA-NeXT model's own vision tower + feature selection + projector as a
    ``VisionBackbone``: crops of s * patch pixels -> (N, s * s, text hidden) LLM input tokens.

    feature_dim: the LLM's hidden width; patch_size: the tower's patch (one LLM token per patch);
    native_size: the tower's image_size. The modules are the VLM's own (shared, never copied).
    """

    def __init__(self, vlm):
        super().__init__()
        _llava_class(vlm)
        cfg = vlm.config
        self.vision_tower = vlm.model.vision_tower
        self.projector = vlm.model.multi_modal_projector
        vcfg = cfg.vision_config
        self.feature_layer = cfg.vision_feature_layer
        self.strategy = cfg.vision_feature_select_strategy
        has_cls = any(n.endswith("class_embedding") for n, _ in self.vision_tower.named_parameters())
        if self.strategy not in ("default", "full"):
            raise ValueError(f"vision_feature_select_strategy must be 'default' or 'full', got {self.strategy!r}")
        if has_cls and self.strategy == "full":
            raise ValueError("vision_feature_select_strategy='full' on a tower with a CLS token keeps CLS: one LLM "
                             "token per region that belongs to no grid cell; ARR-COC supports 'default' for such towers")
        if not has_cls and self.strategy == "default":
            raise ValueError("vision_feature_select_strategy='default' on a tower without a CLS token drops a patch "
                             "token, so a region's tokens are no longer a grid; ARR-COC supports 'full' for such towers")
        self._prefix = 1 if has_cls else 0
        params = inspect.signature(self.vision_tower.forward).parameters
        if "interpolate_pos_encoding" not in params:
            raise ValueError(f"{type(self.vision_tower).__name__} cannot resample its position embeddings "
                             "(no interpolate_pos_encoding); regions need crops at other sides than the native one")
        self.feature_dim = int(cfg.text_config.hidden_size)
        ps = vcfg.patch_size
        self.patch_size = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
        size = vcfg.image_size
        self.native_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.resizable = True
        self.image_mean, self.image_std = (CLIP_MEAN, CLIP_STD) if has_cls else ((0.5,) * 3, (0.5,) * 3)

    def _features(self, pixel_values: Tensor):
        h, w = pixel_values.shape[-2] // self.patch_size, pixel_values.shape[-1] // self.patch_size
        dtype = self.projector.linear_1.weight.dtype
        out = self.vision_tower(pixel_values.to(dtype), output_hidden_states=True, interpolate_pos_encoding=True,
                                return_dict=True)
        layers = [self.feature_layer] if isinstance(self.feature_layer, int) else list(self.feature_layer)
        hidden = torch.cat([out.hidden_states[i] for i in layers], -1)  # (N, prefix + h*w, Dv * layers)
        hidden = hidden[:, self._prefix:]  # (N, h*w, Dv * layers): the model's own selection
        return self.projector(hidden), h, w  # (N, h*w, D)


class LlavaAdapter(ARRCOCAdapter):
    """Training-free ARR-COC for LLaVA / LLaVA-NeXT: regions encoded by the VLM's own tower.

    vlm: ``LlavaForConditionalGeneration``, ``LlavaNextForConditionalGeneration`` or
    ``LlavaOnevisionForConditionalGeneration``; processor: its
    processor (optional: the normalisation, tokenizer and chat template come from it);
    ``config``: ``ARRCOCVisionConfig`` fields (levels, budget, grid, global_tokens, ...).
    region_newlines (LLaVA-NeXT / OneVision only): follow every region token row with ``image_newline``.
    The encoder is ``self.encoder`` (an ``ARRCOCVisionModel``), its backbone ``self.tower``.
    """

    DEFAULTS = TOWER_DEFAULTS  # the model-dependent ones: _own_tower.tower_defaults

    def __init__(self, vlm, processor=None, query_encoder=None, region_scorer=None,
                 pad_token_id: int | None = None, region_newlines: bool = True, **config):
        self.vlm_class = _llava_class(vlm)
        self.model = vlm
        self.processor = processor
        self.tower = LlavaTower(vlm)
        merged = tower_defaults(self.tower, config)
        spec = merged.pop("query_encoder")
        query_encoder = spec if query_encoder is None else query_encoder  # a module or a spec dict
        self.encoder = build_tower_encoder(self.tower, vlm, processor, query_encoder, region_scorer, **merged)
        cfg = vlm.config
        self.image_token_id = int(cfg.image_token_id)
        self.vocab_size = int(cfg.text_config.vocab_size)
        self.newline = vlm.model.image_newline if self.vlm_class in _ANYRES else None
        self.region_newlines = bool(region_newlines) and self.newline is not None
        tok = getattr(processor, "tokenizer", None)
        pad = pad_token_id if pad_token_id is not None else getattr(tok, "pad_token_id", None)
        pad = pad if pad is not None else cfg.text_config.pad_token_id
        self.pad_token_id = int(pad if pad is not None else 0)

    def image_features(self, vision, b: int) -> Tensor:
        """The LLM input tokens of image b, in prompt order: (n_b, D)."""
        n = int(vision.tokens_per_image[b])
        tokens = vision.last_hidden_state[b, :n]  # (n, D): global view, then regions in region order
        if not self.region_newlines:
            return tokens
        region = vision.token_region[b, :n]  # (n,)
        parts = [tokens[region == -1]]  # base image: no separators
        for r, lv in enumerate(vision.allocation[b].tolist()):
            if lv == 0:
                continue
            s = level_side(lv)
            grid = tokens[region == r].reshape(s, s, -1)  # (s, s, D)
            nl = self.newline.to(grid)[None, None].expand(s, 1, -1)  # (s, 1, D)
            parts.append(torch.cat([grid, nl], 1).reshape(s * (s + 1), -1))  # (s*(s+1), D)
        return torch.cat(parts, 0)

    @torch.no_grad()
    def prepare(self, pixel_values: Tensor, prompt_ids, queries=None, budget=None, generator=None,
                deterministic: bool | None = None, **encoder_kwargs):
        """Allocate, encode with the VLM's own tower, expand each prompt's ``<image>`` to its tokens.

        pixel_values (B, 3, H, W) normalised as the processor does; prompt_ids: B token-id lists with
        one ``<image>`` each (none: the image goes first). Returns (inputs for the VLM's forward /
        generate, ARRCOCVisionOutput, LLM image tokens per prompt (B,))."""
        prompts, vision = self._checked_encode(pixel_values, prompt_ids, queries=queries, budget=budget,
                                               generator=generator, deterministic=deterministic, **encoder_kwargs)
        feats, rows = [], []
        for b, p in enumerate(prompts):
            f = self.image_features(vision, b)  # (n_b, D)
            feats.append(f.to(self.model.dtype))
            rows.append(splice(p, self.image_token_id, [self.image_token_id] * f.shape[0])[0])
        ids, mask, _ = left_pad(rows, self.pad_token_id, device=pixel_values.device)
        counts = torch.tensor([f.shape[0] for f in feats], dtype=torch.long, device=pixel_values.device)  # (B,)
        enc = {"image": BaseModelOutputWithPooling(pooler_output=tuple(feats))}
        return {"input_ids": ids, "attention_mask": mask, "mm_encoder_outputs": enc}, vision, counts


class LlavaARRCOCAdapter(ARRCOCAdapter):
    """Drop-in ARR-COC encoder for a LLaVA model.

    model: a ``LlavaForConditionalGeneration``; encoder: an ``ARRCOCVisionModel`` whose hidden size
    equals the LLaVA projector's input width (``vision_config.hidden_size``). LLaVA's own vision
    tower is not used.
    """

    def __init__(self, model, encoder, pad_token_id: int | None = None):
        from transformers import LlavaForConditionalGeneration

        if not isinstance(model, LlavaForConditionalGeneration):
            raise TypeError(f"model must be a LlavaForConditionalGeneration, got {type(model).__name__}")
        self.model = model
        self.encoder = encoder
        self.projector = model.model.multi_modal_projector
        in_features = self.projector.linear_1.in_features
        if in_features != encoder.hidden_size:
            raise ValueError(f"LLaVA's projector takes {in_features}-dim vision features but the ARR-COC encoder "
                             f"gives {encoder.hidden_size}; use a backbone of that width")
        self.image_token_id = int(model.config.image_token_id)
        pad = pad_token_id if pad_token_id is not None else model.config.text_config.pad_token_id
        self.pad_token_id = int(pad if pad is not None else 0)

    @torch.no_grad()
    def prepare(self, pixel_values: Tensor, prompt_ids, queries=None, budget=None, generator=None,
                deterministic: bool | None = None, **encoder_kwargs):
        """Run ARR-COC, project its tokens, expand each prompt's ``<image>`` to the token count.

        prompt_ids: B lists of ids, each with one image placeholder (or none: image goes first).
        Returns (generate kwargs, vision output, image token counts).
        """
        batch = pixel_values.shape[0]
        prompts = check_prompts(prompt_ids, batch, self.image_token_id)
        vision = self.encoder(pixel_values, queries=queries, budget=budget, generator=generator,
                              deterministic=deterministic, **encoder_kwargs)
        counts = vision.attention_mask.sum(-1)  # (B,)
        feats = []
        rows = []
        for b, p in enumerate(prompts):
            n = int(counts[b])
            tokens = vision.last_hidden_state[b, :n]  # (n, D): real tokens come first
            feats.append(self.projector(tokens.to(self.projector.linear_1.weight.dtype)))  # (n, H)
            at = p.index(self.image_token_id) if self.image_token_id in p else 0
            rest = p[at + 1:] if self.image_token_id in p else p
            rows.append(p[:at] + [self.image_token_id] * n + rest)
        ids, mask, _ = left_pad(rows, self.pad_token_id, device=pixel_values.device)
        enc = {"image": BaseModelOutputWithPooling(pooler_output=tuple(feats))}
        return {"input_ids": ids, "attention_mask": mask, "mm_encoder_outputs": enc}, vision, counts
