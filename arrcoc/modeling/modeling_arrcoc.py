"""``ARRCOCVisionModel``: the ARR-COC vision encoder as a transformers ``PreTrainedModel``.

Forward pass (DESIGN.md section 2): regions (global thumbnail + G x G grid) -> glimpse (one cheap
backbone pass that also yields the global thumbnail's tokens) -> relevance allocator (scorers,
conjugate posterior, Thompson sampling, knapsack) -> encode every region of one level in one batched
backbone call with exactly ``level`` tokens -> region position embeddings -> padded output.
With ``num_rounds > 1`` the region budget is spent in rounds and the features of the regions just
encoded update the relevance posterior (``RelevanceAllocator.update``) before the next allocation.
"""
from __future__ import annotations

import arrcoc.backbones  # noqa: F401  (applies the torchvision fix before transformers loads)

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from arrcoc.backbones import VisionBackbone, build_backbone, build_query_encoder
from arrcoc.backbones.scene_text import SceneTextReader, require_scene_text, scene_text_available
from arrcoc.relevance.allocator import RelevanceAllocator
from arrcoc.relevance.config import RelevanceConfig

from arrcoc.relevance.cues import QuestionBatch
from arrcoc.relevance.question import parse_questions
from arrcoc.relevance.scene_text import SceneText, question_words, region_scene_text

from .configuration_arrcoc import ARRCOCVisionConfig
from .zero_shot import build_concept_scorer
from .regions import crop_resize, grid_boxes, level_side, resize, sincos_2d, token_centres

__all__ = ["ARRCOCVisionModel", "ARRCOCVisionOutput", "ARRCOCPreTrainedModel", "GLOBAL_REGION", "PAD_REGION"]

GLOBAL_REGION = -1  # token_region value of the global thumbnail's tokens
PAD_REGION = -2     # token_region value of padding (attention_mask 0)


@dataclass
class ARRCOCVisionOutput(ModelOutput):
    """Output of ``ARRCOCVisionModel`` (B images, R regions, N_max tokens after padding).

    last_hidden_state (B, N_max, D): global thumbnail tokens first, then each allocated region's
        tokens in region order; zeros where padded.
    attention_mask (B, N_max) long: 1 for real tokens.
    allocation (B, R) long: tokens given to each region (0 = skipped).
    relevance_mean, relevance_var (B, R): posterior relevance of each region (var = total:
        aleatoric + epistemic).
    relevance_epistemic_var (B, R): the part of relevance_var due to scorer-parameter uncertainty.
    region_boxes (B, R, 4): (x0, y0, x1, y1) in pixel_values coordinates.
    token_region (B, N_max) long: region of each token; -1 global thumbnail, -2 padding.
    tokens_per_image (B,) long: global tokens + allocation.sum(-1) (== attention_mask.sum(-1)).
    region_features (B, R, D): glimpse features the allocator saw.
    concept_features (B, R, D): the ConSE channel's second look (each region's own crop at
        ``config.concept_side``), weighed against region_features by the relevance config's
        ``concept_crop_weight``; None when it did not run (the channel read region_features only).
    """

    last_hidden_state: Tensor | None = None
    attention_mask: Tensor | None = None
    allocation: Tensor | None = None
    relevance_mean: Tensor | None = None
    relevance_var: Tensor | None = None
    relevance_epistemic_var: Tensor | None = None
    region_boxes: Tensor | None = None
    token_region: Tensor | None = None
    tokens_per_image: Tensor | None = None
    region_features: Tensor | None = None
    concept_features: Tensor | None = None


class ARRCOCPreTrainedModel(PreTrainedModel):
    config_class = ARRCOCVisionConfig
    base_model_prefix = "arrcoc"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _no_split_modules = []

    def _init_weights(self, module):
        # Only ARR-COC's own new parameters are initialised here; backbones and text encoders come
        # initialised (or with packaged pretrained weights) and must not be overwritten.
        if isinstance(module, ARRCOCVisionModel) and module.region_embed is not None:
            nn.init.normal_(module.region_embed.weight, std=self.config.initializer_range)


class ARRCOCVisionModel(ARRCOCPreTrainedModel):
    """ARR-COC vision encoder. See the module docstring and ``ARRCOCVisionOutput``."""

    def __init__(self, config: ARRCOCVisionConfig, backbone: VisionBackbone | None = None,
                 query_encoder: nn.Module | None = None, region_scorer=None):
        """Build from ``config``; the three optional arguments are constructor seams:

        backbone: a ``VisionBackbone`` used as is instead of building ``config.backbone`` (e.g. a
            VLM's own vision tower from ``arrcoc.adapters``: its modules are shared, not copied).
            Required when ``config.backbone["type"] == "vlm"``.
        query_encoder: a text encoder (``arrcoc.backbones.text`` interface) used instead of
            building ``config.query_encoder``.
        region_scorer: a callable ``(glimpse_tokens (B, n, D), region_features (B, R, D), queries
            list[str] | None) -> {"vlm_query": (B, R)}`` run after the glimpse; its scores enter the
            relevance posterior as the external channel "vlm_query". Kept unregistered (it usually
            wraps modules of a VLM that the VLM owns and moves).
        """
        # The model owns a copy: filling in the backbone's normalisation below must not change the
        # caller's config object (which may configure other models).
        config = copy.deepcopy(config)
        super().__init__(config)
        if backbone is not None and not isinstance(backbone, VisionBackbone):
            raise TypeError(f"backbone must be an arrcoc.backbones.VisionBackbone, got {type(backbone).__name__}")
        if backbone is None and config.is_vlm_tower:
            raise ValueError("this config wraps a VLM's own vision tower (backbone type 'vlm'); build the model "
                             "with arrcoc.adapters.from_vlm(vlm) or pass backbone=<the tower>")
        if query_encoder is not None and not (isinstance(query_encoder, nn.Module)
                                              and hasattr(query_encoder, "tokenize") and hasattr(query_encoder, "dim")):
            raise TypeError("query_encoder must be an nn.Module with .dim and .tokenize() (arrcoc.backbones.text), "
                            f"got {type(query_encoder).__name__}")
        if region_scorer is not None and not callable(region_scorer):
            raise TypeError(f"region_scorer must be callable, got {type(region_scorer).__name__}")
        self.__dict__["region_scorer"] = region_scorer
        # every random initial weight (query head, region embeddings, untrained backbones) is drawn
        # from a private generator seeded by config.init_seed: the same config gives the same model
        # in every process, and the caller's global RNG stream is not advanced
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.init_seed)
            self.backbone = backbone if backbone is not None else build_backbone(config.backbone)
            self.query_encoder = query_encoder if query_encoder is not None else build_query_encoder(config.query_encoder)
            dim = self.backbone.feature_dim
            rel = RelevanceConfig(levels=tuple(config.levels), budget=config.budget,
                                  global_tokens=config.global_tokens, grid=config.grid, **config.relevance)
            concept = None
            if config.concept is not False:
                concept = build_concept_scorer(config.backbone, self.query_encoder, self.backbone,
                                               required=config.concept is True)
            self.allocator = RelevanceAllocator(rel, feature_dim=dim, query_dim=self.query_encoder.dim,
                                                concept=concept)
            # the OCR reader (config.scene_text): a plain object, not a module (no parameters of ours)
            if config.scene_text is True:
                require_scene_text()  # PretrainedPackageMissing with the install line
            on = config.scene_text is True or (config.scene_text == "auto" and concept is not None
                                               and scene_text_available())
            self.scene_text_reader = SceneTextReader() if on else None
            # the glimpse's side: 16 for ConSE (see the config), else the thumbnail's own pass when it
            # has at least one token per region; with no thumbnail (global_tokens=0) an 8 x 8 pass
            gs = config.global_side
            self.glimpse_side = config.glimpse_side or (
                16 if concept is not None else (max(gs, config.grid) if gs else max(8, config.grid)))
            self.region_embed = nn.Embedding(config.num_regions + 1, dim) if config.region_embeddings else None
            mean = config.image_mean or list(self.backbone.image_mean)
            std = config.image_std or list(self.backbone.image_std)
            config.image_mean, config.image_std = [float(v) for v in mean], [float(v) for v in std]
            self.post_init()

    # ------------------------------------------------------------------ inputs
    @property
    def hidden_size(self) -> int:
        return self.backbone.feature_dim

    def tokenize_queries(self, queries: Sequence[str] | str, device=None) -> tuple[Tensor, Tensor]:
        """Query strings -> (input_ids, attention_mask) for this model's query encoder."""
        return self.query_encoder.tokenize(queries, device=device)

    def _stats(self, which: str, ref: Tensor) -> Tensor:
        vals = getattr(self.config, which) if which.startswith("image_") else getattr(self.backbone, which[3:])
        return torch.tensor(vals, dtype=ref.dtype, device=ref.device).view(1, 3, 1, 1)

    def _unnormalise(self, pixel_values: Tensor) -> Tensor:
        return pixel_values * self._stats("image_std", pixel_values) + self._stats("image_mean", pixel_values)

    def _to_backbone(self, pixel_values: Tensor) -> Tensor:
        if list(self.backbone.image_mean) == self.config.image_mean and list(self.backbone.image_std) == self.config.image_std:
            return pixel_values
        rgb = self._unnormalise(pixel_values)
        return (rgb - self._stats("bb_image_mean", rgb)) / self._stats("bb_image_std", rgb)

    def _check_pixels(self, pixel_values) -> Tensor:
        if not isinstance(pixel_values, Tensor):
            raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise ValueError("pixel_values must have shape (B, 3, H, W) (RGB); "
                             f"got {tuple(pixel_values.shape)}")
        if not pixel_values.is_floating_point():
            raise TypeError(f"pixel_values must be floating point (normalised), got {pixel_values.dtype}")
        h, w = pixel_values.shape[-2:]
        if min(h, w) < 4 * self.config.grid:
            raise ValueError(f"pixel_values of {h}x{w} are too small for a {self.config.grid}x{self.config.grid} "
                             f"region grid (need at least {4 * self.config.grid} pixels per side)")
        if not torch.isfinite(pixel_values).all():
            raise ValueError("pixel_values contain NaN or inf")
        # float64 / float16 / bfloat16 pixels are cast to the working dtype here, at the boundary:
        # that of ARR-COC's own modules (the allocator). A shared VLM tower may run in another
        # dtype (a VLM loaded in bf16): ``_backbone`` casts its inputs and outputs.
        dtype = self.work_dtype
        if pixel_values.dtype == dtype:
            return pixel_values
        cast = pixel_values.to(dtype)
        if not torch.isfinite(cast).all():
            raise ValueError(f"pixel_values overflow the model's dtype {dtype} (normalised pixels are of order 1)")
        return cast

    def _queries(self, batch, queries, query_input_ids, query_attention_mask, query_embeds, query_mask, device):
        if queries is not None:
            if isinstance(queries, str):
                queries = [queries] * batch
            queries = list(queries)
            if len(queries) != batch:
                raise ValueError(f"got {batch} images but {len(queries)} queries; pass one query per image")
            query_input_ids, query_attention_mask = self.tokenize_queries(queries, device=device)
        if query_input_ids is not None:
            if query_input_ids.dim() != 2 or query_input_ids.shape[0] != batch:
                raise ValueError(f"query_input_ids must have shape ({batch}, T), got {tuple(query_input_ids.shape)}")
            if query_attention_mask is None:
                query_attention_mask = torch.ones_like(query_input_ids, dtype=torch.bool)
            query_embeds = self.query_encoder(query_input_ids, query_attention_mask)  # (B, T, Dq)
            query_mask = query_attention_mask.bool()
        if query_embeds is not None:
            if query_embeds.dim() != 3 or query_embeds.shape[0] != batch:
                raise ValueError(f"query_embeds must have shape ({batch}, T, Dq), got {tuple(query_embeds.shape)}")
            if query_mask is not None and query_mask.shape != query_embeds.shape[:2]:
                raise ValueError(f"query_mask must have shape {tuple(query_embeds.shape[:2])}, got {tuple(query_mask.shape)}")
        return query_embeds, query_mask

    def question_batch(self, queries: Sequence[str], device, dtype) -> QuestionBatch:
        """The zero-shot cues of each question (reading, colours, position, ConSE content embedding)."""
        cues = parse_questions(queries)
        vec = None
        if self.allocator.concept is not None:
            content = [c.content or "image" for c in cues]  # placeholder text where absent (masked out)
            vec = self.query_encoder.sentence_embedding(content).to(device=device, dtype=dtype)  # (B, Dq)
        return QuestionBatch.from_cues(cues, vec, embed_dim=self.query_encoder.dim, device=device, dtype=dtype)

    # ------------------------------------------------------------------ stages
    def glimpse(self, pixel_bb: Tensor, return_tokens: bool = False):
        """Low-resolution backbone pass(es): global thumbnail tokens (B, g*g, D) and region features
        (B, R, D): the token grid of a ``glimpse_side`` pass adaptive-pooled to G x G (the same pass
        when glimpse_side equals the thumbnail's side, else a second, finer one). With
        ``global_tokens=0`` the thumbnail tokens are (B, 0, D). ``return_tokens`` also returns the
        glimpse pass's own tokens (B, side*side, D), row-major."""
        gs, G = self.config.global_side, self.config.grid
        tokens = self._pass(pixel_bb, gs) if gs > 0 else None  # (B, gs*gs, D)
        fine = tokens if (tokens is not None and self.glimpse_side == gs) else self._pass(pixel_bb, self.glimpse_side)
        b, n, d = fine.shape
        if tokens is None:
            tokens = fine.new_zeros(b, 0, d)  # (B, 0, D): no global view
        side = self.glimpse_side
        fmap = fine.transpose(1, 2).reshape(b, d, side, side)  # (B, D, side, side)
        regions = F.adaptive_avg_pool2d(fmap, G).flatten(2).transpose(1, 2)  # (B, R, D)
        return (tokens, regions, fine) if return_tokens else (tokens, regions)

    def concept_glimpse(self, pixel_bb: Tensor, boxes: Tensor, question: QuestionBatch | None) -> Tensor | None:
        """(B, R, D) the ConSE channel's second look: each region's crop through the backbone at
        ``config.concept_side`` (192 px for EfficientNet at the default 6), average-pooled, one
        batched pass. None (the channel reads the glimpse's region features only) when there is no concept scorer,
        ``concept_side`` is 0, or no question of the batch has content words or asks to read."""
        if self.allocator.concept is None or self.config.concept_side == 0 or question is None:
            return None
        if not bool((question.concept_present | (question.reading > 0)).any()):
            return None
        return self.concept_crops(pixel_bb, boxes)

    def read_scene_text(self, rgb: Tensor, boxes: Tensor, question: QuestionBatch | None,
                        queries: Sequence[str] | None = None) -> SceneText | None:
        """The OCR channels' evidence: rgb (B, 3, H, W) in [0, 1], boxes (B, R, 4) pixels, the question
        strings (their content words are matched against the text read; None: text amount only).
        None when there is no reader (``config.scene_text``), no question, or no question of the batch
        has content words or asks to read (the reader is not run then)."""
        if self.scene_text_reader is None or question is None:
            return None
        if not bool((question.concept_present | (question.reading > 0)).any()):
            return None
        lines = self.scene_text_reader.read_batch(rgb)
        keys = None if queries is None else [question_words(c.content) for c in parse_questions(list(queries))]
        return region_scene_text(lines, boxes, keys)

    def concept_crops(self, pixel_bb: Tensor, boxes: Tensor) -> Tensor:
        """(B, R, D): each region's crop (boxes (B, R, 4)) through the backbone at
        ``config.concept_side``, average-pooled (what ``concept_glimpse`` returns when it runs)."""
        side = self.config.concept_side
        if side == 0:
            raise ValueError("concept_crops needs config.concept_side > 0 (0 means: read the glimpse's features)")
        b, r = boxes.shape[:2]
        bidx = torch.arange(b, device=pixel_bb.device).repeat_interleave(r)
        crops = crop_resize(pixel_bb, bidx, boxes.reshape(-1, 4), self.backbone.input_size(side))  # (B*R, 3, s, s)
        return self._backbone(crops, side).mean(1).reshape(b, r, -1)  # (B, R, D)

    def _pass(self, pixel_bb: Tensor, side: int) -> Tensor:
        size = self.backbone.input_size(side)
        thumb = resize(pixel_bb, size)
        return self._backbone(thumb, side)  # (B, side*side, D)

    @property
    def work_dtype(self) -> torch.dtype:
        """The dtype the allocation runs in: that of ARR-COC's own parameters."""
        return next(self.allocator.parameters()).dtype

    def _backbone(self, pixels: Tensor, side: int) -> Tensor:
        """The backbone in its own dtype (it may be a VLM's bf16 tower), features back in ours."""
        p = next(self.backbone.parameters(), None)
        if p is None or p.dtype == pixels.dtype:
            return self.backbone(pixels, side)
        return self.backbone(pixels.to(p.dtype), side).to(pixels.dtype)

    def encode_regions(self, pixel_bb: Tensor, boxes: Tensor, allocation: Tensor, select: Tensor) -> dict:
        """Encode the selected regions, one batched backbone call per level.

        Returns {(b, r): (level, D) features} for every (b, r) with select & allocation > 0.
        """
        out = {}
        for level in self.config.levels[1:]:
            idx = ((allocation == level) & select).nonzero()  # (n, 2)
            if idx.shape[0] == 0:
                continue
            side = level_side(level)
            crops = crop_resize(pixel_bb, idx[:, 0], boxes[idx[:, 0], idx[:, 1]], self.backbone.input_size(side))
            feats = self._backbone(crops, side)  # (n, level, D)
            for k, (b, r) in enumerate(idx.tolist()):
                out[(b, r)] = feats[k]
        return out

    def refine_posterior(self, posterior, region_feats: dict, keys: list, batch: int, query_embeds, query_mask):
        """Sequential update with the newly encoded regions' evidence (multi-round mode).

        Evidence: the query scorer (or, without a query, the feature-entropy scorer) re-applied to
        each region's mean-pooled high-resolution tokens -- the same channel as in the glimpse,
        standardised with the glimpse's per-image location/scale, so it is a fresh observation of
        the same relevance logit. Images with fewer new regions are masked (no evidence added).
        """
        if not keys:
            return posterior
        k_max = max(sum(1 for (b, _) in keys if b == i) for i in range(batch))
        dev = posterior.evidence_precision.device
        pooled = torch.zeros(batch, k_max, self.hidden_size, device=dev,
                             dtype=next(iter(region_feats.values())).dtype)  # (B, K, D)
        index = torch.zeros(batch, k_max, dtype=torch.long, device=dev)
        valid = torch.zeros(batch, k_max, dtype=torch.bool, device=dev)
        fill = [0] * batch
        for (b, r) in keys:
            j = fill[b]
            pooled[b, j] = region_feats[(b, r)].mean(0)
            index[b, j], valid[b, j] = r, True
            fill[b] += 1
        if query_embeds is not None:
            name, score = "query", self.allocator.query(pooled, query_embeds, query_mask).score  # (B, K)
        else:
            name, score = "information_feature", self.allocator.information(pooled, None)["information_feature"]
        return self.allocator.update(posterior, index, {name: score}, mask=valid)

    def assemble(self, global_tokens: Tensor, region_feats: dict, allocation: Tensor, boxes: Tensor,
                 height: int, width: int):
        """Pad [global, region tokens in region order] to (B, N_max, D) with mask and token_region."""
        b_sz, n_glob, d = global_tokens.shape
        totals = n_glob + allocation.sum(-1)  # (B,)
        n_max = int(totals.max())
        hidden = global_tokens.new_zeros(b_sz, n_max, d)
        token_region = torch.full((b_sz, n_max), PAD_REGION, dtype=torch.long, device=global_tokens.device)
        full = boxes.new_tensor([0.0, 0.0, float(width), float(height)]).expand(b_sz, 4)
        glob = global_tokens
        if self.region_embed is not None and n_glob > 0:
            centres = token_centres(full, self.config.global_side, height, width)  # (B, g*g, 2)
            glob = glob + sincos_2d(centres, d).to(glob.dtype) + self.region_embed.weight[0]
        hidden[:, :n_glob] = glob
        token_region[:, :n_glob] = GLOBAL_REGION
        for b in range(b_sz):
            pos = n_glob
            for r in range(allocation.shape[1]):
                lv = int(allocation[b, r])
                if lv == 0:
                    continue
                feats = region_feats[(b, r)]  # (lv, D)
                if self.region_embed is not None:
                    c = token_centres(boxes[b, r][None], level_side(lv), height, width)[0]  # (lv, 2)
                    feats = feats + sincos_2d(c, d).to(feats.dtype) + self.region_embed.weight[r + 1]
                hidden[b, pos: pos + lv] = feats
                token_region[b, pos: pos + lv] = r
                pos += lv
        attention_mask = (token_region != PAD_REGION).long()
        return hidden, attention_mask, token_region, totals

    def _check_allocation(self, allocation, batch: int, device) -> Tensor:
        """A user-given (B, R) allocation: integer tensor whose entries are all in ``config.levels``."""
        R = self.config.num_regions
        if not isinstance(allocation, Tensor) or allocation.is_floating_point() or allocation.is_complex() \
                or allocation.dtype == torch.bool or tuple(allocation.shape) != (batch, R):
            got = f"{allocation.dtype} {tuple(allocation.shape)}" if isinstance(allocation, Tensor) else type(allocation).__name__
            raise ValueError(f"allocation must be an integer tensor of shape (B, R) = ({batch}, {R}), got {got}")
        allocation = allocation.to(device=device, dtype=torch.long)
        levels = torch.tensor(self.config.levels, device=device)
        if not torch.isin(allocation, levels).all():
            bad = sorted(set(allocation[~torch.isin(allocation, levels)].tolist()))
            raise ValueError(f"allocation entries must be token levels {self.config.levels}, got {bad}")
        return allocation

    # ------------------------------------------------------------------ forward
    def forward(self, pixel_values: Tensor, queries: Sequence[str] | str | None = None,
                query_input_ids: Tensor | None = None, query_attention_mask: Tensor | None = None,
                query_embeds: Tensor | None = None, query_mask: Tensor | None = None,
                budget: int | Tensor | None = None, generator: torch.Generator | None = None,
                deterministic: bool | None = None, num_rounds: int | None = None,
                return_dict: bool | None = None, question: QuestionBatch | None = None,
                allocation: Tensor | None = None, **kwargs) -> ARRCOCVisionOutput | tuple:
        """Encode images with a relevance-allocated token budget.

        pixel_values (B, 3, H, W) normalised with ``config.image_mean/std`` (the image processor
        does this). The query is given as strings (``queries``), as token ids of this model's query
        encoder, or as precomputed ``query_embeds`` (B, T, Dq) + ``query_mask``; it is optional.
        The zero-shot cues (reading, colour, position, ConSE content) are read off the strings or
        the decoded token ids; with ``query_embeds`` pass them as ``question``
        (``model.question_batch(strings, device, dtype)``).
        budget: total tokens per image (global thumbnail + regions), int or (B,); default
        ``config.budget``. deterministic: posterior mean instead of a Thompson draw.
        allocation: (B, R) integer tokens per region, each one of ``config.levels``: encode exactly
        this allocation instead of the allocator's decision (baselines, evaluation, training under
        other policies); the posterior is still computed and reported; one round only; the budget
        is not applied to it.
        """
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        pixel_values = self._check_pixels(pixel_values)
        batch, _, height, width = pixel_values.shape
        device = pixel_values.device
        deterministic = self.config.deterministic if deterministic is None else bool(deterministic)
        rounds = self.config.num_rounds if num_rounds is None else int(num_rounds)
        if rounds < 1:
            raise ValueError(f"num_rounds must be >= 1, got {rounds}")
        region_budget = self.allocator.region_budget(budget, batch, device)  # (B,) total minus the global view
        q_emb, q_mask = self._queries(batch, queries, query_input_ids, query_attention_mask,
                                      query_embeds, query_mask, device)
        if question is None and queries is None and query_input_ids is not None and hasattr(self.query_encoder, "decode"):
            queries = self.query_encoder.decode(query_input_ids, query_attention_mask)  # the words behind the ids
        if question is None and queries is not None:  # the zero-shot cues read the words
            question = self.question_batch([queries] * batch if isinstance(queries, str) else list(queries),
                                           device, pixel_values.dtype)

        forced = None if allocation is None else self._check_allocation(allocation, batch, device)
        if forced is not None and rounds > 1:
            raise ValueError("allocation= fixes the whole allocation; it cannot be combined with num_rounds > 1")
        if forced is not None:
            deterministic = True  # nothing is drawn: the reported posterior is the posterior mean's
        pixel_bb = self._to_backbone(pixel_values)
        boxes = grid_boxes(height, width, self.config.grid, batch, device=device)  # (B, R, 4)
        global_tokens, region_features, glimpse_tokens = self.glimpse(pixel_bb, return_tokens=True)  # (B,g*g,D), (B,R,D), (B,n,D)
        channel_scores = None
        words = None if queries is None else ([queries] * batch if isinstance(queries, str) else list(queries))
        if self.region_scorer is not None:
            channel_scores = self.region_scorer(glimpse_tokens, region_features, words) or None
        rgb = self._unnormalise(pixel_values).clamp(0, 1)
        flat = boxes.reshape(-1, 4)
        bidx = torch.arange(batch, device=device).repeat_interleave(boxes.shape[1])
        region_pixels = crop_resize(rgb, bidx, flat, self.config.scorer_pixels).reshape(
            batch, boxes.shape[1], 3, self.config.scorer_pixels, self.config.scorer_pixels)  # (B, R, 3, s, s)

        first = region_budget if rounds == 1 else (region_budget // rounds)
        concept_features = self.concept_glimpse(pixel_bb, boxes, question)  # (B, R, D) or None
        scene_text = self.read_scene_text(rgb, boxes, question, words)
        rel = self.allocator(region_features, region_pixels=region_pixels, query_embeds=q_emb,
                             query_mask=q_mask, budget=first + self.config.global_tokens, generator=generator,
                             deterministic=deterministic, question=question, channel_scores=channel_scores,
                             concept_features=concept_features, scene_text=scene_text)
        allocation = rel.allocation.clone() if forced is None else forced  # (B, R)
        mean, var, posterior = rel.relevance_mean, rel.relevance_var, rel.posterior
        region_feats = self.encode_regions(pixel_bb, boxes, allocation, torch.ones_like(allocation, dtype=torch.bool))
        new_keys = list(region_feats)
        for k in range(2, rounds + 1):
            posterior = self.refine_posterior(posterior, region_feats, new_keys, batch, q_emb, q_mask)
            spent = allocation.sum(-1)  # (B,)
            target = region_budget if k == rounds else (region_budget * k) // rounds
            extra = (target - spent).clamp_min(0)
            alloc_k = self.allocator.allocate(posterior, generator=generator, deterministic=deterministic,
                                              exclude=allocation > 0, region_budget=extra)
            add = alloc_k.levels * (allocation == 0)  # (B, R): only regions not yet encoded
            allocation = allocation + add
            feats_k = self.encode_regions(pixel_bb, boxes, allocation, add > 0)
            region_feats.update(feats_k)
            new_keys = list(feats_k)
        if rounds > 1:  # the last round's evidence too: the reported posterior uses everything seen
            posterior = self.refine_posterior(posterior, region_feats, new_keys, batch, q_emb, q_mask)
            mean, var = posterior.mean, posterior.var
        hidden, attn, token_region, totals = self.assemble(global_tokens, region_feats, allocation, boxes, height, width)
        out = ARRCOCVisionOutput(last_hidden_state=hidden, attention_mask=attn, allocation=allocation,
                                 relevance_mean=mean, relevance_var=var,
                                 relevance_epistemic_var=posterior.epistemic_var, region_boxes=boxes,
                                 token_region=token_region, tokens_per_image=totals,
                                 region_features=region_features, concept_features=concept_features)
        return out if (return_dict is None or return_dict) else out.to_tuple()
