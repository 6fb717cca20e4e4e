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
from torch import Tensor

from arrcoc.modeling import ARRCOCImageProcessor, ARRCOCVisionModel

from ._loop import (EpochSampler, Joint, Rows, build_optimizer, check_mixed_precision, empirical_bayes, evaluate,
                    forced_allocation, mix_seed, set_trainable)
from .config import TrainConfig, _lr_lambda
from .data import SKIP_REASONS, DataReport, VQACollator, build_answer_vocab, normalize_answer
from .reader import ReaderConfig, ReaderHead

__all__ = ["train", "TrainResult", "find_checkpoint"]

logger = logging.getLogger("arrcoc.training")
_CKPT = "checkpoints"
_STATS = 8  # answer loss sum, relevance loss sum, correct, rows used, rows with a target, tokens, micro-batches,
#            pointer loss sum


@dataclass
class TrainResult:
    """What ``train`` returns (the same on every process).

    metrics: the final evaluation's metrics when an eval set is given (accuracy over the rows used,
        accuracy_all_rows over every row read, tokens_per_image, rows, used), else the last step's
        training record. history: one dict per optimizer step (step, epoch, loss, answer_loss,
        relevance_loss, accuracy, tokens_per_image, rows, lr, policies) plus {"eval": ...} records.
    checkpoint: the last checkpoint's folder. data_report / eval_report: rows read, used, skipped.
    answers: the answer vocabulary (class i of the reader = answers[i]). reader: the trained reader
    (the model passed in is trained in place); both are left in eval mode.
    """

    metrics: dict
    history: list
    checkpoint: str | None
    data_report: DataReport
    eval_report: DataReport | None = None
    answers: list = field(default_factory=list)
    stopped_early: bool = False
    reader: ReaderHead | None = None  # the trained reader (the one passed in, or the one built)


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


def train(config: TrainConfig, model: ARRCOCVisionModel, reader: ReaderHead | None, train_dataset,
          eval_dataset=None, collate=None, callbacks=None) -> TrainResult:
    """Train the reader, the query head and the calibration of ``model`` (see the module docstring).

    config: ``TrainConfig``. model: an ``ARRCOCVisionModel``. reader: a ``ReaderHead`` whose
    num_answers equals the answer vocabulary's size, or None (one is built:
    ``ReaderConfig.for_encoder(model, len(answers))``). train_dataset / eval_dataset: data sets of
    rows with image, question, answer[, target] (``load_vqa_dataset``). collate: rows -> batch
    (default ``VQACollator`` with the encoder's processor). callbacks: callables given each step's
    record (a dict) on every process; one returning True (on any process) stops the run after that
    step on all of them (a checkpoint is saved, and ``resume_from`` continues it). Returns a
    ``TrainResult``.
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
    # without a GPU the run is a CPU run: accelerate sets up gloo across launched processes only when
    # told cpu=True (else each process would silently train alone)
    use_cpu = cfg.cpu or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") \
        or not torch.cuda.is_available()
    mp = check_mixed_precision(cfg, use_cpu)
    acc = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps, mixed_precision=mp,
                      cpu=use_cpu, dataloader_config=DataLoaderConfiguration(split_batches=True),
                      step_scheduler_with_optimizer=False)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and acc.num_processes != world:
        raise RuntimeError(f"launched as {world} processes but the Accelerator sees {acc.num_processes}: the "
                           "distributed state was set up before train() (e.g. accelerate.PartialState() without "
                           "cpu=True on a CPU); let train() create it first")
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
    rows = Rows(train_dataset)
    if "calibration" in cfg.train_parts and method == "empirical_bayes" and state is None:
        summary = empirical_bayes(model.to(acc.device), rows, collate, cfg, acc.device)
        if main:
            logger.info("calibration by empirical Bayes:\n%s", summary)
    set_trainable(model, reader, cfg, calib_by_gradient=(method == "gradient"))
    want_relevance = has_targets and cfg.relevance_loss_weight > 0 and (
        "query_head" in cfg.train_parts or ("calibration" in cfg.train_parts and method == "gradient"))
    want_pointer = has_targets and cfg.pointer_loss_weight > 0 and "reader" in cfg.train_parts
    joint = Joint(model, reader)
    optimizer = build_optimizer(joint, cfg)

    global_batch = cfg.per_device_batch_size * acc.num_processes
    if len(rows) < global_batch:
        raise ValueError(f"train_dataset has {len(rows)} rows, fewer than one global batch of {global_batch} "
                         f"(per_device_batch_size {cfg.per_device_batch_size} x {acc.num_processes} processes)")
    sampler = EpochSampler(len(rows), cfg.seed)
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
            Rows(eval_dataset), batch_size=global_batch, sampler=EpochSampler(len(eval_dataset), 0, False),
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
            g = torch.Generator().manual_seed(mix_seed(cfg.seed, 13, micro))
            policy = policies[int(torch.multinomial(weights, 1, generator=g))]
            used_policies.append(policy)
            status_counts += torch.bincount(batch["status"].cpu(), minlength=len(SKIP_REASONS) + 1)
            n = batch["pixel_values"].shape[0]
            counts = acc.reduce(torch.tensor([n, int(batch["has_target"].sum())], device=acc.device), "sum")
            m = acc.unwrap_model(joint).model
            alloc, bud = forced_allocation(policy, m, batch["index"], region_budget, cfg.seed, epoch, acc.device)
            thompson = torch.Generator(device=acc.device).manual_seed(mix_seed(cfg.seed, 7, micro, acc.process_index))
            with acc.accumulate(joint):
                out = joint({k: v.to(acc.device) if isinstance(v, Tensor) else v for k, v in batch.items()},
                            alloc, bud if bud is not None else budget, thompson, cfg.deterministic, want_relevance,
                            want_pointer)
                scale = acc.num_processes
                loss = out["answer"] * scale / max(int(counts[0]), 1)
                if want_relevance:
                    loss = loss + cfg.relevance_loss_weight * out["relevance"] * scale / max(int(counts[1]), 1)
                if want_pointer:
                    loss = loss + cfg.pointer_loss_weight * out["pointer"] * scale / max(int(counts[1]), 1)
                acc.backward(loss)
                if acc.sync_gradients and cfg.max_grad_norm is not None:
                    acc.clip_grad_norm_([p for p in joint.parameters() if p.requires_grad], cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            sums += torch.tensor([float(out["answer"].detach()), float(out["relevance"].detach()
                                        if isinstance(out["relevance"], Tensor) else out["relevance"]), out["correct"], n,
                                  int(batch["has_target"].sum()), out["tokens"], 1,
                                  float(out["pointer"].detach() if isinstance(out["pointer"], Tensor) else out["pointer"])],
                                 dtype=torch.float64)
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
                   "pointer_loss": float(tot[7]) / max(float(tot[4]), 1.0) if want_pointer else None,
                   "accuracy": float(tot[2]) / used, "tokens_per_image": float(tot[5]) / used,
                   "rows": int(sc.sum()), "used": int(tot[3]), "lr": lr,
                   "policies": used_policies}
            rec["loss"] = (rec["answer_loss"] + (cfg.relevance_loss_weight * rec["relevance_loss"] if want_relevance else 0.0)
                           + (cfg.pointer_loss_weight * rec["pointer_loss"] if want_pointer else 0.0))
            history.append(rec)
            sums.zero_()
            status_counts.zero_()
            used_policies = []
            bar.update(1)
            if main and (step % cfg.log_every == 0 or step == total):
                bar.set_postfix(loss=f"{rec['loss']:.4f}", acc=f"{rec['accuracy']:.3f}", tok=f"{rec['tokens_per_image']:.0f}")
                logger.info("step %d/%d loss %.4f accuracy %.3f tokens/image %.1f", step, total, rec["loss"],
                            rec["accuracy"], rec["tokens_per_image"])
            asked = any([bool(cb(rec)) for cb in callbacks])  # every callback sees every record
            if callbacks and acc.num_processes > 1:  # a stop asked on one process stops them all
                asked = bool(acc.reduce(torch.tensor([int(asked)], device=acc.device), "sum").item())
            if asked:
                stopped = step < total
            if eval_loader is not None and cfg.eval_every and step % cfg.eval_every == 0 and step < total:
                ev, _ = evaluate(joint, eval_loader, acc, cfg, budget, region_budget)
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
        metrics, eval_report = evaluate(joint, eval_loader, acc, cfg, budget, region_budget)
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
    trained = acc.unwrap_model(joint)
    trained.eval()
    acc.free_memory()
    return TrainResult(metrics, history, ckpt, report, eval_report, list(answers), stopped, trained.reader)


