"""ARR-COC inside ``LlavaForConditionalGeneration``: the LLaVA projector maps ARR-COC tokens into the
LLM; each prompt gets exactly as many ``<image>`` tokens as ARR-COC produced for that image."""
from __future__ import annotations


import torch
from torch import Tensor
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .base import ARRCOCAdapter, check_prompts, left_pad

__all__ = ["LlavaARRCOCAdapter"]


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
