"""The pieces of the training loop (``trainer.train``): row access and the epoch sampler, the joint
encoder + reader module, parameter selection, the optimizer, forced allocations, the empirical-Bayes
calibration and the evaluation. Internal: ``train`` checks every input first."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arrcoc.relevance import allocate_random, allocate_uniform, fit_empirical_bayes
from arrcoc.modeling import ARRCOCImageProcessor, ARRCOCVisionModel
from arrcoc.modeling.regions import crop_resize

from .config import TrainConfig
from .data import DataReport
from .reader import ReaderHead

__all__ = ["Rows", "EpochSampler", "mix_seed", "Joint", "check_mixed_precision", "set_trainable",
           "build_optimizer", "forced_allocation", "empirical_bayes", "evaluate"]

logger = logging.getLogger("arrcoc.training")


class Rows(torch.utils.data.Dataset):
    """A data set's rows as dicts, each with its index (``__index__``) for per-row seeding."""

    def __init__(self, data):
        feats = getattr(data, "features", None) or {}
        img = feats.get("image") if hasattr(feats, "get") else None
        if img is not None and type(img).__name__ == "Image" and getattr(img, "decode", False):
            # a decoding Image column would raise on a corrupt file when the row is read, before the
            # collate can count it: keep the bytes, the collate decodes (and counts failures)
            data = data.cast_column("image", type(img)(decode=False))
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        row = dict(self.data[int(i)])
        row["__index__"] = int(i)
        return row


class EpochSampler(torch.utils.data.Sampler):
    """A permutation of range(n) per epoch from (seed, epoch): the same on every process."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def use_epoch(self, epoch: int) -> None:
        # not named set_epoch: accelerate's loader calls that with its own count of passes, which
        # restarts at 0 in a resumed run; the epoch here is the run's own
        self.epoch = int(epoch)

    def __len__(self):
        return self.n

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(mix_seed(self.seed, 17, self.epoch))
        return iter(torch.randperm(self.n, generator=g).tolist())


def mix_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (splitmix-style), stable across processes and runs."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return h >> 1


def _target_nll(logits: Tensor, batch: dict) -> Tensor:
    """Summed cross-entropy of softmax(logits) (n, R) against the rows' target distributions, over the
    rows that have a target."""
    logp = torch.log_softmax(logits.float(), -1)  # (n, R)
    return -(batch["target"] * logp).sum(-1)[batch["has_target"]].sum()


class Joint(nn.Module):
    """Encoder + reader as one module (one DDP wrapper); forward returns the loss sums of a batch."""

    def __init__(self, model: ARRCOCVisionModel, reader: ReaderHead):
        super().__init__()
        self.model, self.reader = model, reader

    def forward(self, batch: dict, allocation: Tensor | None, budget, generator, deterministic: bool,
                relevance: bool, pointer: bool = False) -> dict:
        pixel_values = batch["pixel_values"]
        n = pixel_values.shape[0]
        # every trainable parameter enters the graph (times 0), so DDP never meets an unused one
        zero = sum(p.reshape(-1)[0] * 0.0 for p in self.parameters() if p.requires_grad)
        if n == 0:  # every row of this slice was bad: a zero loss keeps the processes in step
            return {"answer": zero, "relevance": zero, "pointer": zero, "correct": 0, "tokens": 0}
        m = self.model
        ids, mask = m.tokenize_queries(batch["queries"], device=pixel_values.device)  # (n, T)
        kw = {} if allocation is None else {"allocation": allocation}
        out = m(pixel_values, queries=batch["queries"], budget=budget, generator=generator,
                deterministic=deterministic, **kw)
        read = self.reader.forward_detailed(out.last_hidden_state, out.attention_mask, out.token_region, ids, mask)
        logits = read.logits  # (n, A)
        answer = F.cross_entropy(logits.float(), batch["labels"], reduction="sum")
        rel = point = zero
        if pointer and bool(batch["has_target"].any()):
            point = _target_nll(read.region_logits, batch)  # where the reader looks against the target
        if relevance and bool(batch["has_target"].any()):
            rel = _target_nll(out.relevance_mean, batch)  # the posterior's mean against the target
        correct = int((logits.argmax(-1) == batch["labels"]).sum())
        return {"answer": answer + zero, "relevance": rel, "pointer": point, "correct": correct,
                "tokens": int(out.tokens_per_image.sum()), "logits": logits}


def check_mixed_precision(cfg: TrainConfig, use_cpu: bool) -> str:
    if cfg.mixed_precision == "no":
        return "no"
    if not use_cpu and torch.cuda.is_available():
        if not torch.cuda.is_bf16_supported():
            raise ValueError("mixed_precision='bf16' but this CUDA device does not support bf16; use 'no'")
        return "bf16"
    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        return "bf16"
    logger.warning("mixed_precision='bf16' requested but this CPU has no native bf16 (AVX512-BF16 or AMX): "
                   "training in float32 instead")
    return "no"


def set_trainable(model: ARRCOCVisionModel, reader: ReaderHead, cfg: TrainConfig, calib_by_gradient: bool) -> None:
    model.requires_grad_(False)
    if cfg.train_backbone:
        model.backbone.requires_grad_(True)
        if model.region_embed is not None:
            model.region_embed.requires_grad_(True)
    if "query_head" in cfg.train_parts:
        model.allocator.query.requires_grad_(True)
    if "calibration" in cfg.train_parts and calib_by_gradient:
        a = model.allocator
        for p in (a.slope, a.offset, a.log_precision, a.mu_global, a.log_tau, a.log_sigma):
            p.requires_grad_(True)
    reader.requires_grad_("reader" in cfg.train_parts)


def build_optimizer(joint: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, plain = [], []
    for name, p in joint.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "embed" not in name else plain).append(p)
    if not decay and not plain:
        raise ValueError(f"nothing to train: train_parts={list(cfg.train_parts)} with train_backbone="
                         f"{cfg.train_backbone} leaves no parameter trainable")
    groups = [g for g in ({"params": decay, "weight_decay": cfg.weight_decay},
                          {"params": plain, "weight_decay": 0.0}) if g["params"]]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def forced_allocation(policy: str, model: ARRCOCVisionModel, rows: Tensor, region_budget: int, seed: int,
                       epoch: int, device) -> tuple[Tensor | None, int | None]:
    """(allocation (n, R) long or None for ARR-COC's own, total budget to pass)."""
    if policy == "arrcoc":
        return None, None
    c = model.config
    R, levels, n = c.num_regions, list(c.levels), rows.shape[0]
    if policy == "full":
        return torch.full((n, R), levels[-1], dtype=torch.long, device=device), c.global_tokens + R * levels[-1]
    table = torch.zeros(1, R, len(levels))  # (1, R, L): only feasibility matters to these baselines
    if policy == "uniform":
        a = allocate_uniform(table.expand(n, R, len(levels)), levels, region_budget).levels
    else:
        a = torch.cat([allocate_random(table, levels, region_budget,
                                       torch.Generator().manual_seed(mix_seed(seed, 29, epoch, int(i)))).levels
                       for i in rows.tolist()]) if n else torch.zeros(0, R, dtype=torch.long)
    return a.to(device=device, dtype=torch.long), c.global_tokens + region_budget


def empirical_bayes(model: ARRCOCVisionModel, rows: Rows, collate, cfg: TrainConfig, device) -> str:
    """Fit the calibration by empirical Bayes on the scores of the first calibration_rows rows."""
    n = min(len(rows), cfg.calibration_rows)
    obs, masks = [], []
    proc = getattr(collate, "processor", None) or ARRCOCImageProcessor.from_model_config(model.config)
    with torch.no_grad():
        for start in range(0, n, cfg.per_device_batch_size):
            b = collate([rows[i] for i in range(start, min(n, start + cfg.per_device_batch_size))])
            if b["pixel_values"].shape[0] == 0:
                continue
            px = b["pixel_values"].to(device)
            out = model(px, queries=b["queries"], deterministic=True)
            boxes = out.region_boxes  # (n, R, 4)
            rgb = proc.unnormalize(px)
            s = model.config.scorer_pixels
            bidx = torch.arange(px.shape[0], device=device).repeat_interleave(boxes.shape[1])
            pix = crop_resize(rgb, bidx, boxes.reshape(-1, 4), s).reshape(px.shape[0], boxes.shape[1], 3, s, s)
            ids, qm = model.tokenize_queries(b["queries"], device=device)
            q = model.question_batch(b["queries"], device, px.dtype)
            # the OCR channels too (the reader's pixel cache already holds what forward read)
            st = model.read_scene_text(model._unnormalise(px).clamp(0, 1), boxes, q, b["queries"])
            _, o, mk, *_ = model.allocator.score(out.region_features, region_pixels=pix,
                                                 query_embeds=model.query_encoder(ids, qm), query_mask=qm.bool(),
                                                 question=q, concept_features=out.concept_features, scene_text=st)
            obs.append(o.double().cpu())
            masks.append(mk.cpu())
    if not obs:
        raise ValueError("no usable training row for the empirical-Bayes calibration")
    res = fit_empirical_bayes(torch.cat(obs), torch.cat(masks))
    res.apply(model.allocator)
    return str(res)


@torch.no_grad()
def evaluate(joint, loader, acc, cfg: TrainConfig, budget, region_budget) -> tuple[dict, DataReport]:
    """Accuracy of the reader under cfg.eval_policy (ARR-COC: posterior mean) on an eval loader."""
    joint.eval()
    statuses, corrects, tokens = [], [], []
    for i, batch in enumerate(loader):
        m = acc.unwrap_model(joint).model
        st = batch["status"].to(acc.device)
        ok = st == 0
        correct = torch.zeros(st.shape[0], dtype=torch.long, device=acc.device)
        tok = torch.zeros(st.shape[0], dtype=torch.long, device=acc.device)
        if int(ok.sum()):
            alloc, bud = forced_allocation(cfg.eval_policy, m, batch["index"], region_budget, cfg.seed, -1, acc.device)
            b = {k: v.to(acc.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            kw = {} if alloc is None else {"allocation": alloc}
            out = m(b["pixel_values"], queries=b["queries"], budget=bud if bud is not None else budget,
                    deterministic=True, **kw)
            ids, qm = m.tokenize_queries(b["queries"], device=acc.device)
            logits = acc.unwrap_model(joint).reader(out.last_hidden_state, out.attention_mask, out.token_region, ids, qm)
            correct[ok] = (logits.argmax(-1) == b["labels"]).long()
            tok[ok] = out.tokens_per_image.long()
        s, c, t = acc.gather_for_metrics((st, correct, tok))
        statuses.append(s.cpu())
        corrects.append(c.cpu())
        tokens.append(t.cpu())
    st, co, tk = torch.cat(statuses), torch.cat(corrects), torch.cat(tokens)
    rep = DataReport()
    rep.add_status(st)
    used = max(rep.used, 1)
    metrics = {"accuracy": float(co.sum()) / used, "accuracy_all_rows": float(co.sum()) / max(rep.rows, 1),
               "tokens_per_image": float(tk.sum()) / used, "rows": rep.rows, "used": rep.used,
               "policy": cfg.eval_policy, "skipped": dict(rep.skipped)}
    return metrics, rep
