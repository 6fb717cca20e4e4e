"""Configuration of the relevance allocator (one JSON-serialisable dataclass)."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RelevanceConfig", "CHANNELS", "STANDARDIZED", "EXTERNAL", "validate_levels"]

# Observation channels of the relevance posterior, in the order they are stacked (dim K).
# Each scorer contributes one or two noisy observations of the relevance logit r_i; "refined" is the
# channel of evidence added after the glimpse (sequential update, e.g. a high-resolution re-score).
CHANNELS = (
    "information_pixel",    # Shannon entropy of the region's intensity histogram (needs pixels)
    "information_feature",  # entropy of softmax(region feature / T) over feature dims
    "salience_contrast",    # centre-surround cosine contrast of the region feature
    "salience_spectral",    # spectral-residual saliency pooled over the region (needs pixels)
    "query",                # pooled cross-attention logit of the query over the region (learned head)
    "refined",              # later evidence (RelevanceAllocator.update with a plain tensor)
    # zero-shot question channels (observed only when the question has the cue; fixed scale, not
    # z-scored, so a question that matches no region stays a small signal):
    "concept",              # ConSE: class-name embedding of the region vs the question's content words
    "text_concept",         # ConSE against a fixed "printed text" phrase (reading questions)
    "text_pixels",          # thin-stroke density of the region's pixels (reading questions)
    "colour",               # share of the region's pixels in a colour the question names
    "spatial",              # closeness of the region to a position the question names
    "scene_text",           # log characters read by OCR in the region (reading questions; scene_text.py)
    "text_match",           # a question word is written in the region (OCR; scene_text.py)
    # given from outside the allocator (``channel_scores``), z-scored per image like the bottom-up ones:
    "vlm_query",            # a VLM's own zero-shot question score of each region (arrcoc.adapters)
)
# Channels that are z-scored per image when standardize == "image" (the bottom-up scorers and the
# learned head, whose units are arbitrary); the others carry their own fixed scale (``cue_scale``).
STANDARDIZED = ("information_pixel", "information_feature", "salience_contrast", "salience_spectral", "query",
                "vlm_query")
# Channels whose scores the caller computes and passes to ``RelevanceAllocator.forward(channel_scores=)``.
EXTERNAL = ("vlm_query",)


def validate_levels(levels, name: str = "levels") -> tuple[int, ...]:
    """Check token levels: integers, sorted ascending, unique, 0 included, at least one nonzero."""
    if hasattr(levels, "tolist") and not isinstance(levels, (list, tuple)):  # a tensor or an array
        levels = levels.tolist()
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ints, got {type(levels).__name__}")
    out = []
    for v in levels:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer():
            raise TypeError(f"{name} must contain integers, got {v!r}")
        out.append(int(v))
    if len(out) < 2:
        raise ValueError(f"{name} must contain 0 and at least one positive level, got {out}")
    if any(v < 0 for v in out):
        raise ValueError(f"{name} must be non-negative, got {out}")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not contain duplicates, got {out}")
    if out != sorted(out):
        raise ValueError(f"{name} must be sorted ascending, got {out}")
    if out[0] != 0:
        raise ValueError(f"{name} must include 0 (a region may get no tokens), got {out}")
    return tuple(out)


def _default_precision() -> dict[str, float]:
    # Untrained belief in each channel (1 / noise variance, in relevance-logit units). The bottom-up
    # channels only break ties (z-scored, weak). The learned cross-attention head starts at 1e-3:
    # untrained it is noise, so it must not move the posterior until training (or empirical Bayes)
    # raises its precision. The zero-shot question channels carry the question: concept (ConSE) is
    # the main one; the reading and colour cues are strong because when a question names them they
    # pick few regions; the spatial prior is firm but leaves room for content to disagree.
    # vlm_query (a VLM's own question-to-region similarity, training-free) is z-scored, so it has
    # unit spread whether or not the question matches anything: 0.5 lets it lead the bottom-up
    # channels without overriding the spatial / reading / colour cues.
    # scene_text (OCR characters) is the reading cue's firmest look: a line the recogniser reads is
    # text, where stroke density also fires on foliage; text_match (a question word written in the
    # region) is as firm as the colour cue: it names few regions, and a wrong one is rare.
    # Empirical Bayes / supervised calibration (calibration.py) replaces all of these.
    return {"vlm_query": 0.5, "information_pixel": 0.1, "information_feature": 0.1, "salience_contrast": 0.1,
            "salience_spectral": 0.1, "query": 1e-3, "refined": 4.0, "concept": 1.0,
            "text_concept": 0.5, "text_pixels": 2.0, "colour": 2.0, "spatial": 4.0,
            "scene_text": 2.0, "text_match": 2.0}


def _default_cue_scale() -> dict[str, float]:
    # Score units per relevance-logit unit of the question channels (their scores are centred over
    # the regions of an image, then divided by this). concept: ConSE cosines of MiniLM embeddings
    # differ by ~0.1 between a matching and an unrelated region; text_concept likewise; text_pixels:
    # text-bearing regions have 5-15 % more stroke pixels than plain ones; colour: a region
    # holding the named object has ~15-40 % of its pixels in that colour; spatial: the bump is 1 at
    # the named position, so 1/3 makes the named cell ~3 logits above far cells; scene_text: log(1 +
    # characters), a line of small print (~20 characters per region) is ~3 above an empty region and
    # ~1.4 above a one-word sign, so 1.0 keeps a paragraph ahead of a label by ~1.4 logits and leaves
    # the named word (text_match) and the content (concept) to pick among text regions (1.0 and 2.0 tie
    # on the check set's tuning seeds, 148 of 194; at 2.0 the bundled scene's "text line at the
    # bottom" loses its 400 tokens to the STOP sign at 1024); text_match: 1 for a word that is its
    # whole line fully inside the region, 0.25 makes that ~4 logits.
    return {"concept": 0.12, "text_concept": 0.12, "text_pixels": 0.05, "colour": 0.1, "spatial": 0.33,
            "scene_text": 1.0, "text_match": 0.25}


def _per_channel(given: dict, defaults: dict, name: str, known) -> dict[str, float]:
    """``defaults`` updated with ``given`` (channel -> positive finite float); unknown channels refused."""
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"{name} has unknown channels {sorted(unknown)}; known: {known}")
    out = dict(defaults)
    out.update({k: float(v) for k, v in given.items()})
    if any(not (math.isfinite(v) and v > 0) for v in out.values()):
        raise ValueError(f"{name} values must be positive and finite, got {out}")
    return out


@dataclass
class RelevanceConfig:
    """Everything the relevance allocator needs; every field is JSON-serialisable.

    The comment above each field gives the reason for its default. ``levels`` are validated (sorted,
    unique, 0 included); ``to_json``/``from_json`` round-trip the config.
    """

    # DeepSeek-OCR's Tiny/Small/Base/Large token counts (8x8, 10x10, 16x16, 20x20 grids) plus "skip".
    levels: tuple[int, ...] = (0, 64, 100, 256, 400)
    # Total visual tokens per image, everywhere in ARR-COC (this config, ARRCOCVisionConfig, the CLI):
    # what the user pays for, global view included. 1024 is ~16 % of full detail on the default
    # grid (64 + 16 x 400 = 6464): room for one Large (400) region plus a few Base ones, the regime
    # where the choice of regions matters (token pruning papers report at 11-33 % of tokens).
    budget: int = 1024
    # Tokens of the budget already spent on a global view before the regions are allocated: 0 when
    # the allocator is used alone; the encoder sets it to its thumbnail's tokens.
    global_tokens: int = 0
    # 4x4 grid of regions (DESIGN step 1); used for neighbour-based centre-surround and the mosaic
    # spectral residual when R == grid**2.
    grid: int = 4
    # One draw is pure Thompson sampling (exploration in proportion to uncertainty); more draws
    # average success probabilities (the utility is linear in p, so this averages the utility).
    num_thompson: int = 1
    # How a region's relevance logit becomes the weight p_i of its utility. "softmax" (default):
    # p = softmax(r) over the image's regions, the probability that region i holds what the question
    # asks about (one answer, regions compete: tokens concentrate where the posterior points, and a
    # flat posterior spreads them). "sigmoid": each region on its own, p_i = sigmoid(r_i).
    probability: str = "softmax"
    # Price of one token in utility units (see knapsack.py): with softmax weights and the
    # "resolution" gain, a region holding under ~1 % of the answer probability is worth no tokens
    # even when the budget is not used up; a flat posterior (p = 1/16 each) still buys every region.
    cost: float = 2e-5
    # Value of looking at a region with l tokens. "resolution" (default): the chance that l tokens
    # resolve the detail a question needs, 1 / (1 + (h / l)^gain_steepness) with h = gain_half x the
    # top level: an S-curve in log-tokens. With DeepSeek-OCR's levels h = 256 (Base), steepness 3:
    # q(64) = 0.02, q(100) = 0.06, q(256) = 0.5, q(400) = 0.79 -- a 64-token look rarely resolves a
    # detail (DeepSeek-OCR's precision falls steeply at high compression and saturates near Large),
    # the 256 -> 400 upgrade is worth about as much per token as a second region's 256, so the
    # region the posterior favours gets Large and the rest Base or nothing. "information": the
    # Gaussian information gain 0.5 log(1 + l (c + v) / gain_ref_tokens) (concave: the first tokens
    # of every region are worth most, which spreads the budget thinly).
    gain: str = "resolution"
    gain_half: float = 0.64
    gain_steepness: float = 3.0
    # Exact multiple-choice knapsack by default; "greedy" is the fast approximate alternative.
    solver: str = "dp"
    # Tokens at which the information-gain curve reaches 0.5*log(2): the smallest nonzero level.
    gain_ref_tokens: float = 64.0
    # Prior variance of a region's content (signal variance in the gain formula); 1 on the
    # standardised scale so relevance uncertainty v_i adds to it on a comparable scale.
    content_variance: float = 1.0
    # Cross-attention heads and per-head width of the query scorer: small (the scorer must be far
    # cheaper than the backbone) yet multi-head so different query words can attend differently.
    num_heads: int = 8
    head_dim: int = 32
    # Prior precision of the query head's output projection in the last-layer Laplace posterior
    # (used until fit_query_laplace is run on data): 64 = num_heads**2, a prior std of 1/8, the
    # size of the initial head-averaging weights, so an untrained head is uncertain at its own scale.
    laplace_prior_precision: float = 64.0
    # Intensity histogram bins: 32 resolves texture vs flat regions at a few thousand pixels/region.
    histogram_bins: int = 32
    # Pixels per region that enter the histogram (strided subsample above that): a 32-bin entropy is
    # estimated well from a few hundred pixels, and this caps the cost at 256 B R whatever the crop size.
    histogram_max_pixels: int = 256
    # Soft (linear-interpolation) histogram: differentiable in the pixels, same cost as the hard one.
    soft_histogram: bool = True
    # Temperature of the softmax over feature dims for the feature-entropy score.
    feature_temperature: float = 1.0
    # Side of the square image on which the spectral residual is computed (Hou & Zhang 2007 use 64).
    spectral_size: int = 64
    # Standard deviation (pixels at spectral_size) of the Gaussian blur of the saliency map.
    spectral_blur: float = 2.5
    # "image": z-score every channel over the regions of each image (scales of unrelated scorers
    # become comparable without training); "none": raw scores (a_k, b_k must then be calibrated).
    standardize: str = "image"
    # Hierarchical prior on the standardised scale: mu_img ~ N(mu_global, tau^2), r_i ~ N(mu_img,
    # sigma^2). Unit scales match z-scored evidence; mu_global = -1 (p = 0.27 a priori): most regions
    # of an image do not hold the answer to a given question, so tokens go where evidence points.
    mu_global: float = -1.0
    tau: float = 1.0
    sigma: float = 2.0
    # Initial calibration s_k = a_k r + b_k + noise / sqrt(lambda_k) per channel.
    init_slope: float = 1.0
    init_offset: float = 0.0
    init_precision: dict[str, float] = field(default_factory=_default_precision)
    # Fixed scales of the question channels (see _default_cue_scale).
    cue_scale: dict[str, float] = field(default_factory=_default_cue_scale)
    # Weight of the region's own crop in the ConSE channels when the encoder gives one
    # (``concept_features``); the rest goes to the glimpse's pooled cell. Two looks at one region:
    # the crop is clean of neighbours (objects that fill one or two cells: the check set), the
    # glimpse keeps the context of an object spanning many cells (a cup filling the photo, whose
    # cells alone are classified as wood or saucer). 0.5 averages them: on the check set's tuning
    # seeds 75 / 66 % hit@top at 640 / 1024 against 80 / 67 % for the crop alone and 70 / 61 % for
    # the glimpse alone, and it keeps scikit-image's coffee photo right where the crop alone fails.
    concept_crop_weight: float = 0.5
    # The window look of the ConSE channels (R == grid**2 only): besides each region alone, score
    # every 1x2 and 2x1 window of two adjacent regions (24 on 4x4) from the mean of the two regions'
    # pooled features (the glimpse's: exactly the window's pooled cells; the crops': the mean of the
    # two crops'; no extra backbone pass, and the head is affine, so only their logits are averaged),
    # and a window that scores above both its halves adds that gain to them (``concept.pool_windows``):
    # for objects split over two regions. Off: on the check set's tuning seeds 1 / 2 it moved hit@top
    # from 74.5 / 76.0 % to 76.6 / 74.0 % at 640 tokens and from 63.8 / 68.0 % to 61.7 / 70.0 % at
    # 1024 (means 75.3 / 65.9 % either way), on held-out seed 0 from 75.5 / 73.5 % to 73.5 / 75.5 %:
    # a mean of two halves' features mostly scores between them, so it seldom lifts a split object
    # above a single region that looks like the question on its own (real window crops did worse).
    concept_windows: bool = False


    def __post_init__(self):
        self.levels = validate_levels(self.levels, "levels")
        if isinstance(self.budget, bool) or not float(self.budget).is_integer():
            raise TypeError(f"budget must be an int number of tokens, got {self.budget!r}")
        self.budget = int(self.budget)
        if self.budget < 0:
            raise ValueError(f"budget must be non-negative, got {self.budget}")
        if isinstance(self.global_tokens, bool) or not float(self.global_tokens).is_integer() \
                or not 0 <= int(self.global_tokens) <= self.budget:
            raise ValueError(f"global_tokens must be an int in [0, budget={self.budget}], got {self.global_tokens!r}")
        self.global_tokens = int(self.global_tokens)
        for name in ("grid", "num_thompson", "num_heads", "head_dim", "histogram_bins",
                     "histogram_max_pixels", "spectral_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.histogram_bins < 2:
            raise ValueError(f"histogram_bins must be >= 2, got {self.histogram_bins}")
        for name in ("cost", "content_variance", "mu_global", "init_offset", "gain_ref_tokens",
                     "laplace_prior_precision", "feature_temperature", "tau", "sigma", "spectral_blur",
                     "gain_half", "gain_steepness", "init_slope"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{name} must be a real number, got {type(v).__name__} {v!r}")
        for name in ("cost", "content_variance", "mu_global", "init_offset"):
            v = float(getattr(self, name))
            if not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v}")
        if self.cost < 0:
            raise ValueError(f"cost must be non-negative, got {self.cost}")
        for name in ("gain_ref_tokens", "laplace_prior_precision", "feature_temperature", "tau",
                     "sigma", "spectral_blur", "gain_half", "gain_steepness"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v}")
        if isinstance(self.concept_crop_weight, bool) or not isinstance(self.concept_crop_weight, (int, float)) \
                or not 0.0 <= float(self.concept_crop_weight) <= 1.0:
            raise ValueError(f"concept_crop_weight must be a real number in [0, 1], got {self.concept_crop_weight!r}")
        self.concept_crop_weight = float(self.concept_crop_weight)
        if not isinstance(self.concept_windows, bool):
            raise TypeError(f"concept_windows must be a bool, got {type(self.concept_windows).__name__} "
                            f"{self.concept_windows!r}")
        if self.content_variance < 0:
            raise ValueError(f"content_variance must be non-negative, got {self.content_variance}")
        if self.probability not in ("softmax", "sigmoid"):
            raise ValueError(f"probability must be 'softmax' or 'sigmoid', got {self.probability!r}")
        if self.gain not in ("resolution", "information"):
            raise ValueError(f"gain must be 'resolution' or 'information', got {self.gain!r}")
        self.cue_scale = _per_channel(self.cue_scale, _default_cue_scale(), "cue_scale",
                                      sorted(_default_cue_scale()))
        if self.solver not in ("dp", "greedy"):
            raise ValueError(f"solver must be 'dp' or 'greedy', got {self.solver!r}")
        if self.standardize not in ("image", "none"):
            raise ValueError(f"standardize must be 'image' or 'none', got {self.standardize!r}")
        self.init_precision = _per_channel(self.init_precision, _default_precision(), "init_precision", CHANNELS)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples) that json.dumps accepts."""
        d = dataclasses.asdict(self)
        d["levels"] = list(self.levels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RelevanceConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown RelevanceConfig fields {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "RelevanceConfig":
        return cls.from_dict(json.loads(s))
