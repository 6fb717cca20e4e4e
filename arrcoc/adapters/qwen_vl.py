"""Training-free ARR-COC inside Qwen2-VL, Qwen2.5-VL and Qwen3-VL: every region is encoded by the VLM's
OWN vision tower (the same modules, shared) at the resolution its tokens buy, so the LLM receives only
tokens of the kind it was trained on, with each token's true 2-D position in M-RoPE.

Tower (``QwenVLTower``): a crop at level l = s x s is resampled to 2s x 2s patches (s x s LLM tokens
of ``patch_size * spatial_merge_size`` pixels), laid out exactly as ``Qwen2VLImageProcessor`` lays
them out (merge blocks, ``temporal_patch_size`` copies of the frame), and run through
``vlm.model.visual`` with ``grid_thw = (1, 2s, 2s)`` per crop (all crops of one level in one call,
block-diagonal attention); the class's own merger gives s*s tokens in row-major order. What differs
between the classes is inside their tower and handled there: Qwen2.5-VL's window attention and
full-attention blocks follow from ``grid_thw``; Qwen3-VL interpolates its learned position grid to
each crop's grid and also returns DeepStack features (one merged token per deepstack layer, added to
the LLM's first layers' hidden states at the image positions); those ride along as extra channels of
the tower's tokens (``feature_dim = (1 + K) * hidden``) and are split off again for the LLM.

Positions (the public seam of transformers 5.24): ``position_ids`` of shape (4, B, L) given to
``forward`` / ``generate`` (row 0 the text positions the causal mask reads, rows 1-3 M-RoPE's
temporal / height / width), exactly the layout ``generate`` itself builds; decoding then continues
each row by +1 per new token, which is right because a prompt ends in text. One image is one
``<|vision_start|> n x <|image_pad|> <|vision_end|>`` segment holding the global view's and every
allocated region's tokens; all share the temporal position of the segment start p, and a token's
height / width position is p + its row / column on the finest token grid the configuration can
produce (grid x sqrt(top level) per side): a region at the top level has exactly the positions the
whole image would have at full detail, a coarser region or the global view spreads its tokens over
the same span. Text after the image continues at p + that side, as Qwen does after an image.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from transformers.modeling_outputs import BaseModelOutputWithPooling

from arrcoc._checks import check_int
from arrcoc.backbones import VisionBackbone
from arrcoc.modeling import ARRCOCVisionConfig, ARRCOCVisionModel
from arrcoc.modeling.modeling_arrcoc import GLOBAL_REGION

from .base import ARRCOCAdapter, left_pad

__all__ = ["QwenVLTower", "QwenVLAdapter", "QWEN_VL_CLASSES", "qwen_patchify"]

QWEN_VL_CLASSES = ("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
                   "Qwen3VLForConditionalGeneration")
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # Qwen2-VL / Qwen2.5-VL processors (OpenAI CLIP)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HALF = (0.5, 0.5, 0.5)                           # Qwen3-VL processor


def _check_qwen(vlm, name: str = "vlm"):
    import transformers

    classes = tuple(getattr(transformers, n) for n in QWEN_VL_CLASSES)
    if not isinstance(vlm, classes):
        raise TypeError(f"{name} must be one of {', '.join(QWEN_VL_CLASSES)}, got {type(vlm).__name__}")
    return vlm


def qwen_patchify(pixel_values: Tensor, patch_size: int, merge_size: int, temporal_patch_size: int) -> Tensor:
    """(N, C, S, S) normalised crops -> (N * (S/patch)^2, C * temporal * patch^2) flat patches, in
    ``Qwen2VLImageProcessor``'s layout: merge blocks row-major, inside each the merge x merge patches
    row-major, each patch's values channel, frame, row, column (the frame repeated temporal times)."""
    patch_size = check_int(patch_size, "patch_size", minimum=1)
    merge_size = check_int(merge_size, "merge_size", minimum=1)
    temporal_patch_size = check_int(temporal_patch_size, "temporal_patch_size", minimum=1)
    if not isinstance(pixel_values, Tensor) or pixel_values.dim() != 4 or not pixel_values.is_floating_point():
        got = f"{pixel_values.dtype} {tuple(pixel_values.shape)}" if isinstance(pixel_values, Tensor) \
            else type(pixel_values).__name__
        raise ValueError(f"pixel_values must be a floating-point tensor (N, C, H, W), got {got}")
    unit = patch_size * merge_size
    h, w = pixel_values.shape[-2:]
    if h % unit or w % unit or h == 0 or w == 0:
        raise ValueError(f"pixel_values' sides must be positive multiples of patch_size * merge_size = {unit}, "
                         f"got {h}x{w}")
    if not torch.isfinite(pixel_values).all():
        raise ValueError("pixel_values contain NaN or inf")
    return _patchify(pixel_values, patch_size, merge_size, temporal_patch_size)


def _patchify(pixel_values: Tensor, patch_size: int, merge_size: int, temporal_patch_size: int) -> Tensor:
    """``qwen_patchify`` without the checks (the tower's crops were checked at the encoder's boundary)."""
    n, c, h, w = pixel_values.shape
    unit = patch_size * merge_size
    gh, gw = h // unit, w // unit
    x = pixel_values.reshape(n, c, gh, merge_size, patch_size, gw, merge_size, patch_size)
    x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # (N, gh, gw, m, m, C, p, p)
    x = x.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, temporal_patch_size, -1, -1)  # (N, gh, gw, m, m, C, T, p, p)
    return x.reshape(n * gh * gw * merge_size ** 2, c * temporal_patch_size * patch_size ** 2)


class QwenVLTower(VisionBackbone):
    """A Qwen2-VL / Qwen2.5-VL / Qwen3-VL model's own vision tower as an ARR-COC ``VisionBackbone``.

    ``forward(pixel_values (N, 3, S, S), grid)`` with ``S = grid * patch_size`` returns the exact
    tokens the VLM's LLM would receive for each crop (N, grid*grid, feature_dim), row-major.
    ``patch_size`` is the pixel side of one LLM token (vision patch x spatial merge: 28 for
    Qwen2-VL-2B). The tower is the VLM's own module, shared and not registered here (the VLM owns,
    moves and saves it); it runs in the VLM's dtype and returns tokens in the crops' dtype.

    feature_dim = (1 + deepstack_layers) * llm_dim: Qwen3-VL's DeepStack features follow the main
    tokens as extra channels (``split`` separates them); for Qwen2-VL and Qwen2.5-VL it is llm_dim.
    image_mean / image_std: the VLM processor's normalisation (``processor`` given: read from its
    image processor; else the class's published defaults).
    """

    resizable = True

    def __init__(self, vlm, processor=None, native_tokens: int = 32):
        super().__init__()
        vlm = _check_qwen(vlm)
        self.__dict__["visual"] = vlm.model.visual  # shared with the VLM, deliberately not a submodule
        vc = vlm.config.vision_config
        if int(vc.in_channels) != 3:
            raise ValueError(f"the VLM's tower takes {vc.in_channels} channels; ARR-COC passes RGB crops")
        self.vit_patch = int(vc.patch_size)
        self.merge = int(vc.spatial_merge_size)
        self.temporal = int(vc.temporal_patch_size)
        self.patch_size = self.vit_patch * self.merge
        self.native_size = check_int(native_tokens, "native_tokens", minimum=1) * self.patch_size
        self.llm_dim = int(vlm.config.text_config.hidden_size)
        self.deepstack_layers = len(getattr(vc, "deepstack_visual_indexes", None) or ())
        self.feature_dim = self.llm_dim * (1 + self.deepstack_layers)
        self.vlm_class = type(vlm).__name__
        qwen3 = self.vlm_class.startswith("Qwen3")
        mean, std = (_HALF, _HALF) if qwen3 else (_CLIP_MEAN, _CLIP_STD)
        if processor is not None:
            ip = getattr(processor, "image_processor", processor)
            for attr, want in (("patch_size", self.vit_patch), ("merge_size", self.merge),
                               ("temporal_patch_size", self.temporal)):
                got = getattr(ip, attr, want)
                if got is not None and int(got) != want:
                    raise ValueError(f"processor's {attr} is {got} but the VLM's tower uses {want}")
            mean, std = tuple(ip.image_mean), tuple(ip.image_std)
        self.image_mean = tuple(float(v) for v in mean)
        self.image_std = tuple(float(v) for v in std)

    def encode(self, pixel_values: Tensor, grid: int):
        """The tower's raw outputs for (N, 3, S, S) crops: main tokens (N, g*g, llm_dim) and a list of
        ``deepstack_layers`` tensors of the same shape, in the VLM's dtype."""
        n = pixel_values.shape[0]
        visual = self.visual
        dtype = next(visual.parameters()).dtype
        device = next(visual.parameters()).device
        patches = _patchify(pixel_values.to(device=device, dtype=dtype), self.vit_patch, self.merge,
                            self.temporal)  # (N * (2g)^2, C*T*p*p)
        side = grid * self.merge
        grid_thw = torch.tensor([[1, side, side]] * n, dtype=torch.long, device=device)  # (N, 3)
        out = visual(patches, grid_thw=grid_thw, return_dict=True)
        main = out.pooler_output.reshape(n, grid * grid, self.llm_dim)  # (N, g*g, D)
        deep = [d.reshape(n, grid * grid, self.llm_dim) for d in (getattr(out, "deepstack_features", None) or [])]
        return main, deep

    def _features(self, pixel_values: Tensor) -> tuple[Tensor, int, int]:
        grid = pixel_values.shape[-1] // self.patch_size
        main, deep = self.encode(pixel_values, grid)
        tokens = torch.cat([main, *deep], dim=-1) if deep else main  # (N, g*g, feature_dim)
        return tokens.to(pixel_values.dtype), grid, grid

    def split(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(..., feature_dim) -> main tokens (..., llm_dim) and the deepstack features (..., llm_dim) each."""
        if not isinstance(tokens, Tensor) or tokens.shape[-1] != self.feature_dim:
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"tokens must have {self.feature_dim} channels in the last dimension, got {got}")
        parts = tokens.split(self.llm_dim, dim=-1)
        return parts[0], list(parts[1:])


def _mrope_positions(token_region: Tensor, grid: int, global_side: int, allocation: Tensor, top_side: int,
                    start: int) -> tuple[Tensor, int]:
    """M-RoPE (t, h, w) positions (3, n) of one image's n real tokens (global view first, then each
    allocated region's s x s tokens in region order, as ``ARRCOCVisionOutput`` orders them) and the
    side F of the shared token grid (text after the image starts at ``start + F``).

    A token at row i of an s-row block that spans rows [a, a + k) of the F-row grid sits at
    ``a + floor((2i + 1) k / (2s))``: the grid row holding its centre."""
    F_side = grid * top_side  # a global view finer than this would share positions (never by default)
    n_glob = int((token_region == GLOBAL_REGION).sum())
    rows, cols = [], []
    if n_glob:
        idx = torch.arange(global_side)
        r = (2 * idx + 1) * F_side // (2 * global_side)  # (g,)
        rows.append(r.repeat_interleave(global_side))
        cols.append(r.repeat(global_side))
    cell = F_side // grid
    for reg, level in enumerate(allocation.tolist()):
        if level <= 0:
            continue
        s = math.isqrt(level)
        idx = torch.arange(s)
        off = (2 * idx + 1) * cell // (2 * s)  # (s,)
        rows.append((reg // grid) * cell + off.repeat_interleave(s))
        cols.append((reg % grid) * cell + off.repeat(s))
    h = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
    w = torch.cat(cols) if cols else torch.zeros(0, dtype=torch.long)
    t = torch.zeros_like(h)
    return torch.stack([t, h, w]) + start, F_side  # (3, n)


class _MainChannels:
    """Hands a region scorer only the LLM-token channels of the tower's features (Qwen3-VL's DeepStack
    channels stay out of it); not a module (it wraps the VLM's own)."""

    def __init__(self, scorer, llm_dim: int):
        self.scorer, self.llm_dim = scorer, llm_dim

    def __call__(self, glimpse_tokens: Tensor, region_features: Tensor, queries):
        return self.scorer(glimpse_tokens[..., :self.llm_dim], region_features[..., :self.llm_dim], queries)


class QwenVLAdapter(ARRCOCAdapter):
    """Training-free ARR-COC for Qwen2-VL / Qwen2.5-VL / Qwen3-VL: regions encoded by the VLM's own tower.

    vlm: a ``Qwen2VLForConditionalGeneration``, ``Qwen2_5_VLForConditionalGeneration`` or
    ``Qwen3VLForConditionalGeneration``; processor: its processor (optional: the normalisation, the
    tokenizer and the chat template come from it); ``config``: ``ARRCOCVisionConfig`` fields, over
    ``DEFAULTS``. The encoder is ``self.encoder`` (an ``ARRCOCVisionModel``), its backbone ``self.tower``.
    Prompts: B token-id lists, each with at most one ``<|image_pad|>`` (the processor's chat template
    writes ``<|vision_start|><|image_pad|><|vision_end|>``; a bare ``<|image_pad|>`` is wrapped; none:
    the image goes first); the placeholder becomes exactly the image's allocated token count.
    """

    # each default with its reason
    DEFAULTS = dict(
        image_size=896,            # Qwen2-VL-2B's full detail at 28 px/token: 32 x 32 = 1024 tokens
        grid=4,                    # 16 cells of 224 px: 8 x 8 tokens each at the model's native scale
        levels=(0, 16, 64, 256),   # a 4 x 4 look, the cell at native scale, a 2x zoom for small print
        global_tokens=64,          # an 8 x 8 thumbnail (224 px, one cheap tower pass) is also the glimpse
        budget=256,                # a quarter of the 1024 tokens the VLM spends on the 896-px image
        concept=False,             # ConSE needs EfficientNet's ImageNet head; the VLM scorer takes its place
        query_encoder={"type": "bytes", "dim": 64},  # the learned head is silent untrained: keep it tiny
    )

    def __init__(self, vlm, processor=None, query_encoder=None, region_scorer=None,
                 pad_token_id: int | None = None, **config):
        from ._own_tower import build_tower_encoder

        self.vlm_class = type(_check_qwen(vlm)).__name__
        self.model = vlm
        self.processor = processor
        self.tower = QwenVLTower(vlm, processor)
        if region_scorer is not None and self.tower.deepstack_layers:
            region_scorer = _MainChannels(region_scorer, self.tower.llm_dim)
        merged = {**self.DEFAULTS, **config}
        spec = merged.pop("query_encoder")
        query_encoder = spec if query_encoder is None else query_encoder  # a module or a spec dict
        self.encoder = build_tower_encoder(self.tower, vlm, processor, query_encoder, region_scorer, **merged)
        cfg = vlm.config
        self.image_token_id = int(cfg.image_token_id)
        self.vision_start_id = int(cfg.vision_start_token_id)
        self.vision_end_id = int(cfg.vision_end_token_id)
        self.vocab_size = int(cfg.text_config.vocab_size)
        self.top_side = math.isqrt(self.encoder.config.levels[-1])
        tok = getattr(processor, "tokenizer", None)
        pad = pad_token_id if pad_token_id is not None else getattr(tok, "pad_token_id", None)
        pad = pad if pad is not None else cfg.text_config.pad_token_id
        self.pad_token_id = check_int(pad if pad is not None else 0, "pad_token_id", minimum=0,
                                      maximum=self.vocab_size - 1)

    def _image_ids(self, prompt: list[int], n: int) -> tuple[list[int], list[int], int]:
        """The prompt with its placeholder expanded to n image tokens (wrapped in vision start / end
        unless the prompt has them around it): (ids, mm_token_type_ids, index of the first image token)."""
        if self.image_token_id in prompt:
            at = prompt.index(self.image_token_id)
            before, after = prompt[:at], prompt[at + 1:]
        else:
            before, after = [], prompt
        if not (before and before[-1] == self.vision_start_id and after and after[0] == self.vision_end_id):
            before, after = before + [self.vision_start_id], [self.vision_end_id] + after
        ids = before + [self.image_token_id] * n + after
        types = [0] * len(before) + [1] * n + [0] * len(after)
        return ids, types, len(before)

    @torch.no_grad()
    def prepare(self, pixel_values: Tensor, prompt_ids, queries=None, budget=None, generator=None,
                deterministic: bool | None = None, **encoder_kwargs):
        """Allocate, encode every region with the VLM's own tower, expand each prompt's placeholder.

        pixel_values (B, 3, H, W) normalised as the VLM's processor does (``self.tower.image_mean``).
        Returns (inputs for the VLM's forward / generate: input_ids, attention_mask,
        mm_token_type_ids, position_ids (4, B, L), mm_encoder_outputs; the ARRCOCVisionOutput; image
        tokens per prompt (B,))."""
        prompts, vision = self._checked_encode(pixel_values, prompt_ids, queries=queries, budget=budget,
                                               generator=generator, deterministic=deterministic, **encoder_kwargs)
        cfg = self.encoder.config
        dtype = self.model.dtype
        counts = vision.tokens_per_image  # (B,)
        main, deep = [], [[] for _ in range(self.tower.deepstack_layers)]
        rows, types, mrope = [], [], []
        for b, p in enumerate(prompts):
            n = int(counts[b])
            tok, extra = self.tower.split(vision.last_hidden_state[b, :n])  # (n, D), K x (n, D)
            main.append(tok.to(dtype))
            for k, e in enumerate(extra):
                deep[k].append(e.to(dtype))
            ids, tt, at = self._image_ids(p, n)
            img, side = _mrope_positions(vision.token_region[b, :n].cpu(), cfg.grid, cfg.global_side,
                                        vision.allocation[b].cpu(), self.top_side, start=at)  # (3, n)
            after = len(ids) - at - n
            pos = torch.cat([torch.arange(at).expand(3, -1), img,
                             at + side + torch.arange(after).expand(3, -1)], dim=1)  # (3, len(ids))
            rows.append(ids)
            types.append(tt)
            mrope.append(pos)
        device = pixel_values.device
        ids, mask, tt = left_pad(rows, self.pad_token_id, extra=types, device=device)
        length = ids.shape[1]
        position_ids = torch.zeros(4, len(rows), length, dtype=torch.long)  # padding: 0, as Qwen's own
        position_ids[0] = (mask.cpu().cumsum(-1) - 1).clamp_min(0) * mask.cpu()  # text row (causal mask)
        for b, pos in enumerate(mrope):
            position_ids[1:, b, length - pos.shape[1]:] = pos
        if deep:
            from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

            enc = BaseModelOutputWithDeepstackFeatures(pooler_output=tuple(main),
                                                       deepstack_features=[tuple(d) for d in deep])
        else:
            enc = BaseModelOutputWithPooling(pooler_output=tuple(main))
        inputs = {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": tt.int(),
                  "position_ids": position_ids.to(device), "mm_encoder_outputs": {"image": enc}}
        return inputs, vision, counts
