"""ARR-COC inside Idefics3 (``Idefics3ForConditionalGeneration``) and SmolVLM
(``SmolVLMForConditionalGeneration``), training-free: every region through the VLM's own SigLIP
vision model and connector (pixel shuffle + projection).

Tower (``Idefics3Tower``): one LLM token is a (scale_factor * patch)-pixel square (pixel shuffle
merges scale x scale patches), so a region at level s x s is its crop resampled to
s * scale_factor * patch pixels -> (s * scale)^2 patches -> s * s tokens. The vision embeddings
bucket every patch's fractional position onto the native position grid, so any such side is
accepted; the crops are square and unpadded, so ``patch_attention_mask`` is all ones (as the
model's own ``get_image_features`` builds it for an unpadded image).

Prompt layout (the processor's own tokens; the image placeholder expands to):
- ``grid == 1`` without a global view: ``<fake_token_around_image><global-img>`` + s*s ``<image>`` +
  ``<fake_token_around_image>``, the model's layout of an unsplit image (with the native level this
  is exactly the processor's output for an image at ``max_image_size``);
- otherwise the model's split-image layout: each allocated region (grid row r, column c) is a tile
  ``<fake_token_around_image><row_{r+1}_col_{c+1}>`` + its tokens, a newline after each grid row
  that has a tile, then the global view as the ``<global-img>`` image (``"\\n" + <fake><global-img>
  ... <fake>``), or, without one, a closing ``<fake_token_around_image>``. Skipped regions leave
  their tile out; the row/column tags keep every other tile's position. Grid at most 6 x 6 (the
  tokenizer's row/column tags).
The LLM receives exactly the allocated tokens (global + regions) as image features.
"""
from __future__ import annotations

import torch
from torch import Tensor
from transformers.modeling_outputs import BaseModelOutputWithPooling


from ._own_tower import TOWER_DEFAULTS, OwnTower, build_tower_encoder, splice, tower_defaults
from .base import ARRCOCAdapter, left_pad

__all__ = ["Idefics3Tower", "Idefics3Adapter", "IDEFICS3_CLASSES"]

IDEFICS3_CLASSES = ("Idefics3ForConditionalGeneration", "SmolVLMForConditionalGeneration")
FAKE, GLOBAL, IMAGE = "<fake_token_around_image>", "<global-img>", "<image>"


def _idefics3_class(vlm) -> str:
    from transformers import Idefics3ForConditionalGeneration, SmolVLMForConditionalGeneration

    for cls in (Idefics3ForConditionalGeneration, SmolVLMForConditionalGeneration):
        if isinstance(vlm, cls):
            return cls.__name__
    raise TypeError(f"vlm must be one of {', '.join(IDEFICS3_CLASSES)}, got {type(vlm).__name__}")


class Idefics3Tower(OwnTower):
    """An Idefics3 / SmolVLM model's own vision model + connector as a ``VisionBackbone``: crops of
    s * scale * patch pixels -> (N, s * s, text hidden) LLM input tokens (shared modules)."""

    def __init__(self, vlm):
        super().__init__()
        _idefics3_class(vlm)
        self.vision_model = vlm.model.vision_model
        self.connector = vlm.model.connector
        cfg = vlm.config
        self.scale = int(cfg.scale_factor)
        self.patch = int(cfg.vision_config.patch_size)
        self.feature_dim = int(cfg.text_config.hidden_size)
        self.patch_size = self.scale * self.patch  # pixels per LLM token side
        self.native_size = int(cfg.vision_config.image_size)
        self.resizable = True
        self.image_mean, self.image_std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def _features(self, pixel_values: Tensor):
        n, _, height, width = pixel_values.shape
        dtype = self.vision_model.embeddings.patch_embedding.weight.dtype
        mask = torch.ones(n, height // self.patch, width // self.patch, dtype=torch.bool,
                          device=pixel_values.device)  # (N, h, w): square unpadded crops
        hidden = self.vision_model(pixel_values=pixel_values.to(dtype), patch_attention_mask=mask,
                                   return_dict=True).last_hidden_state  # (N, h*w, Dv)
        return self.connector(hidden), height // self.patch_size, width // self.patch_size  # (N, s*s, D)


class Idefics3Adapter(ARRCOCAdapter):
    """Training-free ARR-COC for Idefics3 / SmolVLM (see the module docstring for the layout).

    vlm: ``Idefics3ForConditionalGeneration`` or ``SmolVLMForConditionalGeneration``; processor:
    its processor (required: its tokenizer holds the layout tokens); ``config``:
    ``ARRCOCVisionConfig`` fields.
    """

    DEFAULTS = TOWER_DEFAULTS  # the model-dependent ones: _own_tower.tower_defaults

    def __init__(self, vlm, processor=None, query_encoder=None, region_scorer=None,
                 pad_token_id: int | None = None, **config):
        self.vlm_class = _idefics3_class(vlm)
        tok = getattr(processor, "tokenizer", None)
        if tok is None:
            raise ValueError(f"{self.vlm_class} needs its processor (processor=...): the image layout tokens "
                             f"({FAKE}, {GLOBAL}, <row_i_col_j>) come from its tokenizer")
        self.model = vlm
        self.processor = processor
        self.tokenizer = tok
        self.tower = Idefics3Tower(vlm)
        merged = tower_defaults(self.tower, config)
        spec = merged.pop("query_encoder")
        query_encoder = spec if query_encoder is None else query_encoder  # a module or a spec dict
        self.encoder = build_tower_encoder(self.tower, vlm, processor, query_encoder, region_scorer, **merged)
        grid = self.encoder.config.grid
        if grid > 6:
            raise ValueError(f"grid must be at most 6 for {self.vlm_class} (its tokenizer tags rows and columns "
                             f"1..6), got {grid}")
        self.image_token_id = int(vlm.config.image_token_id)
        self.vocab_size = int(vlm.config.text_config.vocab_size)
        names = [FAKE, GLOBAL, IMAGE] + ([] if grid == 1 and self.encoder.config.global_tokens == 0 else
                                         [f"<row_{r + 1}_col_{c + 1}>" for r in range(grid) for c in range(grid)])
        unk = tok.unk_token_id
        missing = [t for t in names if tok.convert_tokens_to_ids(t) in (None, unk)]
        if missing:
            raise ValueError(f"the processor's tokenizer lacks the layout tokens {missing}")
        if tok.convert_tokens_to_ids(IMAGE) != self.image_token_id:
            raise ValueError(f"the tokenizer's {IMAGE} id {tok.convert_tokens_to_ids(IMAGE)} differs from the "
                             f"model's image_token_id {self.image_token_id}: processor and model do not match")
        pad = pad_token_id if pad_token_id is not None else tok.pad_token_id
        pad = pad if pad is not None else vlm.config.text_config.pad_token_id
        self.pad_token_id = int(pad if pad is not None else 0)

    def layout(self, allocation: list[int], global_tokens: int) -> tuple[str, list[int]]:
        """The image's layout text and the order of its feature blocks (region index, -1 = global)."""
        grid = self.encoder.config.grid
        if grid == 1 and global_tokens == 0:
            return FAKE + GLOBAL + IMAGE * allocation[0] + FAKE, [0] if allocation[0] else []
        text, order = "", []
        for r in range(grid):
            row = ""
            for c in range(grid):
                lv = allocation[r * grid + c]
                if lv:
                    row += f"{FAKE}<row_{r + 1}_col_{c + 1}>" + IMAGE * lv
                    order.append(r * grid + c)
            text += row + "\n" if row else ""
        if global_tokens:
            text += "\n" + FAKE + GLOBAL + IMAGE * global_tokens + FAKE
            order.append(-1)
        else:
            text += FAKE
        return text, order

    def image_features(self, vision, b: int, order: list[int]) -> Tensor:
        """Image b's LLM tokens in layout order: (n_b, D)."""
        n = int(vision.tokens_per_image[b])
        tokens, region = vision.last_hidden_state[b, :n], vision.token_region[b, :n]  # (n, D), (n,)
        parts = [tokens[region == r] for r in order]
        return torch.cat(parts, 0) if parts else tokens[:0]

    @torch.no_grad()
    def prepare(self, pixel_values: Tensor, prompt_ids, queries=None, budget=None, generator=None,
                deterministic: bool | None = None, **encoder_kwargs):
        """Allocate, encode with the VLM's own tower, expand each prompt's ``<image>`` to the layout.

        pixel_values (B, 3, H, W) normalised as the processor does; prompt_ids: B token-id lists
        with one ``<image>`` each (none: the image goes first). Returns (inputs for the VLM's forward
        / generate, ARRCOCVisionOutput, LLM image tokens per prompt (B,))."""
        prompts, vision = self._checked_encode(pixel_values, prompt_ids, queries=queries, budget=budget,
                                               generator=generator, deterministic=deterministic, **encoder_kwargs)
        n_glob = self.encoder.config.global_tokens
        feats, rows = [], []
        for b, p in enumerate(prompts):
            text, order = self.layout(vision.allocation[b].tolist(), n_glob)
            f = self.image_features(vision, b, order)  # (n_b, D)
            feats.append(f.to(self.model.dtype))
            rows.append(splice(p, self.image_token_id, self.tokenizer(text, add_special_tokens=False)["input_ids"])[0])
        ids, mask, _ = left_pad(rows, self.pad_token_id, device=pixel_values.device)
        counts = torch.tensor([f.shape[0] for f in feats], dtype=torch.long, device=pixel_values.device)  # (B,)
        enc = {"image": BaseModelOutputWithPooling(pooler_output=tuple(feats))}
        return {"input_ids": ids, "attention_mask": mask, "mm_encoder_outputs": enc}, vision, counts
