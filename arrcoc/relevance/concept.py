"""Zero-shot query relevance by convex combination of semantic embeddings (ConSE).

Norouzi et al., "Zero-shot learning by convex combination of semantic embeddings", ICLR 2014. The
backbone's own ImageNet classifier gives each region's class probabilities p_c (from the glimpse's
pooled region feature: the classifier's input is a global average pool, and a region's feature is the
average pool of its cells); the region's semantic embedding is the probability-weighted mean of the
text embeddings e_c of its top-k class names (renormalised), and its query score is the cosine of
that embedding with the embedding of the question's content words. No parameter is trained.

Epistemic variance: which of its likely classes a region really shows is uncertain; the spread of
cos(e_c, q) over the region's top-k distribution, sd_i = sqrt(sum_c p_c (cos(e_c, q) - mean)^2), is
the score's standard deviation under that uncertainty and enters the posterior as an epistemic
factor (a region the classifier is unsure about is worth a closer look).

Where it fails: only the 1000 ImageNet classes can be recognised (a "house" is reached through
"boathouse", "barn", "beacon"; a "chart" through "scoreboard", "web site"), regions are classified
from a low-resolution glimpse, drawings and diagrams are classified poorly, and abstract questions
("is it safe?") have no class to match. The channel's precision is modest for that reason.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConceptScore", "ConceptScorer", "TEXT_PHRASE"]


class ConceptScore(NamedTuple):
    score: Tensor        # (B, R) cosine of the region's semantic embedding with the question's
    sd: Tensor           # (B, R) sd of the cosine over the region's class distribution
    top_class: Tensor    # (B, R) long: most probable class of each region
    probability: Tensor  # (B, R) its probability


TEXT_PHRASE = "printed text, words, letters, a sign, a label, a page"


class ConceptScorer(nn.Module):
    """ConSE over region features. Buffers: classifier (C, D) and bias (C,) of the backbone's ImageNet
    head, label_embeddings (C, Dq) unit-norm text embeddings of the class names, text_embedding (Dq,)
    of ``TEXT_PHRASE`` (optional)."""

    def __init__(self, classifier_weight: Tensor, classifier_bias: Tensor, label_embeddings: Tensor,
                 text_embedding: Tensor | None = None, top_k: int = 10):
        super().__init__()
        C, D = classifier_weight.shape
        if classifier_bias.shape != (C,) or label_embeddings.dim() != 2 or label_embeddings.shape[0] != C:
            raise ValueError(f"classifier ({C}, {D}), bias {tuple(classifier_bias.shape)} and label_embeddings "
                             f"{tuple(label_embeddings.shape)} must agree on the number of classes")
        if not 1 <= top_k <= C:
            raise ValueError(f"top_k must be in [1, {C}], got {top_k}")
        self.top_k = int(top_k)
        self.register_buffer("classifier_weight", classifier_weight.detach().clone())
        self.register_buffer("classifier_bias", classifier_bias.detach().clone())
        self.register_buffer("label_embeddings", F.normalize(label_embeddings.detach().float(), dim=-1))
        # embedding of a fixed "printed text" phrase: the text_concept channel of reading questions
        if text_embedding is not None and text_embedding.shape != (label_embeddings.shape[1],):
            raise ValueError(f"text_embedding must have shape ({label_embeddings.shape[1]},)")
        self.register_buffer("text_embedding", None if text_embedding is None
                             else F.normalize(text_embedding.detach().float(), dim=0))

    @property
    def feature_dim(self) -> int:
        return self.classifier_weight.shape[1]

    @property
    def embed_dim(self) -> int:
        return self.label_embeddings.shape[1]

    def forward(self, region_features: Tensor, query_vector: Tensor) -> ConceptScore:
        """region_features (B, R, D), query_vector (B, Dq) (normalised here) -> ConceptScore (inputs trusted)."""
        W = self.classifier_weight.to(region_features.dtype)
        logits = region_features @ W.T + self.classifier_bias.to(region_features.dtype)  # (B, R, C)
        top_logit, top_idx = logits.topk(self.top_k, dim=-1)  # (B, R, k)
        p = torch.softmax(top_logit, -1)  # (B, R, k) renormalised over the top k
        emb = self.label_embeddings.to(region_features.dtype)[top_idx]  # (B, R, k, Dq)
        q = F.normalize(query_vector.to(region_features.dtype), dim=-1)  # (B, Dq)
        cos_c = torch.einsum("brkd,bd->brk", emb, q)  # (B, R, k) cosine of each class name with q
        sem = (p[..., None] * emb).sum(-2)  # (B, R, Dq) convex combination
        score = torch.einsum("brd,bd->br", F.normalize(sem, dim=-1), q)  # (B, R)
        mean_c = (p * cos_c).sum(-1, keepdim=True)  # (B, R, 1)
        sd = (p * (cos_c - mean_c) ** 2).sum(-1).clamp_min(0).sqrt()  # (B, R)
        prob = torch.softmax(logits, -1).gather(-1, top_idx[..., :1]).squeeze(-1)  # (B, R)
        return ConceptScore(score, sd, top_idx[..., 0], prob)
