"""arrcoc.relevance: scorers -> Bayesian relevance posterior -> Thompson sampling -> token allocation.

Pipeline (DESIGN.md section 2, steps 3-6), tensor in, tensor out, batched over images:

    scorers.py      information (entropy), salience (centre-surround, spectral residual) and query
                    (multi-head cross-attention) scores per region, (B, R) each
    posterior.py    closed-form hierarchical Gaussian posterior over region relevance logits
                    (shared image-level mean, per-scorer calibration, epistemic term), sequential update
    thompson.py     joint posterior draws with an explicit generator; deterministic mode = mean
    allocation.py   utility table and multiple-choice knapsack solvers (exact DP, greedy, brute
                    force) plus evaluation baselines, all returning an ``Allocation``
    calibration.py  empirical Bayes fits of the calibration and prior; last-layer Laplace of the
                    query head
    question.py     what a question asks for, read off its words: reading, colours, position, content
    cues.py         the cue scorers (colour match, text strokes, position prior) and ``QuestionBatch``
    concept.py      zero-shot ConSE channel: the backbone's ImageNet head + class-name embeddings
    allocator.py    ``RelevanceAllocator`` (nn.Module) assembling all of it from a ``RelevanceConfig``
    _validate.py    the argument checks of the public boundary (internal calls are not re-checked)
"""
from .knapsack import (Allocation, allocate_random, allocate_top_k, allocate_uniform, information_gain,
                         solve, solve_brute_force, solve_dp, solve_greedy, utility_table)
from .allocator import BASELINES, RelevanceAllocator, RelevanceOutput
from .calibration import (CalibrationResult, fit_empirical_bayes, fit_query_laplace, fit_supervised,
                          laplace_head_covariance)
from .config import CHANNELS, RelevanceConfig
from .posterior import RelevancePosterior, hierarchical_posterior, log_evidence, update_posterior
from .concept import ConceptScorer
from .cues import QuestionBatch
from .question import QuestionCues, parse_question, parse_questions
from .scorers import InformationScorer, QueryScorer, SalienceScorer
from .thompson import ThompsonDraws, rank_first_frequency, sample_relevance, thompson

__all__ = [
    "RelevanceConfig", "CHANNELS", "RelevanceAllocator", "RelevanceOutput", "BASELINES",
    "RelevancePosterior", "hierarchical_posterior", "update_posterior", "log_evidence",
    "ThompsonDraws", "thompson", "sample_relevance", "rank_first_frequency",
    "Allocation", "utility_table", "information_gain", "solve", "solve_dp", "solve_greedy",
    "solve_brute_force", "allocate_uniform", "allocate_random", "allocate_top_k",
    "CalibrationResult", "fit_supervised", "fit_empirical_bayes", "laplace_head_covariance",
    "fit_query_laplace", "InformationScorer", "SalienceScorer", "QueryScorer",
    "ConceptScorer", "QuestionBatch", "QuestionCues", "parse_question", "parse_questions",
]
