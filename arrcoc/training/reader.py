"""``ReaderHead``: a small transformer that answers a question from the encoder's visual tokens.

It stands in for an LLM. A real VLM (through ``arrcoc.adapters``) is what ARR-COC is for, but it
cannot be trained or evaluated on a 2-core CPU within minutes; the reader can, and it measures the
thing the token budget decides: whether the tokens an allocation kept still carry the answer. The
same ``eval/`` scripts run real VLMs through the adapters.

Inputs: the question as token ids of the encoder's own query tokenizer (a learned embedding of
them, with learned positions), and the encoder's output (``ARRCOCVisionOutput.last_hidden_state``
(B, N, D) with ``attention_mask`` and ``token_region``; the global thumbnail's tokens included,
region -1). One sequence [CLS] + question + visual tokens goes through a pre-norm transformer
encoder. A pointer then reads: the CLS state scores every visual token, the softmax of the scores
pools the visual states, and the CLS state plus that pooled read classifies into the answer
vocabulary. The same scores, log-sum-exp'd per region, are the reader's region logits
(``forward_detailed``): when the data name the region that holds the answer (the optional
``target_regions`` column), ``pointer_loss`` supervises them, which teaches a small reader on a few
thousand questions where to look (without it, it must discover that through the answer alone).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from arrcoc._checks import check_int
from arrcoc.bayes._validate import check_real

__all__ = ["ReaderConfig", "ReaderHead", "ReaderOutput"]


class ReaderOutput(NamedTuple):
    logits: Tensor          # (B, A) answer logits
    region_logits: Tensor   # (B, R) where the reader looks: log-sum-exp of its token scores per region
    visual_states: Tensor   # (B, N, dim) the visual tokens' last states (an auxiliary head may read them)


@dataclass
class ReaderConfig:
    """Shape of a ``ReaderHead``; each default with its reason.

    num_answers: size of the answer vocabulary (the classes).
    visual_dim: width D of the encoder's tokens (``model.hidden_size``).
    vocab_size: size of the encoder's query-token vocabulary (257 bytes for the byte encoder,
        30522 word pieces for MiniLM); ``ReaderConfig.for_encoder`` reads it off the model.
    num_regions: R of the encoder's grid (``model.config.num_regions``): one learned embedding per
        region, plus one for the global thumbnail.
    dim: width of the reader; 128 (a few hundred thousand parameters: CPU-trainable in minutes).
    num_layers: transformer layers; 2 (question-to-token lookups need at least one layer of
        cross-talk after the tokens have seen the question).
    num_heads: attention heads; 4 (32-dim heads at dim 128).
    ffn_mult: feed-forward width over dim; 4, the usual.
    dropout: 0.0 by default: the runs are short and the data are varied by the allocation mix; a
        nonzero rate also makes a run depend on how a batch is split over processes.
    max_question_tokens: question tokens kept (longer questions are cut at the end); 64, MiniLM's
        limit in this project.
    """

    num_answers: int
    visual_dim: int
    vocab_size: int
    num_regions: int
    dim: int = 128
    num_layers: int = 2
    num_heads: int = 4
    ffn_mult: int = 4
    dropout: float = 0.0
    max_question_tokens: int = 64

    def __post_init__(self) -> None:
        self.num_answers = check_int(self.num_answers, "num_answers", minimum=2)
        self.visual_dim = check_int(self.visual_dim, "visual_dim", minimum=1)
        self.vocab_size = check_int(self.vocab_size, "vocab_size", minimum=2)
        self.num_regions = check_int(self.num_regions, "num_regions", minimum=1)
        self.dim = check_int(self.dim, "dim", minimum=2)
        self.num_layers = check_int(self.num_layers, "num_layers", minimum=1)
        self.num_heads = check_int(self.num_heads, "num_heads", minimum=1)
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of num_heads ({self.num_heads})")
        self.ffn_mult = check_int(self.ffn_mult, "ffn_mult", minimum=1)
        self.dropout = check_real(self.dropout, "dropout", low=0.0, high=1.0, high_open=True)
        self.max_question_tokens = check_int(self.max_question_tokens, "max_question_tokens", minimum=1)

    @classmethod
    def for_encoder(cls, model, num_answers: int, **kwargs) -> "ReaderConfig":
        """A config matching an ``ARRCOCVisionModel`` (visual width, query vocabulary, region count)."""
        enc = getattr(model, "query_encoder", None)
        if enc is None or not hasattr(model, "hidden_size") or not hasattr(model, "config"):
            raise TypeError(f"model must be an ARRCOCVisionModel, got {type(model).__name__}")
        if hasattr(enc, "get_input_embeddings"):
            vocab = enc.get_input_embeddings().num_embeddings
        elif hasattr(getattr(enc, "model", None), "get_input_embeddings"):
            vocab = enc.model.get_input_embeddings().num_embeddings
        elif isinstance(getattr(enc, "embed", None), nn.Embedding):
            vocab = enc.embed.num_embeddings
        else:
            raise TypeError(f"cannot read the vocabulary size of query encoder {type(enc).__name__}; "
                            "build ReaderConfig(vocab_size=...) yourself")
        return cls(num_answers=num_answers, visual_dim=int(model.hidden_size), vocab_size=int(vocab),
                   num_regions=int(model.config.num_regions), **kwargs)

    def to_dict(self) -> dict:
        return asdict(self)


class ReaderHead(nn.Module):
    """Question + visual tokens -> answer logits. See the module docstring (a stand-in for an LLM).

    forward(visual_tokens (B, N, D), visual_mask (B, N), token_region (B, N) long (-1 global,
    -2 padding, else the region), question_ids (B, T) long, question_mask (B, T)) -> (B, A) logits.
    """

    def __init__(self, config: ReaderConfig):
        super().__init__()
        if not isinstance(config, ReaderConfig):
            raise TypeError(f"config must be a ReaderConfig, got {type(config).__name__}")
        self.config = c = config
        self.visual_in = nn.Sequential(nn.LayerNorm(c.visual_dim), nn.Linear(c.visual_dim, c.dim))
        # region table: 0 = global thumbnail, 1..R = regions (padding is masked out anyway)
        self.region_embed = nn.Embedding(c.num_regions + 1, c.dim)
        self.word_embed = nn.Embedding(c.vocab_size, c.dim)
        self.word_pos = nn.Embedding(c.max_question_tokens, c.dim)
        self.kind_embed = nn.Embedding(3, c.dim)  # 0 CLS, 1 question, 2 visual
        self.cls = nn.Parameter(torch.zeros(1, 1, c.dim))
        layer = nn.TransformerEncoderLayer(c.dim, c.num_heads, c.ffn_mult * c.dim, c.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.num_answers)
        self.point_query = nn.Linear(c.dim, c.dim)   # CLS state -> a query over the visual states
        self.point_value = nn.Linear(c.dim, c.dim)   # visual state -> what the pointer reads
        self.point_empty = nn.Parameter(torch.zeros(()))  # the score of "no token" (a region left out)
        for emb in (self.region_embed, self.word_embed, self.word_pos, self.kind_embed):
            nn.init.normal_(emb.weight, std=0.02)
        nn.init.normal_(self.cls, std=0.02)

    def _check(self, visual_tokens, visual_mask, token_region, question_ids, question_mask):
        c = self.config
        if not isinstance(visual_tokens, Tensor) or visual_tokens.dim() != 3 or visual_tokens.shape[-1] != c.visual_dim:
            raise ValueError(f"visual_tokens must have shape (B, N, {c.visual_dim}), got "
                             f"{tuple(getattr(visual_tokens, 'shape', ()))}")
        if not visual_tokens.is_floating_point():
            raise TypeError(f"visual_tokens must be floating point, got {visual_tokens.dtype}")
        B, N = visual_tokens.shape[:2]
        for name, t in (("visual_mask", visual_mask), ("token_region", token_region)):
            if not isinstance(t, Tensor) or tuple(t.shape) != (B, N):
                raise ValueError(f"{name} must have shape ({B}, {N}), got {tuple(getattr(t, 'shape', ()))}")
        if token_region.is_floating_point() or token_region.dtype == torch.bool:
            raise TypeError(f"token_region must be an integer tensor, got {token_region.dtype}")
        if not isinstance(question_ids, Tensor) or question_ids.dim() != 2 or question_ids.shape[0] != B:
            raise ValueError(f"question_ids must have shape ({B}, T), got {tuple(getattr(question_ids, 'shape', ()))}")
        if question_ids.is_floating_point() or question_ids.dtype == torch.bool:
            raise TypeError(f"question_ids must be an integer tensor, got {question_ids.dtype}")
        if not isinstance(question_mask, Tensor) or question_mask.shape != question_ids.shape:
            raise ValueError(f"question_mask must have shape {tuple(question_ids.shape)}, got "
                             f"{tuple(getattr(question_mask, 'shape', ()))}")
        if question_ids.numel() and (int(question_ids.min()) < 0 or int(question_ids.max()) >= c.vocab_size):
            raise ValueError(f"question_ids must lie in [0, {c.vocab_size}), got [{int(question_ids.min())}, "
                             f"{int(question_ids.max())}]")
        real = visual_mask.bool()
        if real.any() and (int(token_region[real].min()) < -1 or int(token_region[real].max()) >= c.num_regions):
            raise ValueError(f"token_region of real tokens must lie in [-1, {c.num_regions}), got "
                             f"[{int(token_region[real].min())}, {int(token_region[real].max())}]")
        if not torch.isfinite(visual_tokens[real]).all():
            raise ValueError("visual_tokens contain NaN or inf at real (unmasked) tokens")

    def forward(self, visual_tokens: Tensor, visual_mask: Tensor, token_region: Tensor,
                question_ids: Tensor, question_mask: Tensor) -> Tensor:
        """Answer logits (B, A); ``forward_detailed`` also returns where the reader looked."""
        return self.forward_detailed(visual_tokens, visual_mask, token_region, question_ids, question_mask).logits

    def forward_detailed(self, visual_tokens: Tensor, visual_mask: Tensor, token_region: Tensor,
                         question_ids: Tensor, question_mask: Tensor) -> ReaderOutput:
        self._check(visual_tokens, visual_mask, token_region, question_ids, question_mask)
        c = self.config
        T = min(question_ids.shape[1], c.max_question_tokens)
        q_ids, q_mask = question_ids[:, :T], question_mask[:, :T].bool()  # (B, T)
        B, N = visual_tokens.shape[:2]
        pos = torch.arange(T, device=q_ids.device)
        q = self.word_embed(q_ids) + self.word_pos(pos)[None] + self.kind_embed.weight[1]  # (B, T, dim)
        v_mask = visual_mask.bool()  # (B, N)
        reg = (token_region + 1).clamp(0, c.num_regions)  # (B, N): 0 global, 1..R regions
        x = visual_tokens.to(self.head.weight.dtype)
        v = self.visual_in(torch.where(v_mask[..., None], x, torch.zeros_like(x)))  # (B, N, dim)
        v = v + self.region_embed(reg) + self.kind_embed.weight[2]  # (B, N, dim)
        cls = (self.cls + self.kind_embed.weight[0]).expand(B, 1, c.dim)  # (B, 1, dim)
        seq = torch.cat([cls, q, v], 1)  # (B, 1 + T + N, dim)
        keep = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=seq.device), q_mask, v_mask], 1)
        h = self.encoder(seq, src_key_padding_mask=~keep)  # (B, 1 + T + N, dim)
        h_cls, h_vis = h[:, 0], h[:, 1 + T:]  # (B, dim), (B, N, dim)
        score = torch.einsum("bd,bnd->bn", self.point_query(h_cls), h_vis) / c.dim ** 0.5  # (B, N)
        neg = torch.finfo(score.dtype).min
        score = score.masked_fill(~v_mask, neg)
        empty = self.point_empty.expand(B, 1)  # (B, 1): pooled weight of "nothing there"
        weight = torch.softmax(torch.cat([score, empty], 1), 1)[:, :N]  # (B, N)
        read = torch.einsum("bn,bnd->bd", weight, self.point_value(h_vis))  # (B, dim)
        logits = self.head(self.norm(h_cls + read))  # (B, A)
        in_region = (token_region[..., None] == torch.arange(c.num_regions, device=score.device)) & v_mask[..., None]
        per_region = torch.where(in_region, score[..., None], torch.full_like(score[..., None], neg))  # (B, N, R)
        region_logits = torch.logaddexp(torch.logsumexp(per_region, 1), self.point_empty)  # (B, R)
        return ReaderOutput(logits, region_logits, h_vis)

    @staticmethod
    def pointer_loss(region_logits: Tensor, target_regions: Tensor) -> Tensor:
        """Mean over rows of -log P(the pointer lands in a target region): target_regions (B, R) bool
        (several targets share the mass). Rows without a target are left out (0 when none has one)."""
        if not isinstance(target_regions, Tensor) or target_regions.shape != region_logits.shape:
            raise ValueError(f"target_regions must be a bool tensor of shape {tuple(region_logits.shape)}, got "
                             f"{tuple(getattr(target_regions, 'shape', ()))}")
        t = target_regions.bool()
        has = t.any(1)  # (B,)
        if not bool(has.any()):
            return region_logits.sum() * 0.0
        logp = torch.log_softmax(region_logits, 1)  # (B, R)
        hit = torch.logsumexp(logp.masked_fill(~t, torch.finfo(logp.dtype).min), 1)  # (B,)
        return -hit[has].mean()
