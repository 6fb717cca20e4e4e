"""ARR-COC inside ``Qwen2VLForConditionalGeneration`` with a projector of your own: the train-your-own
option. The training-free one is ``arrcoc.adapters.QwenVLAdapter`` (``arrcoc.adapters.qwen_vl``, also
what ``arrcoc.adapters.from_vlm`` builds): there every region is encoded by the VLM's own vision tower,
so the LLM sees only tokens it was trained on and no training is needed.

Here ARR-COC's own encoder (e.g. the packaged EfficientNet one) makes the tokens and ``ARRCOCProjector``
maps them to the LLM's width; a freshly built projector is random, so it must be trained before the
answers mean anything. The global thumbnail and every allocated region enter the LLM as their own
image (``<|vision_start|>`` + n x ``<|image_pad|>`` + ``<|vision_end|>``) with an ``image_grid_thw`` of
(1, 2s, 2s) for an s x s region: Qwen2-VL's M-RoPE gives each region's tokens 2-D positions within its
own segment (restarting per region, unlike the own-tower adapter's true positions in the whole
image), and each image segment gets exactly its allocated tokens."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from arrcoc.bayes._validate import check_int

from .base import ARRCOCAdapter, check_prompts, left_pad

__all__ = ["Qwen2VLARRCOCAdapter", "ARRCOCProjector"]


class ARRCOCProjector(nn.Module):
    """LayerNorm + 2-layer GELU MLP from ARR-COC width to the LLM width (Qwen2-VL merger's shape).

    Freshly built it is untrained (random); train it (arrcoc.training) or load a state dict."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None):
        super().__init__()
        in_dim, out_dim = check_int(in_dim, "in_dim", minimum=1), check_int(out_dim, "out_dim", minimum=1)
        hidden_dim = 4 * in_dim if hidden_dim is None else check_int(hidden_dim, "hidden_dim", minimum=1)
        self.norm = nn.LayerNorm(in_dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.norm(x))  # (..., out_dim)


class Qwen2VLARRCOCAdapter(ARRCOCAdapter):
    """Drop-in ARR-COC encoder for Qwen2-VL with a projector to train. ``projector`` maps ARR-COC tokens
    to the text width; by default a new ``ARRCOCProjector`` (untrained). Qwen2-VL's own vision tower is
    not used: for the training-free path use ``QwenVLAdapter`` (``arrcoc.adapters.from_vlm``)."""

    def __init__(self, model, encoder, projector: nn.Module | None = None, pad_token_id: int | None = None):
        from transformers import Qwen2VLForConditionalGeneration

        if not isinstance(model, Qwen2VLForConditionalGeneration):
            raise TypeError(f"model must be a Qwen2VLForConditionalGeneration, got {type(model).__name__}")
        self.model = model
        self.encoder = encoder
        cfg = model.config
        text_hidden = cfg.text_config.hidden_size
        self.projector = projector if projector is not None else ARRCOCProjector(encoder.hidden_size, text_hidden)
        self.projector.to(device=model.device, dtype=model.dtype)
        self.image_token_id = int(cfg.image_token_id)
        self.vision_start_id = int(cfg.vision_start_token_id)
        self.vision_end_id = int(cfg.vision_end_token_id)
        self.merge = int(cfg.vision_config.spatial_merge_size)
        pad = pad_token_id if pad_token_id is not None else cfg.text_config.pad_token_id
        self.pad_token_id = int(pad if pad is not None else 0)

    def _segments(self, vision, b: int) -> list[int]:
        """Token count of each image segment of image b: global thumbnail, then allocated regions."""
        n_glob = int((vision.token_region[b] == -1).sum())
        return [n_glob] + [int(v) for v in vision.allocation[b].tolist() if v > 0]

    @torch.no_grad()
    def prepare(self, pixel_values: Tensor, prompt_ids, queries=None, budget=None, generator=None,
                deterministic: bool | None = None, **encoder_kwargs):
        """Run ARR-COC and build Qwen2-VL inputs (ids, mask, mm_token_type_ids, grid_thw, features)."""
        batch = pixel_values.shape[0]
        prompts = check_prompts(prompt_ids, batch, self.image_token_id)
        vision = self.encoder(pixel_values, queries=queries, budget=budget, generator=generator,
                              deterministic=deterministic, **encoder_kwargs)
        counts = vision.attention_mask.sum(-1)  # (B,)
        feats, grids, rows, types = [], [], [], []
        for b, p in enumerate(prompts):
            image_ids, image_types, pos = [], [], 0
            for n in self._segments(vision, b):
                side = math.isqrt(n)
                tokens = vision.last_hidden_state[b, pos: pos + n]  # (n, D)
                feats.append(self.projector(tokens.to(self.model.dtype)))  # (n, H)
                grids.append([1, side * self.merge, side * self.merge])
                image_ids += [self.vision_start_id] + [self.image_token_id] * n + [self.vision_end_id]
                image_types += [0] + [1] * n + [0]
                pos += n
            if pos != int(counts[b]):
                raise RuntimeError(f"segments cover {pos} tokens but image {b} has {int(counts[b])}")
            at = p.index(self.image_token_id) if self.image_token_id in p else 0
            rest = p[at + 1:] if self.image_token_id in p else p
            rows.append(p[:at] + image_ids + rest)
            types.append([0] * at + image_types + [0] * len(rest))
        ids, mask, tt = left_pad(rows, self.pad_token_id, extra=types, device=pixel_values.device)
        enc = {"image": BaseModelOutputWithPooling(pooler_output=tuple(feats))}
        grid_thw = torch.tensor(grids, dtype=torch.long, device=pixel_values.device)  # (num_segments, 3)
        inputs = {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": tt.int(),
                  "image_grid_thw": grid_thw, "mm_encoder_outputs": enc}
        return inputs, vision, counts
