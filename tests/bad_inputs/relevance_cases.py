"""Bad-input cases of arrcoc.relevance (owned by the lead; failing cases are strict xfails)."""
from __future__ import annotations

import torch

from hypothesis import strategies as st

from . import (keyword_cases, OPAQUE, BAD_BOOL, BAD_CALLABLE, BAD_COUNT, BAD_GENERATOR, BAD_INT, BAD_POSITIVE, BAD_PROB, BAD_REAL, BAD_STR,
               BAD_TENSOR, Case, bad_tensor, resolve)

R = "arrcoc.relevance."
LEVELS = (0, 64, 100, 256, 400)


def rel(name):
    return resolve(R + name)


def g():
    return torch.Generator().manual_seed(0)


def obs(b=1, r=16):
    return torch.randn(b, r, len(rel("CHANNELS")), generator=g())


def posterior():
    return rel("hierarchical_posterior")(obs())


def table(b=1, r=16):
    return torch.rand(b, r, len(LEVELS), generator=g())


kw = keyword_cases(R)


def solver_base():
    return {"table": table(), "levels": LEVELS, "budget": 600}


BAD_BUDGET = BAD_COUNT
CASES = [
    kw("RelevanceConfig", {}, "budget", BAD_BUDGET),
    kw("RelevanceConfig", {}, "levels", BAD_TENSOR, name="levels"),
    kw("RelevanceConfig", {}, "cost", BAD_REAL, name="cost"),
    kw("RelevanceConfig", {}, "concept_windows", BAD_BOOL, name="concept_windows"),
    kw("RelevanceConfig", {}, "concept_crop_weight", st.one_of(BAD_REAL, st.sampled_from([-0.1, 1.5])),
       name="concept_crop_weight"),
    kw("RelevanceAllocator", {}, "feature_dim", BAD_COUNT),
    kw("RelevanceAllocator.forward", lambda: {"self": rel("RelevanceAllocator")(feature_dim=8),
                                              "region_pixels": torch.rand(1, 16, 3, 8, 8, generator=g()),
                                              "region_features": torch.randn(1, 16, 8, generator=g())},
       "region_pixels", bad_tensor((1, 16, 3, 8, 8), dtype=torch.float32, wrong_shapes=[(1, 16)]), examples=4),
    kw("RelevanceAllocator.forward", lambda: {"self": rel("RelevanceAllocator")(feature_dim=8),
                                              "concept_features": torch.randn(1, 16, 8, generator=g()),
                                              "region_features": torch.randn(1, 16, 8, generator=g())},
       "concept_features", bad_tensor((1, 16, 8), dtype=torch.float32, wrong_shapes=[(1, 16), (1, 15, 8)]), examples=4),
    kw("hierarchical_posterior", lambda: {"obs": obs()}, "obs", bad_tensor((1, 16, 6), dtype=torch.float32, wrong_shapes=[(16,)])),
    kw("hierarchical_posterior", lambda: {"obs": obs()}, "tau", BAD_POSITIVE, name="tau"),
    kw("update_posterior", lambda: {"posterior": posterior(), "region_index": torch.tensor([[0]]), "scores": torch.zeros(1, 1, 6)},
       "scores", bad_tensor((1, 1, 6), dtype=torch.float32)),
    kw("log_evidence", lambda: {"obs": obs()}, "sigma", BAD_POSITIVE),
    kw("thompson", lambda: {"posterior": posterior(), "generator": g()}, "num_samples", BAD_COUNT),
    kw("thompson", lambda: {"posterior": posterior(), "generator": g()}, "generator", BAD_GENERATOR, name="generator"),
    kw("sample_relevance", lambda: {"posterior": posterior(), "num_samples": 2, "generator": g()}, "generator", BAD_GENERATOR),
    kw("sample_relevance", lambda: {"posterior": posterior(), "num_samples": 2, "generator": g()}, "generator", st.just(None),
       name="none", examples=1),
    kw("allocate_random", lambda: {**solver_base(), "generator": g()}, "generator", st.just(None), name="none", examples=1),
    kw("InformationScorer", {}, "temperature", BAD_POSITIVE, name="temperature"),
    kw("SalienceScorer", {}, "size", BAD_COUNT, name="size"),
    kw("scorers.grey_entropy", lambda: {"region_grey": torch.rand(1, 16, 8, 8)}, "bins", BAD_COUNT, name="bins"),
    kw("update_posterior", lambda: {"posterior": posterior(), "region_index": torch.tensor([[0]]), "scores": torch.zeros(1, 1)},
       "precision", BAD_POSITIVE, name="precision"),
    kw("rank_first_frequency", {}, "draws", bad_tensor((3, 1, 16), dtype=torch.float32)),
    kw("utility_table", lambda: {"prob": torch.rand(1, 16, generator=g()), "var": torch.ones(1, 16), "levels": LEVELS, "cost": 1e-3},
       "cost", BAD_REAL),
    kw("utility_table", lambda: {"prob": torch.rand(1, 16, generator=g()), "var": torch.ones(1, 16), "levels": LEVELS, "cost": 1e-3},
       "prob", bad_tensor((1, 16), dtype=torch.float32), name="prob"),
    kw("information_gain", lambda: {"levels": LEVELS, "var": torch.ones(1, 16)}, "var", bad_tensor((1, 16), dtype=torch.float32)),
    *[kw(f, solver_base, "budget", BAD_BUDGET) for f in ("solve", "solve_dp", "solve_greedy", "allocate_uniform")],
    kw("solve_dp", solver_base, "table", bad_tensor((1, 16, 5), dtype=torch.float32), name="table"),
    kw("solve", solver_base, "solver", BAD_STR, name="solver"),
    kw("solve_brute_force", lambda: {"table": table(1, 3), "levels": LEVELS, "budget": 300}, "max_combinations", BAD_COUNT),
    kw("allocate_random", lambda: {**solver_base(), "generator": g()}, "generator", BAD_GENERATOR),
    kw("allocate_top_k", lambda: {**solver_base(), "scores": torch.rand(1, 16, generator=g())}, "scores",
       bad_tensor((1, 16), dtype=torch.float32)),
    kw("knapsack.as_budget", {"budget": 100, "batch": 2}, "budget", BAD_BUDGET),
    kw("knapsack.exclude_regions", lambda: {"table": table()}, "exclude", bad_tensor((1, 16), dtype=torch.bool, wrong_shapes=[(3,)])),
    kw("fit_supervised", lambda: {"obs": obs(2), "mask": None, "relevance": torch.randn(2, 16, generator=g())}, "relevance",
       bad_tensor((2, 16), dtype=torch.float32)),
    kw("fit_empirical_bayes", lambda: {"obs": obs(2), "max_iter": 3}, "max_iter", BAD_COUNT),
    kw("laplace_head_covariance", lambda: {"phi": torch.randn(16, 4, generator=g()), "noise_precision": 1.0, "prior_precision": 1.0},
       "noise_precision", BAD_POSITIVE),
    kw("fit_query_laplace", lambda: {"scorer": rel("QueryScorer")(8, 8, num_heads=2, head_dim=4),
                                     "region_features": torch.randn(1, 16, 8, generator=g()),
                                     "query_embeds": torch.randn(1, 3, 8, generator=g())}, "prior_precision", BAD_POSITIVE),
    kw("CalibrationResult", lambda: {"slope": torch.ones(6), "offset": torch.zeros(6), "precision": torch.ones(6), "mu_global": 0.0,
                                     "tau": 1.0, "sigma": 1.0, "log_likelihood": 0.0, "method": "x"}, "tau", BAD_POSITIVE),
    kw("InformationScorer", {}, "bins", BAD_COUNT),
    kw("SalienceScorer", {}, "blur", BAD_POSITIVE),
    kw("QueryScorer", {"feature_dim": 8}, "num_heads", BAD_COUNT),
    kw("calibration.hierarchical_log_likelihood", lambda: {"relevance": torch.randn(2, 16), "mu_global": 0.0, "tau": 1.0, "sigma": 1.0},
       "tau", BAD_POSITIVE),
    kw("config.validate_levels", {}, "levels", BAD_TENSOR, finite=False),
    kw("scorers.grey_entropy", {}, "region_grey", bad_tensor((1, 16, 8, 8), dtype=torch.float32)),
    kw("scorers.grey_spectral_saliency", {}, "grey", bad_tensor((1, 32, 32), dtype=torch.float32)),
    kw("scorers.pixel_entropy", {}, "region_pixels", bad_tensor((1, 16, 3, 8, 8), dtype=torch.float32)),
    kw("scorers.feature_entropy", {}, "region_features", bad_tensor((1, 16, 8), dtype=torch.float32)),
    kw("scorers.centre_surround_contrast", {}, "region_features", bad_tensor((1, 16, 8), dtype=torch.float32)),
    kw("scorers.spectral_residual_map", {}, "grey", bad_tensor((1, 32, 32), dtype=torch.float32)),
    kw("scorers.spectral_residual_saliency", {}, "region_pixels", bad_tensor((1, 16, 3, 8, 8), dtype=torch.float32)),
    kw("scorers.standardize", {}, "scores", bad_tensor((1, 16), dtype=torch.float32)),
    kw("scorers.grid_adjacency", {}, "grid", BAD_COUNT),
    # ------------------------------------------------------------- question cues and concept scorer
    kw("question.parse_question", {}, "question", st.sampled_from([None, 3, OPAQUE, b"bytes"]), finite=False),
    kw("question.parse_questions", {}, "questions", st.sampled_from([None, 3, OPAQUE, "not a list", [None]]), finite=False),
    kw("cues.colour_weights", {}, "colours", BAD_TENSOR),
    kw("cues.rgb_to_hsv", {}, "rgb", bad_tensor((1, 16, 3, 4, 4), dtype=torch.float32)),
    kw("cues.colour_match", lambda: {"weights": torch.ones(1, len(rel("cues.COLOUR_NAMES")))}, "region_rgb",
       bad_tensor((1, 16, 3, 4, 4), dtype=torch.float32)),
    kw("cues.text_density", {}, "region_grey", bad_tensor((1, 16, 8, 8), dtype=torch.float32)),
    kw("cues.region_centres", {}, "grid", BAD_COUNT),
    kw("cues.spatial_prior", lambda: {"centres": torch.rand(16, 2), "target": torch.rand(1, 2)}, "width", BAD_POSITIVE),
    kw("concept.ConceptScorer", lambda: {"classifier_weight": torch.randn(10, 8), "classifier_bias": torch.zeros(10),
                                         "label_embeddings": torch.randn(10, 4)}, "top_k", BAD_COUNT),
    kw("knapsack.resolution_gain", {"levels": LEVELS}, "half_tokens", BAD_POSITIVE),
    kw("concept.window_pairs", {}, "grid", BAD_COUNT),
    # ------------------------------------------------------------- scene text (OCR) evidence
    kw("scene_text.word_similarity", {"b": "stop"}, "a", st.sampled_from([None, 3, OPAQUE, b"stop"]), finite=False),
    kw("scene_text.word_spans", {"text": "EXIT 42"}, "box",
       st.sampled_from([None, (0, 0, 1), (0, 0, float("nan"), 1), (5, 0, 1, 1), "box", OPAQUE]), finite=False),
    kw("scene_text.question_words", {}, "content", st.sampled_from([None, 3, OPAQUE, ["stop"]]), finite=False),
    kw("scene_text.region_scene_text", {"lines": [[]]}, "region_boxes",
       bad_tensor((1, 4, 4), dtype=torch.float32, wrong_shapes=[(4, 4), (1, 4, 3)])),
    kw("scene_text.region_scene_text", lambda: {"region_boxes": torch.tensor([[[0.0, 0, 10, 10]]])}, "lines",
       st.sampled_from([None, 3, [None], [[("box", "t", 1.0)]], [[((0, 0, 5, 5), "t", 2.0)]], [[], []]]), finite=False),
    kw("RelevanceAllocator.forward", lambda: {"self": rel("RelevanceAllocator")(feature_dim=8),
                                              "region_features": torch.randn(1, 16, 8, generator=g())},
       "scene_text", st.sampled_from([3, "text", (torch.zeros(1, 16),), OPAQUE]), examples=3),
]

EXEMPT = {
    R + "RelevanceOutput": "NamedTuple result of RelevanceAllocator.forward",
    R + "scene_text.SceneText": "NamedTuple result of region_scene_text",
    R + "RelevancePosterior": "NamedTuple result of hierarchical_posterior / update_posterior",
    R + "ThompsonDraws": "NamedTuple result of thompson",
    R + "Allocation": "NamedTuple result of the solvers",
    R + "scorers.QueryScore": "NamedTuple result of QueryScorer",
    R + "CHANNELS": "constant (channel names)",
    R + "BASELINES": "constant (baseline policy names)",
    R + "config.STANDARDIZED": "constant (channel names)",
    R + "config.EXTERNAL": "constant (channel names)",
    R + "cues.QuestionBatch": "NamedTuple of parsed question cues (built by the allocator)",
    R + "cues.COLOUR_NAMES": "constant (colour names)",
    R + "question.QuestionCues": "NamedTuple result of parse_question",
    R + "question.COLOURS": "constant (colour table)",
    R + "question.READING_WORDS": "constant (word set)",
    R + "question.STOP_WORDS": "constant (word set)",
    R + "concept.ConceptScore": "NamedTuple result of ConceptScorer",
    R + "concept.TEXT_PHRASE": "constant (prompt phrase)",
    **{R + "concept." + n: "inner kernel of the ConSE window look (inputs trusted, as documented): called by "
       "RelevanceAllocator with the region features and window pairs it validated and built"
       for n in ("window_features", "pool_windows")},
}


# Known findings in the owner's area (case id -> what happens); strict xfails: remove an entry once fixed.
XFAIL = {
}
