"""Encode each scene once: every region at every level, then any allocation is an assembly.

The backbone is frozen, so the tokens of region r at level l do not depend on the allocation of the
other regions. ``encode`` runs the encoder's own stages once per scene (``glimpse``,
``encode_regions`` at every level for every region) and the allocator once per question (the
posterior every policy reads); ``SceneCache.assemble`` then builds the encoder's output for any
(B, R) allocation through the model's own ``assemble`` (position and region embeddings included).
``tests/eval/test_policies.py`` checks that this equals ``ARRCOCVisionModel.forward(...,
allocation=...)`` and the model's own ARR-COC decision.

``benchmark_config`` is the encoder the benchmark runs: the pretrained default (EfficientNet-Lite0 +
MiniLM) with DeepSeek-OCR's levels at a quarter of their side, so that a 2-core CPU can encode every
level of every region of a few hundred scenes.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["benchmark_config", "SceneCache", "TokenBank", "encode", "cat_outputs", "take_output", "calibrate_supervised", "rescore",
           "score_questions"]


def benchmark_config(**overrides):
    """The benchmark's ``ARRCOCVisionConfig`` (each choice with its reason).

    levels (0, 4, 9, 16, 25): DeepSeek-OCR's 8x8 / 10x10 / 16x16 / 20x20 token grids at a quarter of
        the side (2x2 / 3x3 / 4x4 / 5x5), i.e. region crops of 64 / 96 / 128 / 160 px: the top level is
        a 160-px cell's native resolution, and encoding all four levels of 16 regions costs ~1 s per
        scene on one CPU core (the full-size levels cost ~60 s).
    global_tokens 4: the product's 8x8 thumbnail at the same quarter side (a 64-px view of the canvas).
    glimpse_side 8: the allocator's own look (a 256-px pass, 2x2 feature cells per region); not
        counted as visual tokens, as in the product.
    budget 101: 25 % of full detail (4 + 16 x 25 = 404 tokens), the budget the issue's target names.
    concept_side 0: the ConSE channel reads the same 256-px glimpse only (the product's default
        second look, 192-px crops per region, would cost more than this quarter-size world's whole
        top level, and the committed results were measured this way).
    """
    from arrcoc.modeling import ARRCOCVisionConfig

    kw = dict(levels=(0, 4, 9, 16, 25), global_tokens=4, glimpse_side=8, budget=101, image_size=640, concept_side=0)
    kw.update(overrides)
    return ARRCOCVisionConfig(**kw)


def cat_outputs(outputs):
    """Concatenate ``RelevanceOutput``s along the batch (their posteriors and score dicts too)."""
    first = outputs[0]

    def cat(vals):
        if vals[0] is None:
            return None
        if isinstance(vals[0], dict):
            return {k: torch.cat([v[k] for v in vals]) for k in vals[0]}
        if isinstance(vals[0], tuple):  # a NamedTuple: the posterior
            return type(vals[0])(*[cat([v[i] for v in vals]) for i in range(len(vals[0]))])
        return torch.cat(vals)

    return type(first)(*[cat([o[i] for o in outputs]) for i in range(len(first))])


class SceneCache(NamedTuple):
    """Tokens of every scene and the allocator's output for every question (S scenes, Q questions)."""
    global_tokens: Tensor      # (S, g*g, D) float16: the thumbnail's tokens
    region_tokens: dict        # level -> (S, R, level, D) float16: region r encoded at that level
    region_features: Tensor    # (S, R, D) float32: the glimpse features the allocator saw
    scene_of: Tensor           # (Q,) long: the scene of each question
    relevance: object          # RelevanceOutput over the Q questions (deterministic: posterior mean)
    question_ids: Tensor       # (Q, T) long: the questions in the encoder's query tokens
    question_mask: Tensor      # (Q, T) bool
    height: int
    width: int
    evidence: tuple | None = None  # (obs (Q, K, R), mask (Q, K, R), factor (Q, R, E), its channels, loc, scale)
    concept_features: Tensor | None = None  # (S, R, D) float32: the ConSE channel's second look (None: glimpse only)

    def assemble(self, model, index: Tensor, allocation: Tensor):
        """Encoder output for questions ``index`` (B,) under ``allocation`` (B, R) of levels ->
        (last_hidden_state (B, N_max, D), attention_mask, token_region) as the model emits them."""
        from arrcoc.modeling.regions import grid_boxes

        scenes = self.scene_of[index]  # (B,)
        glob = self.global_tokens[scenes].float()  # (B, g*g, D)
        feats = {}
        for b, (s, row) in enumerate(zip(scenes.tolist(), allocation.tolist())):
            for r, lv in enumerate(row):
                if lv:
                    feats[(b, r)] = self.region_tokens[lv][s, r].float()  # (lv, D)
        boxes = grid_boxes(self.height, self.width, model.config.grid, len(index))  # (B, R, 4)
        hidden, mask, token_region, _ = model.assemble(glob, feats, allocation, boxes, self.height, self.width)
        return hidden, mask, token_region

    @property
    def full_tokens(self) -> int:
        lv = max(self.region_tokens)
        return self.global_tokens.shape[1] + self.region_features.shape[1] * lv


class TokenBank:
    """``SceneCache.assemble`` as one gather: the same output (within float rounding), 10-50x faster.

    The grid boxes are the same for every scene, so the positional and region embeddings the model
    adds to region r's tokens at level l are a constant (l, D) table; the bank keeps every scene's
    tokens of every level side by side, (S, R * sum(levels), D) float16, and an allocation becomes
    a list of gather indices. The benchmark's training and scoring assemble thousands of batches.
    """

    def __init__(self, model, cache: SceneCache):
        from arrcoc.modeling.regions import grid_boxes, level_side, sincos_2d, token_centres

        self.cache = cache
        levels = sorted(cache.region_tokens)
        S, R, _, D = cache.region_tokens[levels[0]].shape
        H, W = cache.height, cache.width
        self.offset = {}
        off = 0
        for lv in levels:
            self.offset[lv] = off
            off += lv
        self.per_region = off                                            # tokens of all levels of one region
        self.bank = torch.cat([cache.region_tokens[lv] for lv in levels], 2).reshape(S, R * off, D)  # (S, R*off, D)
        boxes = grid_boxes(H, W, model.config.grid, 1)[0]                  # (R, 4)
        emb = model.region_embed
        with torch.no_grad():
            pos = []
            for r in range(R):
                for lv in levels:
                    if emb is None:
                        pos.append(torch.zeros(lv, D))
                        continue
                    c = token_centres(boxes[r][None], level_side(lv), H, W)[0]  # (lv, 2)
                    pos.append(sincos_2d(c, D).float() + emb.weight[r + 1].float())
            self.pos = torch.cat(pos)                                    # (R*off, D)
            glob = torch.zeros(cache.global_tokens.shape[1], D)
            n_glob = cache.global_tokens.shape[1]
            if emb is not None and n_glob > 0:
                full = torch.tensor([[0.0, 0.0, float(W), float(H)]])
                glob = sincos_2d(token_centres(full, model.config.global_side, H, W), D)[0].float() + emb.weight[0].float()
            self.glob_pos = glob                                         # (g*g, D)

    def assemble(self, index: Tensor, allocation: Tensor):
        """(last_hidden_state (B, N_max, D), attention_mask (B, N_max) long, token_region (B, N_max))."""
        from arrcoc.modeling.modeling_arrcoc import GLOBAL_REGION, PAD_REGION

        c = self.cache
        scenes = c.scene_of[index]                                       # (B,)
        B, n_glob = len(index), c.global_tokens.shape[1]
        rows, regions = [], []
        for row in allocation.tolist():
            idx, reg = [], []
            for r, lv in enumerate(row):
                if lv:
                    start = r * self.per_region + self.offset[lv]
                    idx.extend(range(start, start + lv))
                    reg.extend([r] * lv)
            rows.append(idx)
            regions.append(reg)
        n_max = n_glob + max(len(i) for i in rows)
        gather = torch.zeros(B, n_max - n_glob, dtype=torch.long)
        token_region = torch.full((B, n_max), PAD_REGION, dtype=torch.long)
        token_region[:, :n_glob] = GLOBAL_REGION
        for b, (idx, reg) in enumerate(zip(rows, regions)):
            gather[b, :len(idx)] = torch.tensor(idx, dtype=torch.long)
            token_region[b, n_glob:n_glob + len(reg)] = torch.tensor(reg, dtype=torch.long)
        real = token_region[:, n_glob:] != PAD_REGION                   # (B, N_max - g)
        toks = self.bank[scenes[:, None], gather].float() + self.pos[gather]  # (B, N_max - g, D)
        toks = toks * real[..., None]
        glob = c.global_tokens[scenes].float() + self.glob_pos           # (B, g*g, D)
        hidden = torch.cat([glob, toks], 1)                              # (B, N_max, D)
        return hidden, (token_region != PAD_REGION).long(), token_region


def _pixels(model, images) -> Tensor:
    from arrcoc.modeling import ARRCOCImageProcessor

    proc = ARRCOCImageProcessor(size=model.config.image_size, grid=model.config.grid,
                                image_mean=model.config.image_mean, image_std=model.config.image_std)
    return proc(list(images), return_tensors="pt")["pixel_values"]  # (B, 3, H, W)


def _region_pixels(model, pv: Tensor, boxes: Tensor) -> Tensor:
    """The scorers' low-resolution region crops (S, R, 3, s, s) in [0, 1], as forward makes them."""
    from arrcoc.modeling.regions import crop_resize

    S, R, sp = pv.shape[0], boxes.shape[1], model.config.scorer_pixels
    mean = torch.tensor(model.config.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.config.image_std).view(1, 3, 1, 1)
    rgb = (pv * std + mean).clamp(0, 1)
    return crop_resize(rgb, torch.arange(S).repeat_interleave(R), boxes.reshape(-1, 4), sp).reshape(S, R, 3, sp, sp)


def _score_questions(model, rf: Tensor, pix: Tensor, texts, dtype, cf: Tensor | None = None):
    """The allocator on one scene's glimpse features rf (R, D) and crops pix (R, 3, s, s) for each
    question (cf (R, D): the ConSE channel's second look, None: rf only): (RelevanceOutput, scorer evidence
    (obs, mask, factor, channels, loc, scale))."""
    n = len(texts)
    ids, am = model.tokenize_queries(texts)
    q_emb = model.query_encoder(ids, am)  # (n, T, Dq)
    question = model.question_batch(texts, rf.device, dtype)
    kw = dict(region_pixels=pix[None].expand(n, -1, -1, -1, -1), query_embeds=q_emb, query_mask=am.bool(),
              question=question, concept_features=None if cf is None else cf[None].expand(n, -1, -1))
    feats = rf[None].expand(n, -1, -1)  # (n, R, D)
    out = model.allocator(feats, deterministic=True, **kw)
    _, obs, msk, (fac, chans), loc, scale = model.allocator.score(feats, **kw)
    return out, (obs, msk, fac, chans, loc, scale)


def _join_evidence(evid):
    cat = [torch.cat([e[i] for e in evid]) for i in (0, 1, 2)]
    return (*cat, evid[0][3], torch.cat([e[4] for e in evid]), torch.cat([e[5] for e in evid]))


@torch.no_grad()
def score_questions(model, cache: SceneCache, scenes) -> SceneCache:
    """``cache`` with its questions' allocator outputs and scorer evidence recomputed from the
    scenes' images and the cached glimpse features (no backbone pass: the allocator's part only)."""
    from arrcoc.modeling.regions import grid_boxes

    outs, evid = [], []
    for i, sc in enumerate(scenes):
        texts = [q[0] for q in sc.questions]
        if not texts:
            continue
        pv = _pixels(model, [sc.image])
        pix = _region_pixels(model, pv, grid_boxes(pv.shape[2], pv.shape[3], model.config.grid, 1))
        cf = None if cache.concept_features is None else cache.concept_features[i]
        out, ev = _score_questions(model, cache.region_features[i], pix[0], texts, pv.dtype, cf)
        outs.append(out)
        evid.append(ev)
    return cache._replace(relevance=cat_outputs(outs), evidence=_join_evidence(evid))


@torch.no_grad()
def encode(model, scenes, batch_size: int = 4, progress=None) -> SceneCache:
    """Encode ``scenes`` (``easyvqa_scenes.EasyVQAScene``s: image + questions) with ``model``: the
    glimpse and every level of every region once per scene, the allocator once per question."""
    from arrcoc.modeling.regions import grid_boxes

    from arrcoc._checks import check_int

    check_int(batch_size, "batch_size", minimum=1)
    if list(model.backbone.image_mean) != list(model.config.image_mean) or \
            list(model.backbone.image_std) != list(model.config.image_std):
        raise ValueError("encode needs a model normalised with its backbone's own image_mean / image_std")
    model.eval()
    levels = list(model.config.levels[1:])
    glob, feats, regs, outs, scene_of, qtexts = [], {lv: [] for lv in levels}, [], [], [], []
    evid, concepts = [], []
    concept = model.allocator.concept is not None and model.config.concept_side > 0
    for start in range(0, len(scenes), batch_size):
        chunk = scenes[start:start + batch_size]
        pv = _pixels(model, [sc.image for sc in chunk])  # (S, 3, H, W) normalised for the backbone
        S, _, H, W = pv.shape
        boxes = grid_boxes(H, W, model.config.grid, S)  # (S, R, 4)
        R = boxes.shape[1]
        g, rf = model.glimpse(pv)  # (S, g*g, D), (S, R, D)
        cf = model.concept_crops(pv, boxes) if concept else None  # (S, R, D): the ConSE channel's look
        glob.append(g.half())
        regs.append(rf)
        concepts.append(cf)
        every = torch.ones(S, R, dtype=torch.bool)
        for lv in levels:
            enc = model.encode_regions(pv, boxes, torch.full((S, R), lv), every)  # {(s, r): (lv, D)}
            feats[lv].append(torch.stack([torch.stack([enc[(s, r)] for r in range(R)]) for s in range(S)]).half())
        pix = _region_pixels(model, pv, boxes)  # (S, R, 3, s, s)
        for s, sc in enumerate(chunk):  # the allocator per question, as forward runs it
            texts = [q[0] for q in sc.questions]
            if not texts:
                continue
            out, ev = _score_questions(model, rf[s], pix[s], texts, pv.dtype, None if cf is None else cf[s])
            outs.append(out)
            evid.append(ev)
            scene_of += [start + s] * len(texts)
            qtexts += texts
        if progress is not None:
            progress(min(start + batch_size, len(scenes)), len(scenes))
    ids, am = model.tokenize_queries(qtexts)
    evidence = _join_evidence(evid)
    return SceneCache(torch.cat(glob), {lv: torch.cat(v) for lv, v in feats.items()}, torch.cat(regs),
                      torch.tensor(scene_of, dtype=torch.long), cat_outputs(outs), ids, am.bool(), H, W, evidence,
                      torch.cat(concepts) if concept else None)


def calibrate_supervised(model, cache: SceneCache, target_regions, peak: float | None = None):
    """Fit the allocator's channel calibration to the target regions of ``cache``'s questions
    (``arrcoc.relevance.fit_supervised``: per channel slope, offset and precision, and the prior),
    apply it to ``model.allocator`` and return the ``CalibrationResult``.

    The relevance logit of a question's target region is ``peak`` and 0 elsewhere; default
    log(4 (R - 1)), so a region known to hold the answer has 80 % of the answer probability.
    """
    import math

    from arrcoc.relevance import fit_supervised

    if cache.evidence is None:
        raise ValueError("this cache holds no scorer evidence (built by an older encode)")
    obs, mask = cache.evidence[0], cache.evidence[1]
    Q, _, R = obs.shape
    if len(target_regions) != Q:
        raise ValueError(f"target_regions must have one entry per question ({Q}), got {len(target_regions)}")
    peak = math.log(4 * (R - 1)) if peak is None else float(peak)
    rel = torch.zeros(Q, R, dtype=obs.dtype)
    for q, t in enumerate(target_regions):
        rel[q, list(t)] = peak
    res = fit_supervised(obs.double(), mask, rel.double())
    res.apply(model.allocator)
    return res


def rescore(model, cache: SceneCache) -> SceneCache:
    """``cache`` with its questions' posteriors recomputed under the allocator's current calibration."""
    obs, mask, fac, chans, loc, scale = cache.evidence
    with torch.no_grad():
        post = model.allocator.posterior_from_scores(obs, mask, (fac, chans), loc, scale)
    rel = cache.relevance._replace(posterior=post, relevance_mean=post.mean, relevance_var=post.var)
    return cache._replace(relevance=rel)


def take_output(output, index: Tensor):
    """Rows ``index`` of a ``RelevanceOutput`` (its posterior and score dict too)."""
    def take(v):
        if v is None:
            return None
        if isinstance(v, dict):
            return {k: x[index] for k, x in v.items()}
        if isinstance(v, tuple):
            return type(v)(*[take(x) for x in v])
        return v[index]

    return type(output)(*[take(v) for v in output])
