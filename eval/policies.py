"""Every allocation policy the accuracy-per-token benchmark compares, at one total token budget.

Each policy turns the allocator's output for a batch of (image, question) pairs (a
``RelevanceOutput``: posterior, raw channel scores) into a (B, R) allocation of token levels whose
total, with the global thumbnail, stays within the budget:

  arrcoc_thompson  the knapsack on one Thompson draw of the relevance posterior (the product)
  arrcoc_mean      the same on the posterior mean (the deterministic mode)
  uniform          every region the largest level that fits R times (the allocator's baseline)
  random           random order, random feasible level (the allocator's baseline)
  salience_topk    regions by bottom-up salience, top ones first at the largest level that fits:
                   query-agnostic, like VisionZip's dominant tokens
  query_topk       regions by the zero-shot question channels' score (the cues the posterior
                   reads: ConSE concept, colour, text, position), like FastV / SparseVLM's
                   text-to-visual attention ranking
  dpp              conditional DPP (CDPruner's idea): the greedy MAP order of a DPP whose kernel
                   is question relevance x feature similarity, L = diag(q) S diag(q) with
                   S_ij = cos(f_i, f_j) of the glimpse features and q_i = exp(theta z_i), z the
                   standardised question score; regions in that order get the largest level that fits
  global_only      no region tokens (the floor)
  full             every region at the top level (the ceiling; ignores the budget)

The top-k style policies share the allocator's ``allocate_top_k`` fill, so they differ only in the
order they rank regions. The greedy MAP is the standard incremental-Cholesky one (each step takes
the region with the largest conditional variance d_i^2 = det(L_{S+i}) / det(L_S)); it is written
here from that definition (``tests/eval/test_policies.py`` checks it against log-determinants
and brute force).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["POLICIES", "PolicyConfig", "question_score", "dpp_greedy_order", "dpp_order", "allocate_policy"]

POLICIES = ("arrcoc_thompson", "arrcoc_mean", "uniform", "random", "salience_topk", "query_topk", "dpp",
            "global_only", "full")


@dataclass(frozen=True)
class PolicyConfig:
    """Knobs of the peers' policies (each default with its reason).

    dpp_theta: weight of question relevance in the DPP kernel's quality q = exp(theta z); 1.0
        (CDPruner's balance: a region one standard deviation more relevant counts e times more,
        while similar regions still repel). 0 gives a query-agnostic diversity DPP.
    dpp_jitter: added to the similarity diagonal so the kernel is positive definite even when
        two regions' features coincide; 1e-4, far below a cosine's scale.
    """

    dpp_theta: float = 1.0
    dpp_jitter: float = 1e-4

    def __post_init__(self):
        from arrcoc.bayes._validate import check_real

        check_real(self.dpp_theta, "dpp_theta", low=0.0)
        check_real(self.dpp_jitter, "dpp_jitter", low=0.0, low_open=True)


def _question_channels(scores: dict) -> list[str]:
    from arrcoc.relevance.config import CHANNELS, STANDARDIZED

    return [n for n in CHANNELS if n not in STANDARDIZED and n != "refined" and n in scores]


def question_score(output, config=None) -> Tensor:
    """(B, R) sum over the zero-shot question channels of their centred, fixed-scale observations
    (exactly what the posterior sees from them; a channel the question does not cue is flat, so 0)."""
    from arrcoc.relevance.config import RelevanceConfig

    scale = (config or RelevanceConfig()).cue_scale
    names = _question_channels(output.scores)
    if not names:
        raise ValueError("the allocator's output has no zero-shot question channel (was a question given?)")
    ref = output.relevance_mean
    z = torch.zeros_like(ref)  # (B, R)
    for n in names:
        s = output.scores[n].to(ref.dtype)  # (B, R)
        s = torch.where(torch.isfinite(s), s, torch.zeros_like(s))
        z = z + (s - s.mean(1, keepdim=True)) / scale[n]
    return z


def dpp_greedy_order(kernel: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy MAP order of DPPs with kernels (B, R, R) (symmetric positive definite).

    Returns (order (B, R) long, gains (B, R)): step j adds the item with the largest conditional
    variance d^2 given the items already chosen, and gains[:, j] = log d^2 = log det(L_{S_j+1}) -
    log det(L_{S_j}), so the cumulative sum of gains is the log-determinant of each prefix.
    """
    if not isinstance(kernel, Tensor) or kernel.dim() != 3 or kernel.shape[1] != kernel.shape[2]:
        raise ValueError(f"kernel must have shape (B, R, R), got {tuple(getattr(kernel, 'shape', ()))}")
    if not kernel.is_floating_point() or not torch.isfinite(kernel).all():
        raise ValueError("kernel must be a finite floating-point tensor")
    B, R, _ = kernel.shape
    rows = torch.arange(B, device=kernel.device)
    d2 = kernel.diagonal(dim1=1, dim2=2).clone()  # (B, R) conditional variances
    chol = kernel.new_zeros(B, R, R)  # (B, step, item): rows of the incremental Cholesky factor
    taken = torch.zeros(B, R, dtype=torch.bool, device=kernel.device)
    order = torch.zeros(B, R, dtype=torch.long, device=kernel.device)
    gains = kernel.new_zeros(B, R)
    for j in range(R):
        i = torch.where(taken, torch.full_like(d2, -float("inf")), d2).argmax(1)  # (B,)
        di = d2[rows, i].clamp_min(torch.finfo(kernel.dtype).tiny)  # (B,)
        order[:, j], gains[:, j] = i, di.log()
        taken[rows, i] = True
        e = (kernel[rows, i] - (chol[:, :j, :] * chol[rows, :j, i][..., None]).sum(1)) / di.sqrt()[:, None]  # (B, R)
        chol[:, j] = e
        d2 = d2 - e * e
    return order, gains


def dpp_order(region_features: Tensor, relevance: Tensor, config: PolicyConfig | None = None) -> Tensor:
    """(B, R) region order of the conditional DPP: similarity of the glimpse features (B, R, D),
    quality exp(theta z) of the standardised relevance (B, R) (the question score)."""
    config = config or PolicyConfig()
    f = torch.nn.functional.normalize(region_features.to(torch.float64), dim=-1)  # (B, R, D)
    sim = f @ f.transpose(1, 2)  # (B, R, R)
    z = relevance.to(torch.float64)  # (B, R)
    z = (z - z.mean(1, keepdim=True)) / z.std(1, keepdim=True).clamp_min(1e-6)
    q = torch.exp(config.dpp_theta * z)  # (B, R)
    eye = torch.eye(sim.shape[-1], dtype=sim.dtype, device=sim.device)
    kernel = q[:, :, None] * (sim + config.dpp_jitter * eye) * q[:, None, :]  # (B, R, R)
    return dpp_greedy_order(kernel)[0]


def allocate_policy(policy: str, allocator, output, budget, *, generator: torch.Generator | None = None,
                    region_features: Tensor | None = None, config: PolicyConfig | None = None) -> Tensor:
    """(B, R) long levels of ``policy`` for the batch described by ``output`` (the allocator's
    ``RelevanceOutput``) at ``budget`` total tokens per image (global view included).
    generator: needed by arrcoc_thompson and random. region_features (B, R, D): needed by dpp."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    levels = allocator.config.levels
    post = output.posterior
    B = post.batch_size
    R = post.evidence_precision.shape[1]
    if policy == "global_only":
        allocator.region_budget(budget, B, post.evidence_precision.device)  # the same budget check
        return torch.zeros(B, R, dtype=torch.long)
    if policy == "full":
        return torch.full((B, R), levels[-1], dtype=torch.long)
    if policy in ("arrcoc_thompson", "arrcoc_mean"):
        mean = policy == "arrcoc_mean"
        if not mean and generator is None:
            raise ValueError("generator is required for the 'arrcoc_thompson' policy")
        return allocator.allocate(post, budget, generator=None if mean else generator, deterministic=mean).levels
    if policy in ("uniform", "random"):
        return allocator.allocate_baseline(output, policy, budget, generator=generator).levels
    if policy == "salience_topk":
        return allocator.allocate_baseline(output, "top_k_salience", budget).levels
    if policy == "query_topk":
        rank = question_score(output, allocator.config)
    else:  # dpp
        if region_features is None or not isinstance(region_features, Tensor) or region_features.shape[:2] != (B, R):
            raise ValueError(f"region_features of shape ({B}, {R}, D) are required for the 'dpp' policy")
        order = dpp_order(region_features, question_score(output, allocator.config), config)  # (B, R)
        rank = torch.empty(B, R, dtype=output.relevance_mean.dtype)
        rank.scatter_(1, order, torch.arange(R, 0, -1, dtype=rank.dtype).expand(B, R).contiguous())
    # the allocator's own top-k fill, ranked by this policy's scores
    ranked = output._replace(scores={**output.scores, "query": rank},
                             query_present=torch.ones(B, dtype=torch.bool))
    return allocator.allocate_baseline(ranked, "top_k_query", budget).levels
