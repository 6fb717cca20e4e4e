"""RelevanceAllocator: scorers -> posterior -> Thompson sampling -> budgeted allocation.

One nn.Module assembling the pieces (DESIGN.md section 2, steps 3 to 6). Learnable parts: the query
scorer's projections and the calibration of every channel (slope a_k, offset b_k, log precision
lambda_k) plus the hierarchical prior (mu_global, log tau, log sigma), fitted by empirical Bayes
(calibration.py) or by gradient. Allocation itself is discrete and carries no gradient.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._validate import (all_finite, as_budget, check_features, check_generator_or_none, check_pixels,
                        check_region_index, first_non_finite)
from .concept import ConceptScorer, pool_windows, window_pairs
from .config import CHANNELS, EXTERNAL, STANDARDIZED, RelevanceConfig
from .cues import COLOUR_NAMES, QuestionBatch, colour_match, region_centres, spatial_prior, text_density
from .knapsack import (Allocation, allocate_random, allocate_top_k, allocate_uniform, exclude_regions,
                       solve_unchecked, utility_table, utility_unchecked)
from .posterior import RelevancePosterior, add_evidence, build_posterior
from .scene_text import SceneText
from .scorers import InformationScorer, QueryScorer, SalienceScorer, standardize
from .thompson import thompson

__all__ = ["RelevanceAllocator", "RelevanceOutput", "BASELINES"]

BASELINES = ("uniform", "random", "top_k_salience", "top_k_query")


class RelevanceOutput(NamedTuple):
    allocation: Tensor           # (B, R) long: tokens per region
    level_index: Tensor          # (B, R) long: index into config.levels
    relevance_mean: Tensor       # (B, R) posterior mean of the relevance logit
    relevance_var: Tensor        # (B, R) posterior variance (aleatoric + epistemic)
    tokens_used: Tensor          # (B,) long
    utility: Tensor              # (B,) utility of the allocation under the sampled probabilities
    scores: dict                 # channel name -> (B, R) raw scorer output (before standardisation)
    posterior: RelevancePosterior  # posterior state (for update / allocate)
    insufficient_budget: Tensor  # (B,) bool: budget below the smallest level, nothing allocated
    probability: Tensor          # (B, R) success probabilities p_i the allocation used
    draws: Tensor                # (B, S, R) Thompson draws (the mean, S = 1, when deterministic)
    query_present: Tensor        # (B,) bool: the image had a query (else the query channel is absent)


class RelevanceAllocator(nn.Module):
    """Decide how many tokens each region gets. See the package docstring for the pipeline.

    forward(region_features (B, R, D), *, region_pixels (B, R, C, h, w) | None, query_embeds
    (B, T, Dq) | None, query_mask (B, T) bool | None, budget int | LongTensor (B,) | None,
    generator, deterministic) -> RelevanceOutput. query_dim None means query_dim = feature_dim.
    Channels: see config.CHANNELS; without pixels the pixel channels are absent, without a query
    (or with an all-False query_mask row) the query channel is absent for that image.
    """

    _EPS = 1e-6  # standardisation floor: a channel with std below this over an image is uninformative

    def __init__(self, config: RelevanceConfig | None = None, feature_dim: int = 768,
                 query_dim: int | None = None, concept: ConceptScorer | None = None):
        super().__init__()
        if config is None:
            config = RelevanceConfig()
        if not isinstance(config, RelevanceConfig):
            raise TypeError(f"config must be a RelevanceConfig, got {type(config).__name__}")
        for name, v in (("feature_dim", feature_dim), ("query_dim", query_dim)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.config = config
        self.feature_dim = feature_dim
        self.query_dim = feature_dim if query_dim is None else query_dim
        self.information = InformationScorer(config.histogram_bins, config.soft_histogram,
                                             config.feature_temperature, config.histogram_max_pixels)
        self.salience = SalienceScorer(config.grid, config.spectral_size, config.spectral_blur)
        self.query = QueryScorer(feature_dim, self.query_dim, config.num_heads, config.head_dim,
                                 config.laplace_prior_precision)
        # zero-shot ConSE channel: needs the backbone's own classifier and class-name embeddings
        # (the encoder builds it for the pretrained default); None = no concept / text_concept channel
        if concept is not None and not isinstance(concept, ConceptScorer):
            raise TypeError(f"concept must be a ConceptScorer or None, got {type(concept).__name__}")
        if concept is not None and concept.feature_dim != feature_dim:
            raise ValueError(f"concept scorer takes {concept.feature_dim}-dim features, allocator {feature_dim}")
        self.concept = concept
        K = len(CHANNELS)
        self.slope = nn.Parameter(torch.full((K,), float(config.init_slope)))
        self.offset = nn.Parameter(torch.full((K,), float(config.init_offset)))
        self.log_precision = nn.Parameter(torch.tensor([math.log(config.init_precision[c]) for c in CHANNELS]))
        self.mu_global = nn.Parameter(torch.tensor(float(config.mu_global)))
        self.log_tau = nn.Parameter(torch.tensor(math.log(config.tau)))
        self.log_sigma = nn.Parameter(torch.tensor(math.log(config.sigma)))

    # ------------------------------------------------------------------ parameters
    def calibration(self, like: Tensor) -> dict[str, Tensor]:
        """Current calibration as tensors of like's dtype/device: slope, offset, precision (K,),
        mu_global, tau, sigma (scalars)."""
        kw = dict(dtype=like.dtype, device=like.device)
        return dict(slope=self.slope.to(**kw), offset=self.offset.to(**kw),
                    precision=self.log_precision.exp().to(**kw), mu_global=self.mu_global.to(**kw),
                    tau=self.log_tau.exp().to(**kw), sigma=self.log_sigma.exp().to(**kw))

    # ------------------------------------------------------------------ steps (internal: inputs trusted)
    def score(self, region_features: Tensor, *, region_pixels: Tensor | None = None,
              query_embeds: Tensor | None = None, query_mask: Tensor | None = None,
              question: QuestionBatch | None = None, channel_scores: dict | None = None,
              concept_features: Tensor | None = None, scene_text: SceneText | None = None):
        """Run the scorers on checked inputs. Returns (raw scores dict, obs (B,K,R), mask (B,K,R),
        epistemic factor (B,R,E) on the obs scale with its channels (E,), loc (B,K), scale (B,K)).
        channel_scores: scores of the ``EXTERNAL`` channels computed by the caller, (B, R) each.
        concept_features: (B, R, D) the ConSE channels' second look (see forward; None: region_features only).
        scene_text: the text read in each region (see forward; None: no scene_text / text_match channel)."""
        B, R, D = region_features.shape
        grey = None if region_pixels is None else region_pixels.to(region_features.dtype).mean(2)  # (B, R, h, w)
        raw = {}
        raw.update(self.information(region_features, region_grey=grey, validate=False))
        raw.update(self.salience(region_features, region_grey=grey, validate=False))
        q = self.query.compute(region_features, query_embeds, query_mask)
        raw["query"] = q.score
        dt, dev = region_features.dtype, region_features.device
        cue_present, cue_sd = self._question_scores(raw, region_features, region_pixels, grey, question,
                                                    concept_features, scene_text)
        raw.update(channel_scores or {})
        K = len(CHANNELS)
        obs = region_features.new_zeros(B, K, R)
        mask = torch.zeros(B, K, R, dtype=torch.bool, device=dev)
        loc = region_features.new_zeros(B, K)
        scale = region_features.new_ones(B, K)
        factor = q.cov_factor  # (B, R, H)
        for k, name in enumerate(CHANNELS):
            if name not in raw:
                continue
            s = raw[name].to(dt)  # (B, R)
            present = q.present if name == "query" else cue_present.get(
                name, torch.ones(B, dtype=torch.bool, device=dev))
            if name not in STANDARDIZED:  # question channels: centred, fixed scale (config.cue_scale)
                sk = self.config.cue_scale[name]
                lk = s.mean(1)  # (B,)
                s = (s - lk[:, None]) / sk
                loc[:, k], scale[:, k] = lk, sk
            elif self.config.standardize == "image":
                s, lk, sk = standardize(s, self._EPS, validate=False)
                # a channel constant over the image says nothing about which region matters: it is
                # treated as unobserved there (and later evidence for it is used on the raw scale)
                informative = sk > self._EPS
                present = present & informative
                loc[:, k] = torch.where(informative, lk, torch.zeros_like(lk))
                scale[:, k] = torch.where(informative, sk, torch.ones_like(sk))
                if name == "query":
                    factor = (factor - factor.mean(1, keepdim=True)) / scale[:, k, None, None]
            obs[:, k] = s
            mask[:, k] = present[:, None]
        if not all_finite(torch.where(mask, obs, torch.zeros_like(obs))):  # one sync for every scorer
            bad = sorted({CHANNELS[k] for k in (mask & ~torch.isfinite(obs)).nonzero()[:, 1].tolist()})
            raise ValueError(f"scorer(s) {bad} produced NaN or inf")
        factor = factor * mask[:, CHANNELS.index("query"), :, None]  # no epistemic term where absent
        channels = [CHANNELS.index("query")] * factor.shape[-1]
        if "concept" in cue_sd:  # the ConSE score's sd over each region's class distribution
            k = CHANNELS.index("concept")
            factor = torch.cat([factor, (cue_sd["concept"].to(dt) / scale[:, k, None] * mask[:, k])[..., None]], -1)
            channels.append(k)
        return raw, obs, mask, (factor, channels), loc, scale

    def _question_scores(self, raw: dict, region_features: Tensor, region_pixels: Tensor | None,
                         grey: Tensor | None, question: QuestionBatch | None,
                         concept_features: Tensor | None = None,
                         scene_text: SceneText | None = None) -> tuple[dict, dict]:
        """Add the zero-shot question channels to ``raw``; returns (present (B,) per channel, sd per channel)."""
        present, sd = {}, {}
        R = region_features.shape[1]
        if question is None:
            return present, sd
        reading = question.reading.to(region_features.dtype)  # (B,)
        if self.concept is not None:
            looks = [(1.0, region_features)]  # (weight, features): the glimpse, and the crop if given
            if concept_features is not None:
                w = self.config.concept_crop_weight
                looks = [(1.0 - w, region_features), (w, concept_features.to(region_features.dtype))]
            G = self.config.grid
            pairs = None  # the window look: also score every pair of adjacent regions (config.concept_windows)
            if self.config.concept_windows and R == G * G and G > 1:
                pairs = window_pairs(G, device=region_features.device)  # (W, 2)
            logps = [(w, self.concept.class_log_probs(f, pairs)) for w, f in looks if w > 0]  # (B, R[+W], C) once per look
            cs = [(w, self.concept.score_log_probs(lp, question.concept_vector)) for w, lp in logps]
            score = sum(w * c.score for w, c in cs)  # (B, R[+W])
            spread = sum(w * c.sd for w, c in cs)  # (B, R[+W]): the looks' sds, as if fully correlated
            if pairs is not None:  # each region: its own score plus the best gain of a window holding it
                score, spread = pool_windows(score, spread, pairs)  # (B, R)
            raw["concept"], sd["concept"] = score, spread
            present["concept"] = question.concept_present
            if self.concept.text_embedding is not None:
                text = self.concept.text_embedding.expand(region_features.shape[0], -1)
                ts = sum(w * self.concept.score_log_probs(lp, text).score for w, lp in logps)  # (B, R[+W])
                if pairs is not None:
                    ts = pool_windows(ts, torch.zeros_like(ts), pairs)[0]  # (B, R)
                raw["text_concept"] = reading[:, None] * ts
                present["text_concept"] = reading > 0
        if grey is not None:
            raw["text_pixels"] = reading[:, None] * text_density(grey, validate=False)
            present["text_pixels"] = reading > 0
            rgb = region_pixels.to(region_features.dtype)
            raw["colour"] = colour_match(rgb, question.colours.to(rgb.dtype), validate=False)
            present["colour"] = question.colours.sum(-1) > 0
        G = self.config.grid
        if R == G * G:
            centres = region_centres(G, device=region_features.device, dtype=region_features.dtype)
            target = question.spatial.to(region_features.dtype)
            raw["spatial"] = spatial_prior(centres, target)
            present["spatial"] = ~torch.isnan(target).all(-1)
        if scene_text is not None:  # OCR: how much text each region holds, and the question's words in it
            dt = region_features.dtype
            raw["scene_text"] = reading[:, None] * torch.log1p(scene_text.chars.to(dt))  # (B, R)
            present["scene_text"] = (reading > 0) & scene_text.has_text
            raw["text_match"] = scene_text.match.to(dt)  # (B, R)
            present["text_match"] = scene_text.match.amax(1) > 0  # a question that matches nothing: no evidence
        return present, sd

    def posterior_from_scores(self, obs: Tensor, mask: Tensor, factor=None,
                              loc: Tensor | None = None, scale: Tensor | None = None
                              ) -> RelevancePosterior:
        """Hierarchical posterior from channel observations (B, K, R) with this module's calibration.
        factor: None, the query head's (B, R, H) factor, or (factor (B, R, E), channel of each column)."""
        cal = self.calibration(obs)
        B = obs.shape[0]
        prior = {k: cal[k].expand(B) for k in ("mu_global", "tau", "sigma")}
        if isinstance(factor, tuple):
            factor, channels = factor
        else:
            channels = CHANNELS.index("query")
        post = build_posterior(obs, mask, cal["slope"], cal["offset"], cal["precision"], **prior,
                               epistemic_factor=factor, epistemic_channel=channels if factor is not None else None)
        return post._replace(channel_loc=loc, channel_scale=scale)

    def region_budget(self, budget, batch: int, device) -> Tensor:
        """Total-token budget (int or (B,), default ``config.budget``) -> tokens for the regions (B,)."""
        total = as_budget(self.config.budget if budget is None else budget, batch, device, minimum=None)
        g = self.config.global_tokens
        if bool((total < g).any()):  # one sync: sign and global-view cost together
            raise ValueError(f"budget {total.tolist()} is below the global view's cost of {g} tokens "
                             "(budget counts the global view and the regions)" if g else
                             f"budget must be non-negative, got {total.tolist()}")
        return total - g

    def allocate(self, posterior: RelevancePosterior, budget=None, generator: torch.Generator | None = None,
                 deterministic: bool = False, exclude: Tensor | None = None, solver: str | None = None,
                 return_draws: bool = False, region_budget: Tensor | None = None):
        """Thompson-sample success probabilities and solve the knapsack -> Allocation
        (and the ThompsonDraws when return_draws). budget: total tokens (see ``region_budget``);
        region_budget (B,) long, if given, is the regions' share directly (internal callers)."""
        cfg = self.config
        B = posterior.batch_size
        dev = posterior.evidence_precision.device
        bud = self.region_budget(budget, B, dev) if region_budget is None else region_budget
        check_generator_or_none(generator, deterministic)
        td = thompson(posterior, cfg.num_thompson, generator, deterministic, cfg.probability)
        lv = torch.tensor(cfg.levels, dtype=td.probability.dtype, device=dev)  # (L,)
        table = utility_unchecked(td.probability, posterior.var, lv, cfg.cost, cfg.gain_ref_tokens,
                                  cfg.content_variance, cfg.gain, cfg.gain_half * cfg.levels[-1],
                                  cfg.gain_steepness)  # (B, R, L)
        table = exclude_regions(table, exclude)  # (B, R, L)
        alloc = solve_unchecked(table, lv.long(), bud, solver or cfg.solver)
        return (alloc, td) if return_draws else alloc

    def update(self, posterior: RelevancePosterior, region_index: Tensor, refined_scores,
               mask: Tensor | None = None) -> RelevancePosterior:
        """Sequential update with refined evidence for some regions (B, K) -> new posterior.

        refined_scores: a (B, K) tensor (the "refined" channel, raw scale, its own calibration) or a
        dict channel name -> (B, K) raw scores of that scorer (standardised with the glimpse's
        per-image loc/scale, then its calibration). Every region's posterior moves (through mu_img).
        mask: (B, K) bool, False for padded slots (images of a batch refining different numbers of
        regions); masked slots carry no evidence and their scores are ignored.
        """
        B, R = posterior.evidence_precision.shape
        idx = check_region_index(region_index, B, R)
        if mask is None:
            mask = torch.ones_like(idx, dtype=torch.bool)
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != idx.shape:
            raise ValueError(f"mask must be a bool tensor of shape {tuple(idx.shape)}")
        items = refined_scores.items() if isinstance(refined_scores, dict) else [("refined", refined_scores)]
        dt = posterior.evidence_precision.dtype
        cal = self.calibration(posterior.evidence_precision)
        for name, s in items:
            if name not in CHANNELS:
                raise ValueError(f"refined_scores has unknown channel {name!r}; known: {CHANNELS}")
            if not isinstance(s, Tensor) or not s.dtype.is_floating_point or s.shape != idx.shape:
                raise TypeError(f"refined_scores[{name!r}] must be a floating-point tensor of shape {tuple(idx.shape)}")
            k = CHANNELS.index(name)
            s = torch.where(mask, s.to(dt), torch.zeros((), dtype=dt, device=s.device))  # padded: placeholder
            if not all_finite(s):
                raise ValueError(f"refined_scores[{name!r}] contains NaN or inf")
            if posterior.channel_loc is not None and name != "refined":
                s = (s - posterior.channel_loc[:, k, None]) / posterior.channel_scale[:, k, None]
            posterior = add_evidence(posterior, idx, s, cal["slope"][k], cal["offset"][k], cal["precision"][k], mask)
        return posterior

    # ------------------------------------------------------------------ public entry point (checked)
    def forward(self, region_features: Tensor, *, region_pixels: Tensor | None = None,
                query_embeds: Tensor | None = None, query_mask: Tensor | None = None,
                budget=None, generator: torch.Generator | None = None, deterministic: bool = False,
                question: QuestionBatch | None = None, channel_scores: dict | None = None,
                concept_features: Tensor | None = None, scene_text: SceneText | None = None) -> RelevanceOutput:
        """Score, infer, sample, allocate. Shapes in the RelevanceOutput field comments.

        question: the cues of each image's question (``QuestionBatch.from_cues(parse_questions(...))``)
        for the zero-shot question channels (None: only the bottom-up and learned channels).
        concept_features: (B, R, Dc) a second look for the ConSE channels, e.g. each region's own
        crop (``ARRCOCVisionModel.concept_glimpse``): their score is the
        ``config.concept_crop_weight``-weighted mean of the scorer on it and on region_features
        (None: region_features alone). Only read with a concept scorer and a question. With
        ``config.concept_windows`` each look also scores the windows of two adjacent regions
        (``concept.pool_windows``).
        channel_scores: ``{name: (B, R) scores}`` for channels the caller computes (``EXTERNAL``:
        "vlm_query", a VLM's own question-to-region score); z-scored per image like the bottom-up
        channels and weighted by their calibrated precision.
        scene_text: the text an OCR reader found, per region (``scene_text.region_scene_text``): the
        "scene_text" channel (reading questions) and "text_match" (a question word written there).

        budget: total tokens per image (int or (B,); default ``config.budget``), of which
        ``config.global_tokens`` are already spent on a global view. Validates every argument once;
        the steps it calls trust them (a forward costs a handful of host synchronisations).
        """
        check_features(region_features, finite=False)
        B, R, D = region_features.shape
        if D != self.feature_dim:
            raise ValueError(f"region_features last dim must be feature_dim={self.feature_dim}, got {D}")
        tensors = {"region_features": region_features}
        if concept_features is not None:
            check_features(concept_features, "concept_features", finite=False)
            want = (B, R, self.concept.feature_dim if self.concept is not None else D)
            if tuple(concept_features.shape) != want:
                raise ValueError(f"concept_features must have shape {want} (B, R, the concept scorer's feature "
                                 f"dim), got {tuple(concept_features.shape)}")
            tensors["concept_features"] = concept_features
        if region_pixels is not None:
            if not isinstance(region_pixels, Tensor) or region_pixels.dim() != 5 \
                    or region_pixels.shape[:2] != (B, R):
                raise ValueError(f"region_pixels must have shape ({B}, {R}, C, h, w), got "
                                 f"{tuple(getattr(region_pixels, 'shape', ()))}")
            tensors["region_pixels"] = check_pixels(region_pixels, finite=False)
        if channel_scores is not None:
            if not isinstance(channel_scores, dict):
                raise TypeError(f"channel_scores must be a dict of channel name -> (B, R) tensor, "
                                f"got {type(channel_scores).__name__}")
            for name, sc in channel_scores.items():
                if name not in EXTERNAL:
                    raise ValueError(f"channel_scores has unknown channel {name!r}; expected one of {EXTERNAL}")
                if not isinstance(sc, Tensor) or not sc.is_floating_point() or tuple(sc.shape) != (B, R):
                    got = f"{sc.dtype} {tuple(sc.shape)}" if isinstance(sc, Tensor) else type(sc).__name__
                    raise ValueError(f"channel_scores[{name!r}] must be a floating (B, R) = ({B}, {R}) tensor, got {got}")
                tensors[f"channel_scores[{name!r}]"] = sc
        if query_embeds is not None:
            qm = self.query.check_query(query_embeds, query_mask, B, finite=False)
            tensors["query_embeds (at valid tokens)"] = torch.where(qm[..., None], query_embeds,
                                                                    torch.zeros_like(query_embeds))
        if scene_text is not None:
            if not isinstance(scene_text, SceneText):
                raise TypeError(f"scene_text must be a SceneText (relevance.scene_text.region_scene_text), "
                                f"got {type(scene_text).__name__}")
            for name, want in (("chars", (B, R)), ("match", (B, R)), ("has_text", (B,))):
                t = getattr(scene_text, name)
                if not isinstance(t, Tensor) or tuple(t.shape) != want:
                    raise ValueError(f"scene_text.{name} must have shape {want}, got {tuple(getattr(t, 'shape', ()))}")
            if scene_text.has_text.dtype != torch.bool or not scene_text.chars.is_floating_point() \
                    or not scene_text.match.is_floating_point():
                raise TypeError("scene_text.chars and .match must be floating tensors and .has_text bool")
            tensors["scene_text.chars"], tensors["scene_text.match"] = scene_text.chars, scene_text.match
        bad = first_non_finite(tensors)  # one host sync for every input
        if bad is not None:
            raise ValueError(f"{bad} contains NaN or inf")
        if question is not None:
            self._check_question(question, B)
        bud = self.region_budget(budget, B, region_features.device)
        check_generator_or_none(generator, deterministic)
        raw, obs, mask, factor, loc, scale = self.score(region_features, region_pixels=region_pixels,
                                                        query_embeds=query_embeds, query_mask=query_mask,
                                                        question=question, channel_scores=channel_scores,
                                                        concept_features=concept_features, scene_text=scene_text)
        post = self.posterior_from_scores(obs, mask, factor, loc, scale)
        alloc, td = self.allocate(post, None, generator, deterministic, return_draws=True, region_budget=bud)
        return RelevanceOutput(alloc.levels, alloc.level_index, post.mean, post.var, alloc.tokens_used,
                               alloc.utility, raw, post, alloc.insufficient_budget, td.probability, td.draws,
                               mask[:, CHANNELS.index("query"), 0])

    def _check_question(self, question, B: int) -> None:
        if not isinstance(question, QuestionBatch):
            raise TypeError(f"question must be a QuestionBatch, got {type(question).__name__}")
        shapes = {"concept_present": (B,), "reading": (B,), "colours": (B, len(COLOUR_NAMES)), "spatial": (B, 2)}
        for name, shape in shapes.items():
            t = getattr(question, name)
            if not isinstance(t, Tensor) or tuple(t.shape) != shape:
                raise ValueError(f"question.{name} must have shape {shape}, got {tuple(getattr(t, 'shape', ()))}")
        v = question.concept_vector
        if not isinstance(v, Tensor) or v.dim() != 2 or v.shape[0] != B:
            raise ValueError(f"question.concept_vector must have shape ({B}, Dq)")
        if self.concept is not None and v.shape[1] != self.concept.embed_dim and bool(question.concept_present.any()):
            raise ValueError(f"question.concept_vector has {v.shape[1]} dims, the concept scorer {self.concept.embed_dim}")

    def allocate_baseline(self, output: RelevanceOutput, kind: str, budget=None,
                          generator: torch.Generator | None = None) -> Allocation:
        """Baselines for evaluation, scored under the posterior-mean utility table:
        "uniform", "random" (needs generator), "top_k_salience" (mean z-score of the salience
        channels), "top_k_query" (query attention score; needs a query for every image)."""
        cfg = self.config
        post = output.posterior
        B = post.batch_size
        bud = self.region_budget(budget, B, post.evidence_precision.device)
        p = torch.sigmoid(post.mean) if cfg.probability == "sigmoid" else torch.softmax(post.mean, -1)  # (B, R)
        table = utility_table(p, post.var, cfg.levels, cost=cfg.cost,
                              gain_ref_tokens=cfg.gain_ref_tokens, content_variance=cfg.content_variance,
                              gain=cfg.gain, gain_half_tokens=cfg.gain_half * cfg.levels[-1],
                              gain_steepness=cfg.gain_steepness)
        if kind == "uniform":
            return allocate_uniform(table, cfg.levels, bud)
        if kind == "random":
            if generator is None:
                raise ValueError("generator is required for the 'random' baseline")
            return allocate_random(table, cfg.levels, bud, generator)
        if kind == "top_k_salience":
            names = [n for n in ("salience_contrast", "salience_spectral") if n in output.scores]
            z = torch.stack([standardize(output.scores[n].to(table.dtype))[0] for n in names]).mean(0)
            return allocate_top_k(table, cfg.levels, bud, z, "top_k_salience")
        if kind == "top_k_query":
            if not output.query_present.all():
                raise ValueError("top_k_query needs a query for every image (query_embeds was absent)")
            return allocate_top_k(table, cfg.levels, bud, output.scores["query"].to(table.dtype), "top_k_query")
        raise ValueError(f"kind must be one of {BASELINES}, got {kind!r}")
