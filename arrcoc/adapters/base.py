"""Shared pieces of the VLM adapters: run ARR-COC first, then build prompts whose image placeholder
count equals the allocated tokens, then call the VLM's own ``generate``.

Seam: transformers >= 5 VLMs accept ``mm_encoder_outputs={"image": BaseModelOutputWithPooling}``
(pre-encoded image features, ``pooler_output`` = one (n_i, hidden) tensor per image in prompt
order) in ``forward`` and ``generate``; the model scatters them into its image placeholder tokens
and drops them after prefill. No VLM code is patched.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from arrcoc.bayes._validate import check_int

__all__ = ["AdapterOutput", "ARRCOCAdapter", "check_prompts", "left_pad", "check_answers"]


@dataclass
class AdapterOutput:
    """What an adapter's ``generate`` returns.

    sequences (B, L_prompt + new): the VLM's ``generate`` output (prompt then new tokens).
    new_tokens (B, new): only the generated tokens.
    inputs: the exact inputs given to ``generate`` (input_ids, attention_mask, ...).
    vision: the ARRCOCVisionOutput (allocation, relevance, token counts).
    image_token_counts (B,) long: image placeholder tokens in each prompt.
    """

    sequences: Tensor
    new_tokens: Tensor
    inputs: dict[str, Any]
    vision: Any
    image_token_counts: Tensor


def _token_rows(value, name: str) -> list[list[int]]:
    """A (B, L) integer tensor or a sequence of B sequences of non-negative ints -> B lists of ints;
    errors name ``name``."""
    if isinstance(value, Tensor):
        if value.dtype.is_floating_point or value.is_complex() or value.dtype == torch.bool or value.dim() != 2:
            raise TypeError(f"{name} must be an integer tensor of shape (B, L) or a list of token-id lists, "
                            f"got {value.dtype} {tuple(value.shape)}")
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of token-id lists (one per image), got {type(value).__name__}")
    rows = []
    for i, row in enumerate(value):
        if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, Tensor)):
            raise TypeError(f"{name}[{i}] must be a list of token ids, got {type(row).__name__}")
        rows.append([_token_id(t, f"{name}[{i}]") for t in (row.tolist() if isinstance(row, Tensor) else row)])
    return rows


def check_prompts(prompt_ids, batch: int, image_token_id: int) -> list[list[int]]:
    """Validate B prompts (lists of token ids with at most one image placeholder each): a (B, L)
    integer tensor or a sequence of B sequences of non-negative ints."""
    batch = check_int(batch, "batch", minimum=1)
    image_token_id = check_int(image_token_id, "image_token_id", minimum=0)
    prompts = _token_rows(prompt_ids, "prompt_ids")
    if len(prompts) != batch:
        raise ValueError(f"got {batch} images but {len(prompts)} prompts; pass one prompt per image")
    for i, p in enumerate(prompts):
        if p.count(image_token_id) > 1:
            raise ValueError(f"prompt {i} has {p.count(image_token_id)} image placeholders (id {image_token_id}); "
                             "at most one is allowed (it marks where the image goes)")
    return prompts


def _token_id(t, where: str) -> int:
    if isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 0:
        raise TypeError(f"{where} must hold non-negative int token ids, got {t!r}")
    return int(t)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, extra: Sequence[Sequence[int]] | None = None,
             device=None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Left-pad token rows (decoder-only generation) -> ids (B, L), attention_mask (B, L), extra (B, L)."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    ext = None if extra is None else torch.zeros((len(rows), length), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, length - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[b, length - len(r):] = 1
        if ext is not None:
            ext[b, length - len(r):] = torch.tensor(extra[b], dtype=torch.long)
    return ids.to(device), mask.to(device), None if ext is None else ext.to(device)


def check_answers(answer_ids, batch: int) -> list[list[int]]:
    """B non-empty answers as lists of non-negative token ids (a (B, L) tensor counts as B rows)."""
    rows = _token_rows(answer_ids, "answer_ids")
    for i, row in enumerate(rows):
        if not row:
            raise ValueError(f"answer_ids[{i}] is empty; an answer needs at least one token")
    if len(rows) != batch:
        raise ValueError(f"got {batch} images but {len(rows)} answers; pass one answer per image")
    return rows


class ARRCOCAdapter:
    """Base of the VLM adapters: a subclass sets ``model``, ``pad_token_id`` (and ``processor`` when
    it has one) and implements ``prepare(pixel_values, prompt_ids, queries, budget, generator,
    deterministic) -> (inputs, vision, counts)`` with left-padded rows; ``generate``, ``score`` and
    ``chat_prompts`` are shared."""

    model: Any
    pad_token_id: int
    processor: Any = None

    def chat_prompts(self, questions: Sequence[str] | str, add_generation_prompt: bool = True) -> list[list[int]]:
        """Token ids of each question in the VLM's own chat template (its processor's
        ``apply_chat_template``, one user turn: the image, then the question), one image placeholder
        each; ``prepare`` expands the placeholder to the image's allocated tokens."""
        if isinstance(questions, str):
            questions = [questions]
        questions = list(questions)
        if not questions or not all(isinstance(q, str) and q.strip() for q in questions):
            raise ValueError("questions must be a non-empty list of non-empty strings")
        proc = self.processor
        tok = getattr(proc, "tokenizer", proc)
        if proc is None or not hasattr(proc, "apply_chat_template") or getattr(proc, "chat_template", None) is None:
            raise ValueError(f"{type(self).__name__} has no processor with a chat template; pass the VLM's processor "
                             "when building the adapter, or give prompt_ids yourself")
        rows = []
        for q in questions:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
            text = proc.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
            rows.append(list(tok(text, add_special_tokens=False)["input_ids"]))
        return rows

    def _checked_encode(self, pixel_values, prompt_ids, **encoder_kwargs):
        """The own-tower adapters' common first step: check the pixels, the prompts (one per image,
        at most one placeholder, ids inside ``self.vocab_size``), then run the encoder.
        Returns (prompts as lists of ids, ARRCOCVisionOutput)."""
        from ._own_tower import check_vocab

        if not isinstance(pixel_values, Tensor) or pixel_values.dim() != 4:
            got = tuple(pixel_values.shape) if isinstance(pixel_values, Tensor) else type(pixel_values).__name__
            raise ValueError(f"pixel_values must be a (B, 3, H, W) tensor, got {got}")
        prompts = check_prompts(prompt_ids, pixel_values.shape[0], self.image_token_id)
        check_vocab(prompts, self.vocab_size)
        return prompts, self.encoder(pixel_values, **encoder_kwargs)

    def pixel_values(self, images) -> Tensor:
        """Images (PIL RGB images, (H, W, 3) arrays or (3, H, W) tensors) -> the encoder's
        ``pixel_values`` (B, 3, S, S): resized to ``config.image_size``, normalised as the VLM's
        processor normalises (``ARRCOCImageProcessor`` with the encoder's statistics)."""
        from arrcoc.modeling import ARRCOCImageProcessor

        proc = ARRCOCImageProcessor.from_model_config(self.encoder.config)
        pv = proc(images, return_tensors="pt")["pixel_values"]  # (B, 3, S, S)
        return pv.to(device=self.model.device, dtype=next(self.encoder.parameters()).dtype)

    def answer(self, images, questions: Sequence[str] | str, max_new_tokens: int = 32, budget=None,
               generator: torch.Generator | None = None, deterministic: bool | None = None,
               **generate_kwargs) -> list[str]:
        """Ask each image its question: allocation by the question, the VLM's own chat template,
        greedy decoding by default; returns the decoded answers (special tokens skipped). Without a
        ``generator`` the allocation is the posterior mean's (reproducible); with one, a Thompson draw."""
        if deterministic is None:
            deterministic = generator is None
        if isinstance(questions, str):
            questions = [questions]
        questions = list(questions)
        if not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) != len(questions):
            raise ValueError(f"got {len(images)} images but {len(questions)} questions; pass one question per image")
        prompts = self.chat_prompts(questions)
        generate_kwargs.setdefault("do_sample", False)
        out = self.generate(self.pixel_values(list(images)), prompts, queries=questions, budget=budget,
                            generator=generator, deterministic=deterministic, max_new_tokens=max_new_tokens,
                            **generate_kwargs)
        tok = getattr(self.processor, "tokenizer", self.processor)
        return [tok.decode(row, skip_special_tokens=True) for row in out.new_tokens.tolist()]

    def score(self, pixel_values: Tensor, prompt_ids, answer_ids, queries=None, budget=None, generator=None,
              deterministic: bool | None = None, reduction: str = "sum", return_greedy: bool = False):
        """Log-likelihood of given answers under the VLM, each image encoded as ``prepare`` allocates.

        Each row is prompt + answer, left padded, so the answer is the last tokens of its row; the
        logits one position earlier predict them. Returns (B,) summed (``reduction="sum"``) or mean
        (``"mean"``) log-probabilities of the answer tokens, or a list of (len_b,) per-token tensors
        (``"none"``). ``return_greedy``: also a (B,) bool, True where greedy decoding would produce
        exactly the answer (every answer token is the arg max of its position).
        """
        if reduction not in ("sum", "mean", "none"):
            raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")
        batch = pixel_values.shape[0] if isinstance(pixel_values, Tensor) else -1
        answers = check_answers(answer_ids, batch)
        prompts = check_prompts(prompt_ids, batch, getattr(self, "image_token_id", 0))
        rows = [p + a for p, a in zip(prompts, answers)]
        inputs, _, _ = self.prepare(pixel_values, rows, queries=queries, budget=budget, generator=generator,
                                    deterministic=deterministic)
        with torch.no_grad():
            logits = self.model(**inputs).logits  # (B, L, V)
        logp = torch.log_softmax(logits.float(), dim=-1)
        ids = inputs["input_ids"]  # (B, L)
        length = ids.shape[1]
        out, greedy = [], []
        for b, a in enumerate(answers):
            pos = torch.arange(length - len(a), length, device=ids.device)  # the answer's positions
            tok = ids[b, pos]
            if tok.tolist() != a:
                raise RuntimeError(f"row {b} does not end with its answer tokens after prepare(); the adapter "
                                   "must left-pad and keep the prompt's tail")
            out.append(logp[b, pos - 1].gather(-1, tok[:, None])[:, 0])  # (len_b,)
            greedy.append(bool((logp[b, pos - 1].argmax(-1) == tok).all()))
        res = out if reduction == "none" else torch.stack([o.sum() if reduction == "sum" else o.mean() for o in out])
        return (res, torch.tensor(greedy)) if return_greedy else res

    def prepare(self, pixel_values: Tensor, prompt_ids, queries=None, budget=None, generator=None,
                deterministic: bool | None = None):
        raise NotImplementedError(f"{type(self).__name__} must implement prepare()")

    def generate(self, pixel_values: Tensor, prompt_ids: Sequence[Sequence[int]], queries=None, budget=None,
                 generator=None, deterministic: bool | None = None, max_new_tokens: int = 16,
                 **generate_kwargs) -> AdapterOutput:
        """Allocation first (``prepare``), then the wrapped VLM's own ``generate``."""
        inputs, vision, counts = self.prepare(pixel_values, prompt_ids, queries=queries, budget=budget,
                                              generator=generator, deterministic=deterministic)
        seq = self.model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=self.pad_token_id,
                                  **generate_kwargs)
        new = seq[:, inputs["input_ids"].shape[1]:]  # (B, new)
        return AdapterOutput(sequences=seq, new_tokens=new, inputs=inputs, vision=vision, image_token_counts=counts)
