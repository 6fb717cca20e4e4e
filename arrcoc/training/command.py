"""``arrcoc train``: command-line arguments -> ``TrainConfig`` -> ``train`` (run it under
``accelerate launch`` for several processes). Imports nothing heavy until the command runs."""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_train_parser", "run_train", "parse_mix"]


def parse_mix(allocation_mix: str) -> dict:
    """"arrcoc=2,full=1" -> {"arrcoc": 2.0, "full": 1.0} (a bare name means weight 1); the names
    and weights are checked by ``TrainConfig``."""
    if not isinstance(allocation_mix, str) or not allocation_mix.strip():
        raise ValueError("allocation_mix (--allocation-mix) must be policy=weight pairs like 'arrcoc=1,full=1', "
                         f"got {allocation_mix!r}")
    out = {}
    for part in allocation_mix.split(","):
        name, _, w = part.strip().partition("=")
        try:
            out[name.strip()] = float(w) if w.strip() else 1.0
        except ValueError:
            raise ValueError(f"allocation_mix (--allocation-mix): the weight of {name.strip()!r} must be a number, "
                             f"got {w!r}") from None
    return out


def add_train_parser(sub) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an argparse subparsers object."""
    if not hasattr(sub, "add_parser"):
        raise TypeError(f"sub must be an argparse subparsers object (parser.add_subparsers()), got {type(sub).__name__}")
    t = sub.add_parser("train", help="train the query head, calibration and a reader (Accelerate; see README)",
                       description="Train ARR-COC's query head and calibration and a reader head on a VQA data "
                                   "set. Several processes: accelerate launch --num_processes N -m arrcoc.cli train ...")
    t.add_argument("data", help="training data: a folder (save_to_disk, imagefolder), a parquet/json/csv file, "
                                "or a dataset name")
    t.add_argument("--eval-data", default=None, help="evaluation data (same forms); default: none")
    t.add_argument("--split", default=None, help="split of DATA (default: its only split, else 'train')")
    t.add_argument("--eval-split", default=None, help="split of --eval-data")
    t.add_argument("--image-column", default="image")
    t.add_argument("--question-column", default="question")
    t.add_argument("--answer-column", default="answer")
    t.add_argument("--target-column", default=None, help="target region column (region index or box); "
                                                         "trains the query head and calibration by gradient")
    t.add_argument("--checkpoint", default=None, help="encoder folder saved by save_pretrained "
                                                      "(default: the pretrained default)")
    t.add_argument("--output-dir", default="arrcoc-train")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--num-steps", type=int, default=None)
    g.add_argument("--num-epochs", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=8, help="rows per process per micro-batch")
    t.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--warmup-steps", type=int, default=0)
    t.add_argument("--scheduler", default="cosine", help="cosine or constant")
    t.add_argument("--mixed-precision", default="no", help="no or bf16")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--save-every", type=int, default=0, help="steps between checkpoints (0: only the last)")
    t.add_argument("--resume-from", default=None, help="a checkpoint folder or 'latest'")
    t.add_argument("--train-parts", default="query_head,calibration,reader",
                   help="comma-separated subset of query_head, calibration, reader")
    t.add_argument("--train-backbone", action="store_true", help="also train the vision backbone")
    t.add_argument("--calibration-method", default="auto", help="auto, gradient or empirical_bayes")
    t.add_argument("--allocation-mix", default="arrcoc=1", help="policy=weight pairs over arrcoc, full, uniform, "
                                                                "random (default: %(default)s)")
    t.add_argument("--deterministic", action="store_true", help="posterior-mean allocation instead of Thompson")
    t.add_argument("--budget", type=int, default=None, help="total visual tokens per image (default: the encoder's)")
    t.add_argument("--max-answer-classes", type=int, default=None)
    t.add_argument("--eval-every", type=int, default=0)
    t.add_argument("--num-workers", type=int, default=0)
    t.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU exists")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    return t


def run_train(args, stream=None) -> int:
    """Run the ``train`` subcommand from parsed arguments; prints the data report and the metrics."""
    import logging

    from arrcoc.modeling import ARRCOCVisionModel, load_default_model

    from .config import TrainConfig
    from .data import load_vqa_dataset
    from .trainer import train

    if not isinstance(args, argparse.Namespace) or not hasattr(args, "data"):
        raise TypeError(f"args must be the argparse.Namespace of `arrcoc train`, got {type(args).__name__}")
    stream = sys.stdout if stream is None else stream
    cfg = TrainConfig(output_dir=args.output_dir, num_steps=args.num_steps, num_epochs=args.num_epochs,
                      per_device_batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
                      learning_rate=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
                      scheduler=args.scheduler, mixed_precision=args.mixed_precision, seed=args.seed,
                      log_every=args.log_every, save_every=args.save_every, resume_from=args.resume_from,
                      train_parts=tuple(p.strip() for p in args.train_parts.split(",") if p.strip()),
                      train_backbone=args.train_backbone, calibration_method=args.calibration_method,
                      allocation_mix=parse_mix(args.allocation_mix), deterministic=args.deterministic,
                      budget=args.budget, max_answer_classes=args.max_answer_classes, eval_every=args.eval_every,
                      num_workers=args.num_workers, cpu=args.cpu, progress=not args.no_progress)
    columns = dict(image_column=args.image_column, question_column=args.question_column,
                   answer_column=args.answer_column, target_column=args.target_column)
    data = load_vqa_dataset(args.data, split=args.split, **columns)
    eval_data = None if args.eval_data is None else load_vqa_dataset(args.eval_data, split=args.eval_split, **columns)
    if args.checkpoint is not None:
        model = ARRCOCVisionModel.from_pretrained(args.checkpoint)
    else:
        model, _ = load_default_model()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    res = train(cfg, model, None, data, eval_data)
    from accelerate import PartialState
    if not PartialState().is_main_process:  # one report, from the main process
        return 0
    print(f"training data: {res.data_report}", file=stream)
    if res.eval_report is not None:
        print(f"evaluation data: {res.eval_report}", file=stream)
    print(f"metrics: {json.dumps(res.metrics, default=str)}", file=stream)
    print(f"checkpoint: {res.checkpoint}", file=stream)
    return 0
