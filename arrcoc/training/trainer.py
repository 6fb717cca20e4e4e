"""``train``: the training loop on ``accelerate.Accelerator`` (1..N processes, CPU or GPU).

One optimizer step = ``gradient_accumulation_steps`` micro-batches of ``per_device_batch_size``
rows on each process. The loader draws *global* batches (``split_batches``: one permutation of the
training set per epoch from the seed, cut into batches of per_device x processes rows, each
process taking its slice), and every loss is a sum over the rows a process holds divided by the
global count of rows used, so a run on N processes follows the 1-process trajectory with the same
global batch (bad rows and uneven slices included). Each micro-batch's allocation policy is drawn
from ``allocation_mix`` by a generator seeded from (seed, micro-batch number), the same on every
process; random allocations are drawn per row from (seed, epoch, row index). ARR-COC's Thompson
draws use one generator per micro-batch and process, so they (like dropout) depend on how a batch is
split; with ``deterministic=True`` and dropout 0 a run does not depend on the process count.

What is trained: the reader (answer cross-entropy); the query head and the calibration by the
region-target cross-entropy between softmax(posterior relevance mean) and the target region (rows
with a target), or the calibration by empirical Bayes before the loop (no targets needed). The
allocation is discrete and passes no gradient; the backbone and query encoder stay frozen unless
``train_backbone``.

Checkpoints (``output_dir/checkpoints/step_N``): ``accelerator.save_state`` (weights, optimizer,
scheduler, every process's RNG states), ``trainer_state.json`` (step, data position, history, data
report), the encoder through ``save_pretrained`` (``encoder/``), ``reader.pt`` + ``reader.json`` and
``answers.json``. Resuming restores all of it and skips the batches already seen: the resumed run
ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arrcoc.relevance import allocate_random, allocate_uniform, fit_empirical_bayes
from arrcoc.modeling import ARRCOCImageProcessor, ARRCOCVisionModel
from arrcoc.modeling.regions import crop_resize

from .config import POLICIES, TrainConfig, _lr_lambda
from .data import SKIP_REASONS, DataReport, VQACollator, build_answer_vocab, normalize_answer
from .reader import ReaderConfig, ReaderHead

__all__ = ["train", "TrainResult", "find_checkpoint"]

logger = logging.getLogger("arrcoc.training")
_CKPT = "checkpoints"
_STATS = 7  # answer loss sum, relevance loss sum, correct, rows used, rows with a target, tokens, micro-batches


@dataclass
class TrainResult:
    """What ``train`` returns (the same on every process).

    metrics: the final evaluation's metrics when an eval set is given (accuracy over the rows used,
        accuracy_all_rows over every row read, tokens_per_image, rows, used), else the last step's
        training record. history: one dict per optimizer step (step, epoch, loss, answer_loss,
        relevance_loss, accuracy, tokens_per_image, rows, lr, policies) plus {"eval": ...} records.
    checkpoint: the last checkpoint's folder. data_report / eval_report: rows read, used, skipped.
    answers: the answer vocabulary (class i of the reader = answers[i]).
    """

    metrics: dict
    history: list
    checkpoint: str | None
    data_report: DataReport
    eval_report: DataReport | None = None
    answers: list = field(default_factory=list)
    stopped_early: bool = False


class _Rows(torch.utils.data.Dataset):
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


class _EpochSampler(torch.utils.data.Sampler):
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
        g = torch.Generator().manual_seed(_seed(self.seed, 17, self.epoch))
        return iter(torch.randperm(self.n, generator=g).tolist())


def _seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (splitmix-style), stable across processes and runs."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return h >> 1


class _Joint(nn.Module):
    """Encoder + reader as one module (one DDP wrapper); forward returns the loss sums of a batch."""

    def __init__(self, model: ARRCOCVisionModel, reader: ReaderHead):
        super().__init__()
        self.model, self.reader = model, reader

    def forward(self, batch: dict, allocation: Tensor | None, budget, generator, deterministic: bool,
                relevance: bool) -> dict:
        pixel_values = batch["pixel_values"]
        n = pixel_values.shape[0]
        # every trainable parameter enters the graph (times 0), so DDP never meets an unused one
        zero = sum(p.reshape(-1)[0] * 0.0 for p in self.parameters() if p.requires_grad)
        if n == 0:  # every row of this slice was bad: a zero loss keeps the processes in step
            return {"answer": zero, "relevance": zero, "correct": 0, "tokens": 0}
        m = self.model
        ids, mask = m.tokenize_queries(batch["queries"], device=pixel_values.device)  # (n, T)
        kw = {} if allocation is None else {"allocation": allocation}
        out = m(pixel_values, queries=batch["queries"], budget=budget, generator=generator,
                deterministic=deterministic, **kw)
        logits = self.reader(out.last_hidden_state, out.attention_mask, out.token_region, ids, mask)  # (n, A)
        answer = F.cross_entropy(logits.float(), batch["labels"], reduction="sum")
        rel = zero
        if relevance and bool(batch["has_target"].any()):
            logp = torch.log_softmax(out.relevance_mean.float(), -1)  # (n, R)
            rel = -(batch["target"] * logp).sum(-1)[batch["has_target"]].sum()
        correct = int((logits.argmax(-1) == batch["labels"]).sum())
        return {"answer": answer + zero, "relevance": rel, "correct": correct,
                "tokens": int(out.tokens_per_image.sum()), "logits": logits}


def find_checkpoint(output_dir, which: str = "latest") -> str:
    """The checkpoint folder ``which`` names: "latest" (highest step under output_dir/checkpoints) or a path."""
    if not isinstance(which, (str, os.PathLike)):
        raise TypeError(f"which must be 'latest' or a checkpoint path, got {which!r}")
    if which != "latest":
        p = Path(which)
        if not (p / "trainer_state.json").is_file():
            raise FileNotFoundError(f"resume_from {str(p)!r} is not a checkpoint (no trainer_state.json)")
        return str(p)
    if not isinstance(output_dir, (str, os.PathLike)):
        raise TypeError(f"output_dir must be a path, got {output_dir!r}")
    root = Path(output_dir) / _CKPT
    found = sorted(root.glob("step_*/trainer_state.json")) if root.is_dir() else []
    if not found:
        raise FileNotFoundError(f"resume_from='latest' but {str(root)!r} holds no checkpoint")
    return str(found[-1].parent)


def _check_mixed_precision(cfg: TrainConfig, use_cpu: bool) -> str:
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


def _trainable(model: ARRCOCVisionModel, reader: ReaderHead, cfg: TrainConfig, calib_by_gradient: bool) -> None:
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


def _optimizer(joint: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
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


def _forced_allocation(policy: str, model: ARRCOCVisionModel, rows: Tensor, region_budget: int, seed: int,
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
                                       torch.Generator().manual_seed(_seed(seed, 29, epoch, int(i)))).levels
                       for i in rows.tolist()]) if n else torch.zeros(0, R, dtype=torch.long)
    return a.to(device=device, dtype=torch.long), c.global_tokens + region_budget


def _empirical_bayes(model: ARRCOCVisionModel, rows: _Rows, collate, cfg: TrainConfig, device) -> str:
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
            _, o, mk, *_ = model.allocator.score(out.region_features, region_pixels=pix,
                                                 query_embeds=model.query_encoder(ids, qm), query_mask=qm.bool(),
                                                 question=q)
            obs.append(o.double().cpu())
            masks.append(mk.cpu())
    if not obs:
        raise ValueError("no usable training row for the empirical-Bayes calibration")
    res = fit_empirical_bayes(torch.cat(obs), torch.cat(masks))
    res.apply(model.allocator)
    return str(res)


def train(config: TrainConfig, model: ARRCOCVisionModel, reader: ReaderHead | None, train_dataset,
          eval_dataset=None, collate=None, callbacks=None) -> TrainResult:
    """Train the reader, the query head and the calibration of ``model`` (see the module docstring).

    config: ``TrainConfig``. model: an ``ARRCOCVisionModel``. reader: a ``ReaderHead`` whose
    num_answers equals the answer vocabulary's size, or None (one is built:
    ``ReaderConfig.for_encoder(model, len(answers))``). train_dataset / eval_dataset: data sets of
    rows with image, question, answer[, target] (``load_vqa_dataset``). collate: rows -> batch
    (default ``VQACollator`` with the encoder's processor). callbacks: callables given each step's
    record (a dict) on every process; one returning True stops the run after that step (a
    checkpoint is saved, and ``resume_from`` continues it). Returns a ``TrainResult``.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed

    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(model, ARRCOCVisionModel):
        raise TypeError(f"model must be an ARRCOCVisionModel, got {type(model).__name__}")
    if reader is not None and not isinstance(reader, ReaderHead):
        raise TypeError(f"reader must be a ReaderHead or None, got {type(reader).__name__}")
    for name, d in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
        if d is None and name == "eval_dataset":
            continue
        if not hasattr(d, "__len__") or not hasattr(d, "__getitem__") or isinstance(d, (str, bytes, dict)):
            raise TypeError(f"{name} must be a data set of rows (load_vqa_dataset), got {type(d).__name__}")
    if len(train_dataset) == 0:
        raise ValueError("train_dataset is empty")
    if collate is not None and not callable(collate):
        raise TypeError(f"collate must be callable, got {type(collate).__name__}")
    if callbacks is None:
        callbacks = []
    elif callable(callbacks):
        callbacks = [callbacks]
    if not isinstance(callbacks, (list, tuple)) or not all(callable(c) for c in callbacks):
        raise TypeError(f"callbacks must be a list of callables, got {callbacks!r}")
    cfg = config
    resume = find_checkpoint(cfg.output_dir, cfg.resume_from) if cfg.resume_from is not None else None
    state = json.loads((Path(resume) / "trainer_state.json").read_text()) if resume else None

    # answers ------------------------------------------------------------------------------------------
    if state is not None:
        answers = state["answers"]
    elif cfg.answer_vocab is not None:
        answers = [normalize_answer(a) for a in cfg.answer_vocab]
    else:
        source = train_dataset if hasattr(train_dataset, "column_names") else [
            dict(r).get("answer") for r in train_dataset]
        answers = build_answer_vocab(source, cfg.max_answer_classes)
    if reader is None:  # its initial weights come from the seed, not from the caller's global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            reader = ReaderHead(ReaderConfig.for_encoder(model, len(answers)))
    if reader.config.num_answers != len(answers):
        raise ValueError(f"reader has {reader.config.num_answers} answer classes but the answer vocabulary has "
                         f"{len(answers)}; build it with ReaderConfig.for_encoder(model, {len(answers)})")
    if collate is None:
        collate = VQACollator(ARRCOCImageProcessor.from_model_config(model.config), answers)

    # accelerator ---------------------------------------------------------------------------------------
    use_cpu = cfg.cpu or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    mp = _check_mixed_precision(cfg, use_cpu)
    acc = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps, mixed_precision=mp,
                      cpu=use_cpu, dataloader_config=DataLoaderConfiguration(split_batches=True),
                      step_scheduler_with_optimizer=False)
    set_seed(cfg.seed)
    main = acc.is_main_process
    has_targets = "target" in getattr(train_dataset, "column_names", ()) or bool(
        len(train_dataset) and "target" in dict(train_dataset[0]))
    method = cfg.calibration_method
    if method == "auto":
        method = "gradient" if has_targets else "empirical_bayes"
    if "calibration" in cfg.train_parts and method == "gradient" and not has_targets:
        raise ValueError("calibration_method='gradient' needs a target column in train_dataset "
                         "(load_vqa_dataset(..., target_column=...)); use 'empirical_bayes'")
    rows = _Rows(train_dataset)
    if "calibration" in cfg.train_parts and method == "empirical_bayes" and state is None:
        summary = _empirical_bayes(model.to(acc.device), rows, collate, cfg, acc.device)
        if main:
            logger.info("calibration by empirical Bayes:\n%s", summary)
    _trainable(model, reader, cfg, calib_by_gradient=(method == "gradient"))
    want_relevance = has_targets and cfg.relevance_loss_weight > 0 and (
        "query_head" in cfg.train_parts or ("calibration" in cfg.train_parts and method == "gradient"))
    joint = _Joint(model, reader)
    optimizer = _optimizer(joint, cfg)

    global_batch = cfg.per_device_batch_size * acc.num_processes
    if len(rows) < global_batch:
        raise ValueError(f"train_dataset has {len(rows)} rows, fewer than one global batch of {global_batch} "
                         f"(per_device_batch_size {cfg.per_device_batch_size} x {acc.num_processes} processes)")
    sampler = _EpochSampler(len(rows), cfg.seed)
    loader = torch.utils.data.DataLoader(rows, batch_size=global_batch, sampler=sampler, drop_last=True,
                                         collate_fn=collate, num_workers=cfg.num_workers)
    steps_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)
    total = cfg.total_steps(steps_per_epoch)
    if cfg.warmup_steps >= total:
        raise ValueError(f"warmup_steps ({cfg.warmup_steps}) must be below the run's {total} steps")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_lambda(s, cfg.warmup_steps, total, cfg.scheduler))
    joint, optimizer, loader = acc.prepare(joint, optimizer, loader)
    acc.register_for_checkpointing(scheduler)
    eval_loader = None
    if eval_dataset is not None and len(eval_dataset):
        eval_loader = acc.prepare(torch.utils.data.DataLoader(
            _Rows(eval_dataset), batch_size=global_batch, sampler=_EpochSampler(len(eval_dataset), 0, False),
            collate_fn=collate, num_workers=cfg.num_workers))

    step, epoch, batch_in_epoch, history = 0, 0, 0, []
    report = DataReport()
    if state is not None:
        acc.load_state(resume)
        step, epoch, batch_in_epoch, history = state["step"], state["epoch"], state["batch_in_epoch"], state["history"]
        report.add_counts(torch.tensor(state["report_counts"]))
    budget = cfg.budget
    region_budget = (model.config.budget if budget is None else budget) - model.config.global_tokens
    policies = list(cfg.allocation_mix)
    weights = torch.tensor([cfg.allocation_mix[p] for p in policies], dtype=torch.float64)
    from tqdm.auto import tqdm
    bar = tqdm(total=total, initial=step, disable=not (cfg.progress and main), desc="train", dynamic_ncols=True)
    ckpt, stopped, last_saved = None, False, None

    def set_modes(training: bool):
        joint.train(training)
        m = acc.unwrap_model(joint).model
        m.train(training and cfg.train_backbone)
        m.query_encoder.eval()

    def save() -> str:
        nonlocal last_saved
        path = Path(cfg.output_dir) / _CKPT / f"step_{step:08d}"
        acc.wait_for_everyone()
        acc.save_state(str(path))
        if main:
            j = acc.unwrap_model(joint)
            j.model.save_pretrained(str(path / "encoder"))
            torch.save(j.reader.state_dict(), path / "reader.pt")
            (path / "reader.json").write_text(json.dumps(j.reader.config.to_dict(), indent=1))
            (path / "answers.json").write_text(json.dumps(answers, indent=1))
            st = {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "history": history,
                  "answers": answers, "report_counts": [report.used] + [report.skipped[r] for r in SKIP_REASONS],
                  "config": cfg.to_dict()}
            (path / "trainer_state.json").write_text(json.dumps(st, indent=1, default=str))
            done = sorted((Path(cfg.output_dir) / _CKPT).glob("step_*"))
            for old in done[:-cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        last_saved = step
        return str(path)

    set_modes(True)
    while step < total and not stopped:
        sampler.use_epoch(epoch)
        it = acc.skip_first_batches(loader, batch_in_epoch) if batch_in_epoch else loader
        sums = torch.zeros(_STATS, dtype=torch.float64)
        status_counts = torch.zeros(len(SKIP_REASONS) + 1, dtype=torch.long)
        used_policies = []
        for batch in it:
            micro = epoch * len(loader) + batch_in_epoch
            batch_in_epoch += 1
            g = torch.Generator().manual_seed(_seed(cfg.seed, 13, micro))
            policy = policies[int(torch.multinomial(weights, 1, generator=g))]
            used_policies.append(policy)
            status_counts += torch.bincount(batch["status"].cpu(), minlength=len(SKIP_REASONS) + 1)
            n = batch["pixel_values"].shape[0]
            counts = acc.reduce(torch.tensor([n, int(batch["has_target"].sum())], device=acc.device), "sum")
            m = acc.unwrap_model(joint).model
            alloc, bud = _forced_allocation(policy, m, batch["index"], region_budget, cfg.seed, epoch, acc.device)
            thompson = torch.Generator(device=acc.device).manual_seed(_seed(cfg.seed, 7, micro, acc.process_index))
            with acc.accumulate(joint):
                out = joint({k: v.to(acc.device) if isinstance(v, Tensor) else v for k, v in batch.items()},
                            alloc, bud if bud is not None else budget, thompson, cfg.deterministic, want_relevance)
                scale = acc.num_processes
                loss = out["answer"] * scale / max(int(counts[0]), 1)
                if want_relevance:
                    loss = loss + cfg.relevance_loss_weight * out["relevance"] * scale / max(int(counts[1]), 1)
                acc.backward(loss)
                if acc.sync_gradients and cfg.max_grad_norm is not None:
                    acc.clip_grad_norm_([p for p in joint.parameters() if p.requires_grad], cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            sums += torch.tensor([float(out["answer"].detach()), float(out["relevance"].detach()
                                        if isinstance(out["relevance"], Tensor) else out["relevance"]), out["correct"], n,
                                  int(batch["has_target"].sum()), out["tokens"], 1], dtype=torch.float64)
            if not acc.sync_gradients:
                continue
            lr = scheduler.get_last_lr()[0]  # the rate this step used
            scheduler.step()
            step += 1
            tot = acc.reduce(sums.to(acc.device), "sum").cpu()
            sc = acc.reduce(status_counts.to(acc.device), "sum").cpu()
            report.add_counts(sc)
            used = max(float(tot[3]), 1.0)
            rec = {"step": step, "epoch": epoch, "answer_loss": float(tot[0]) / used,
                   "relevance_loss": float(tot[1]) / max(float(tot[4]), 1.0) if want_relevance else None,
                   "accuracy": float(tot[2]) / used, "tokens_per_image": float(tot[5]) / used,
                   "rows": int(sc.sum()), "used": int(tot[3]), "lr": lr,
                   "policies": used_policies}
            rec["loss"] = rec["answer_loss"] + (cfg.relevance_loss_weight * rec["relevance_loss"] if want_relevance else 0.0)
            history.append(rec)
            sums.zero_()
            status_counts.zero_()
            used_policies = []
            bar.update(1)
            if main and (step % cfg.log_every == 0 or step == total):
                bar.set_postfix(loss=f"{rec['loss']:.4f}", acc=f"{rec['accuracy']:.3f}", tok=f"{rec['tokens_per_image']:.0f}")
                logger.info("step %d/%d loss %.4f accuracy %.3f tokens/image %.1f", step, total, rec["loss"],
                            rec["accuracy"], rec["tokens_per_image"])
            if any(bool(cb(rec)) for cb in callbacks):
                stopped = step < total
            if eval_loader is not None and cfg.eval_every and step % cfg.eval_every == 0 and step < total:
                ev, _ = _evaluate(joint, eval_loader, acc, cfg, budget, region_budget)
                history.append({"step": step, "eval": ev})
                set_modes(True)
            if (cfg.save_every and step % cfg.save_every == 0) or stopped or step == total:
                ckpt = save()
            if stopped or step >= total:
                break
        if batch_in_epoch >= len(loader):  # the epoch is over (also when its last step ended the run)
            epoch, batch_in_epoch = epoch + 1, 0
    bar.close()
    metrics, eval_report = dict(history[-1]) if history else {}, None
    if eval_loader is not None:
        metrics, eval_report = _evaluate(joint, eval_loader, acc, cfg, budget, region_budget)
        history.append({"step": step, "eval": metrics})
        if main:
            logger.info("eval: accuracy %.4f over %d rows used (%.4f over all %d rows read), %.1f tokens/image",
                        metrics["accuracy"], metrics["used"], metrics["accuracy_all_rows"], metrics["rows"],
                        metrics["tokens_per_image"])
    if ckpt is None and last_saved != step:
        ckpt = save()
    if main:
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(cfg.output_dir) / "history.json", "w") as f:
            json.dump({"history": history, "data_report": report.as_dict(),
                       "eval_report": None if eval_report is None else eval_report.as_dict()}, f, indent=1, default=str)
    report.examples = dict(getattr(collate, "messages", {}))
    acc.wait_for_everyone()
    acc.free_memory()
    return TrainResult(metrics, history, ckpt, report, eval_report, list(answers), stopped)


@torch.no_grad()
def _evaluate(joint, loader, acc, cfg: TrainConfig, budget, region_budget) -> tuple[dict, DataReport]:
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
            alloc, bud = _forced_allocation(cfg.eval_policy, m, batch["index"], region_budget, cfg.seed, -1, acc.device)
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
