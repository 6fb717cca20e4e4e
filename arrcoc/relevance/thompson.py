"""Thompson sampling of relevance logits from the joint posterior.

Draws come from the exact joint posterior (marginals N(m_i, v_i), coupled through the shared
mu_img and the scorer-parameter factor): r = m + W z_W + sqrt(1/d) * z, with W the (1 + E)-column
covariance factor, so a draw costs O(R (1 + E)) and the ranking frequencies of the draws equal the
posterior probabilities of each ranking. Deterministic mode returns the posterior mean.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from arrcoc.bayes._validate import check_generator, check_int

from ._validate import check_values
from .posterior import RelevancePosterior

__all__ = ["ThompsonDraws", "sample_relevance", "thompson", "rank_first_frequency"]


class ThompsonDraws(NamedTuple):
    draws: Tensor        # (B, S, R) relevance logits (S = 1 and equal to the mean when deterministic)
    probability: Tensor  # (B, R) success probability p_i = mean over draws of sigmoid(r~_i)


def _check_posterior(posterior) -> None:
    if not isinstance(posterior, RelevancePosterior):
        raise TypeError(f"posterior must be a RelevancePosterior (from hierarchical_posterior), got {type(posterior).__name__}")


def sample_relevance(posterior: RelevancePosterior, num_samples: int, generator: torch.Generator) -> Tensor:
    """S joint posterior draws of the relevance logits: (B, S, R). ``generator`` (a torch.Generator)
    is required: randomness is always passed explicitly."""
    _check_posterior(posterior)
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    check_generator(generator)
    m = posterior.mean  # (B, R)
    B, R = m.shape
    W = posterior.cov_factor  # (B, R, 1+E)
    kw = dict(generator=generator, device=m.device, dtype=m.dtype)
    zw = torch.randn(B, num_samples, W.shape[-1], **kw)  # (B, S, 1+E)
    z = torch.randn(B, num_samples, R, **kw)  # (B, S, R)
    return m[:, None, :] + torch.einsum("bse,bre->bsr", zw, W) + z * posterior.cov_diag.sqrt()[:, None, :]


def thompson(posterior: RelevancePosterior, num_samples: int = 1, generator: torch.Generator | None = None,
             deterministic: bool = False, link: str = "sigmoid") -> ThompsonDraws:
    """Draw relevance logits and the success probabilities the allocator uses.

    deterministic=True uses the posterior mean (one 'draw', no randomness). Otherwise p_i is the
    average over S draws of link(r~): S = 1 is Thompson sampling proper; as S grows p_i tends to
    E[link(r)_i], the Bayes decision (the utility is linear in p, so averaging p over draws
    averages the utility over draws). link "sigmoid": p_i = sigmoid(r_i), each region on its own;
    "softmax": p_i = softmax(r)_i over the regions of the image, the probability that region i is
    the one holding the answer (the question is about one thing, so the regions compete).
    """
    if link not in ("sigmoid", "softmax"):
        raise ValueError(f"link must be 'sigmoid' or 'softmax', got {link!r}")
    _check_posterior(posterior)
    if deterministic:
        draws = posterior.mean[:, None, :]  # (B, 1, R)
    else:
        draws = sample_relevance(posterior, num_samples, generator)  # (B, S, R)
    p = torch.sigmoid(draws) if link == "sigmoid" else torch.softmax(draws, dim=-1)  # (B, S, R)
    return ThompsonDraws(draws, p.mean(1))


def rank_first_frequency(draws: Tensor) -> Tensor:
    """Fraction of draws (B, S, R) in which each region has the largest logit: (B, R)."""
    check_values(draws, "draws", "(B, S, R)", 3)
    R = draws.shape[-1]
    top = draws.argmax(dim=-1)  # (B, S)
    return torch.nn.functional.one_hot(top, R).to(draws.dtype).mean(1)
