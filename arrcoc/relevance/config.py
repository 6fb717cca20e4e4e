"""Configuration of the relevance allocator (one JSON-serialisable dataclass)."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RelevanceConfig", "CHANNELS", "validate_levels"]

# Observation channels of the relevance posterior, in the order they are stacked (dim K).
# Each scorer contributes one or two noisy observations of the relevance logit r_i; "refined" is the
# channel of evidence added after the glimpse (sequential update, e.g. a high-resolution re-score).
CHANNELS = (
    "information_pixel",    # Shannon entropy of the region's intensity histogram (needs pixels)
    "information_feature",  # entropy of softmax(region feature / T) over feature dims
    "salience_contrast",    # centre-surround cosine contrast of the region feature
    "salience_spectral",    # spectral-residual saliency pooled over the region (needs pixels)
    "query",                # pooled cross-attention logit of the query over the region
    "refined",              # later evidence (RelevanceAllocator.update with a plain tensor)
)


def validate_levels(levels, name: str = "levels") -> tuple[int, ...]:
    """Check token levels: integers, sorted ascending, unique, 0 included, at least one nonzero."""
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ints, got {type(levels).__name__}")
    out = []
    for v in levels:
        if isinstance(v, bool) or not float(v).is_integer():
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
    # Untrained belief in each channel (1 / noise variance on the standardised score scale): the
    # query channel is the participatory, question-dependent evidence and dominates when present;
    # the bottom-up channels only break ties. Empirical Bayes (calibration.py) replaces these.
    return {"information_pixel": 0.25, "information_feature": 0.25, "salience_contrast": 0.5,
            "salience_spectral": 0.5, "query": 2.0, "refined": 4.0}


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
    # Price of one token in utility units: a region believed relevant (p ~ 1) is worth the Large
    # level, one at p ~ 0.5 is worth Base, one at p ~ 0.1 is worth nothing (see allocation.py).
    cost: float = 1e-3
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
    # sigma^2). Unit scales match z-scored evidence; mu_global = 0 means p = 0.5 a priori.
    mu_global: float = 0.0
    tau: float = 1.0
    sigma: float = 1.0
    # Initial calibration s_k = a_k r + b_k + noise / sqrt(lambda_k) per channel.
    init_slope: float = 1.0
    init_offset: float = 0.0
    init_precision: dict[str, float] = field(default_factory=_default_precision)

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
        for name in ("cost", "content_variance", "mu_global", "init_offset"):
            v = float(getattr(self, name))
            if not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v}")
        if self.cost < 0:
            raise ValueError(f"cost must be non-negative, got {self.cost}")
        for name in ("gain_ref_tokens", "laplace_prior_precision", "feature_temperature", "tau",
                     "sigma", "spectral_blur"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v}")
        if self.content_variance < 0:
            raise ValueError(f"content_variance must be non-negative, got {self.content_variance}")
        if self.solver not in ("dp", "greedy"):
            raise ValueError(f"solver must be 'dp' or 'greedy', got {self.solver!r}")
        if self.standardize not in ("image", "none"):
            raise ValueError(f"standardize must be 'image' or 'none', got {self.standardize!r}")
        prec = dict(_default_precision())
        unknown = set(self.init_precision) - set(CHANNELS)
        if unknown:
            raise ValueError(f"init_precision has unknown channels {sorted(unknown)}; known: {CHANNELS}")
        prec.update({k: float(v) for k, v in self.init_precision.items()})
        if any(not (math.isfinite(v) and v > 0) for v in prec.values()):
            raise ValueError(f"init_precision values must be positive and finite, got {prec}")
        self.init_precision = prec

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
