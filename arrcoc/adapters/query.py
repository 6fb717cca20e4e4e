"""A training-free question channel from the VLM itself: how close each region's glimpse tokens are
to the question's words in the LLM's own input-embedding space.

What it is. A VLM's projector maps visual features into the LLM's input-embedding space (that is
what makes them readable by the LLM), so a region's glimpse tokens and the LLM's embeddings of the
question's content words live in one space. The score of region i is a soft maximum over the
region's glimpse tokens t and the question's content tokens w of cos(t, e_w):

    s_i = tau * logsumexp_{t in region i, w in question} cos(t, e_w) / tau   (tau = 0.05)

It enters the relevance posterior as the external channel ``vlm_query`` (z-scored per image, with
its own calibrated precision), never as an override. Cost: one tokenisation, one embedding lookup
and a (B, n, T) cosine matrix -- nothing next to the glimpse pass itself (``benchmarks/prefill.py``
reports the whole allocation's cost).

Where it fails. The projector is trained to make visual tokens useful to the LLM after its layers,
not to make them close to word embeddings at the input: for real checkpoints the input-space
similarity of a region to a word is a weak signal (the "modality gap"; LLaVA's visual tokens
decode to related words mostly in later layers). Questions whose subject is not a word of the
LLM's vocabulary (a long sub-word split), reading questions (the words asked for are not known),
and random-weight test models (the score is then noise, by construction) are the cases it cannot
help; the question's reading / colour / position cues still apply there. Content words come from
``arrcoc.relevance.question.parse_question``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from arrcoc._checks import check_int
from arrcoc.bayes._validate import check_real
from arrcoc.relevance.question import parse_question

__all__ = ["EmbeddingSimilarityScorer"]


class EmbeddingSimilarityScorer:
    """``region_scorer`` for ``ARRCOCVisionModel``: the VLM's own question-to-region similarity.

    embed_tokens: the LLM's input embedding (``vlm.get_input_embeddings()``); tokenizer: the VLM's
    tokenizer (a callable returning ``input_ids``); grid: the encoder's G (regions = G x G);
    temperature: the soft maximum's tau (0.05: a few strongly matching (token, word) pairs decide,
    as in a max, but gradients and ties stay smooth). Not an ``nn.Module``: it holds the VLM's own
    modules and must not register them a second time.
    """

    def __init__(self, embed_tokens: nn.Module, tokenizer, grid: int, temperature: float = 0.05):
        if not isinstance(embed_tokens, nn.Module) or not hasattr(embed_tokens, "weight"):
            raise TypeError(f"embed_tokens must be the LLM's input embedding module, got {type(embed_tokens).__name__}")
        if not callable(tokenizer):
            raise TypeError(f"tokenizer must be callable (the VLM's tokenizer), got {type(tokenizer).__name__}")
        self.embed_tokens, self.tokenizer = embed_tokens, tokenizer
        self.grid = check_int(grid, "grid", minimum=1)
        self.temperature = check_real(temperature, "temperature", low=0.0, low_open=True)

    def _word_ids(self, queries: Sequence[str]) -> list[list[int]]:
        rows = []
        for q in queries:
            words = parse_question(q).content or q  # the content words; the whole question without any
            ids = list(self.tokenizer(" " + words.strip(), add_special_tokens=False)["input_ids"])
            vocab = self.embed_tokens.weight.shape[0]
            rows.append([t for t in ids if 0 <= t < vocab])
        return rows

    def __call__(self, glimpse_tokens: Tensor, region_features: Tensor, queries: Sequence[str] | None):
        """glimpse_tokens (B, S*S, D) row-major, region_features (B, R, D) -> {"vlm_query": (B, R)}
        (an empty dict without questions or without any in-vocabulary content token)."""
        if queries is None:
            return {}
        B, n, D = glimpse_tokens.shape
        side, G = int(round(n ** 0.5)), self.grid
        if side * side != n or side < G:
            raise ValueError(f"glimpse_tokens must be a square grid of at least {G}x{G} tokens, got {n}")
        rows = self._word_ids(queries)
        if not any(rows):
            return {}
        T = max(len(r) for r in rows) or 1
        ids = torch.zeros(B, T, dtype=torch.long, device=self.embed_tokens.weight.device)
        valid = torch.zeros(B, T, dtype=torch.bool, device=ids.device)
        for b, r in enumerate(rows):
            ids[b, :len(r)] = torch.tensor(r, dtype=torch.long)
            valid[b, :len(r)] = True
        with torch.no_grad():
            words = self.embed_tokens(ids).to(glimpse_tokens.dtype).to(glimpse_tokens.device)  # (B, T, D)
        tok = nn.functional.normalize(glimpse_tokens, dim=-1)  # (B, n, D)
        wrd = nn.functional.normalize(words, dim=-1)  # (B, T, D)
        cos = tok @ wrd.transpose(1, 2) / self.temperature  # (B, n, T)
        cos = cos.masked_fill(~valid.to(cos.device)[:, None, :], float("-inf"))
        # each glimpse token belongs to the region whose cell holds its centre
        cell = (torch.arange(side, device=cos.device) * G) // side  # (S,)
        region = (cell[:, None] * G + cell[None, :]).flatten()  # (n,)
        per_token = torch.logsumexp(cos, dim=-1)  # (B, n)
        score = torch.full((B, G * G), float("-inf"), dtype=cos.dtype, device=cos.device)
        for r in range(G * G):
            score[:, r] = torch.logsumexp(per_token[:, region == r], dim=-1)
        score = score * self.temperature  # (B, R)
        has = valid.any(-1).to(score.device)  # (B,) images whose question has no usable word: flat
        return {"vlm_query": torch.where(has[:, None], score, torch.zeros_like(score))}
