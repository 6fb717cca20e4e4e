"""``TrainConfig``: every setting of an ``arrcoc.training.train`` run, checked once when it is built."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields

from arrcoc._checks import check_int
from arrcoc.bayes._validate import check_real

__all__ = ["TrainConfig", "POLICIES", "TRAIN_PARTS"]

POLICIES = ("arrcoc", "full", "uniform", "random")
TRAIN_PARTS = ("query_head", "calibration", "reader")
SCHEDULERS = ("cosine", "constant")
PRECISIONS = ("no", "bf16")
CALIBRATION_METHODS = ("auto", "gradient", "empirical_bayes")


def _optional_int(value, name: str, minimum: int):
    return None if value is None else check_int(value, name, minimum=minimum)


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def _check_choice(value, name: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


@dataclass
class TrainConfig:
    """Settings of one training run (``arrcoc.training.train``); each default with its reason.

    output_dir: where checkpoints (``checkpoints/step_N``), the final encoder and the metrics go.
    num_steps / num_epochs: length of the run in optimizer steps or in passes over the training set;
        set at most one (neither: 1 epoch, the smallest run that sees every row).
    per_device_batch_size: rows per process per micro-batch; 8 fits the tiny and the default
        encoder on a 2-core CPU. The global batch is this x processes x gradient_accumulation_steps.
    gradient_accumulation_steps: micro-batches per optimizer step (through the Accelerator); 1.
    learning_rate: AdamW's peak rate; 1e-3 suits the small freshly initialised parts trained here
        (reader, query head, calibration); lower it with ``train_backbone``.
    weight_decay: AdamW decoupled decay on matrices (not on biases, norms, calibration); 0.01.
    warmup_steps: linear warm-up steps before the schedule; 0 (Adam's bias correction suffices for
        runs this small).
    scheduler: "cosine" (to 0 at the last step, the usual choice for a fixed-length run) or "constant".
    mixed_precision: "no" or "bf16". bf16 autocast on a CUDA device that supports it; a CUDA device
        without bf16 is an error; on a CPU without native bf16 (AVX512-BF16 / AMX) it falls back to
        float32 with a logged warning (emulated bf16 would be slower than float32 there).
    seed: seeds the data order, the per-batch allocation policy, the Thompson and random-allocation
        draws, and the global RNGs (dropout); the same seed gives the same run.
    log_every: optimizer steps between log lines / history records; 10.
    save_every: optimizer steps between checkpoints; 0 = only the final one (checkpoints cost disk).
    keep_checkpoints: most recent step checkpoints kept (older ones deleted); 2 keeps one spare if
        a save is interrupted.
    resume_from: None, a checkpoint folder, or "latest" (the newest under ``output_dir``).
    train_parts: which of "query_head", "calibration", "reader" are trained; all three by default.
    train_backbone: also train the vision backbone and the encoder's region embeddings; False (the
        backbone is pretrained and the token budget is what is studied; the query encoder always
        stays frozen).
    calibration_method: how "calibration" is trained: "gradient" (the region-target loss through the
        posterior, needs a target column), "empirical_bayes" (``fit_empirical_bayes`` on the scores
        of ``calibration_rows`` training rows before the loop, no labels needed) or "auto" (gradient
        when the training set has targets, else empirical Bayes).
    calibration_rows: rows scored for the empirical-Bayes fit; 256 (the fit has 39 parameters).
    allocation_mix: policy -> weight over {"arrcoc", "full", "uniform", "random"}; each micro-batch's
        policy is drawn from it, so a reader trained on a mix does not favour one policy. Default
        {"arrcoc": 1}. "full" = every region at the top level (the budget does not apply),
        "uniform" = the largest level every region can have within the budget, "random" = a random
        feasible allocation per row; the encoder encodes them through ``forward(allocation=...)``.
    deterministic: the "arrcoc" policy's allocation during training: False = a Thompson draw
        (explores regions the posterior is unsure about), True = the posterior mean.
    budget: total visual tokens per image (global view included); None = the encoder's own.
    max_answer_classes: keep the most frequent answers of the training set (ties alphabetical);
        rows with other answers are skipped as "unknown answer". None = every answer seen.
    answer_vocab: an explicit answer vocabulary (overrides the one built from the training set).
    relevance_loss_weight: weight of the region-target cross-entropy (softmax of the relevance
        posterior mean against the target region) that trains the query head and calibration; 1.
    pointer_loss_weight: weight of the reader's pointer loss (``ReaderHead``'s region logits against
        the row's target regions; rows without a target are left out), used when the reader trains
        and the data have a target column; 1. On the easy-vqa scenes it is what lets a fresh reader
        learn where to look from a few thousand questions (README, accuracy per token).
    max_grad_norm: gradient clipping (global norm); 1.0 keeps early steps of fresh heads stable.
        None = no clipping.
    eval_every: optimizer steps between evaluations on ``eval_dataset``; 0 = only at the end.
    eval_policy: allocation policy of evaluation (posterior mean for "arrcoc"); "arrcoc".
    num_workers: DataLoader worker processes; 0 (image decoding of small images is cheap, and
        workers multiply memory).
    cpu: run on the CPU even where a GPU is present (without a GPU every run is a CPU run, and
        processes started by ``accelerate launch --multi_gpu`` join one gloo group).
    progress: a tqdm bar on the main process.
    """

    output_dir: str = "arrcoc-train"
    num_steps: int | None = None
    num_epochs: int | None = None
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 0
    scheduler: str = "cosine"
    mixed_precision: str = "no"
    seed: int = 0
    log_every: int = 10
    save_every: int = 0
    keep_checkpoints: int = 2
    resume_from: str | None = None
    train_parts: tuple = TRAIN_PARTS
    train_backbone: bool = False
    calibration_method: str = "auto"
    calibration_rows: int = 256
    allocation_mix: dict = field(default_factory=lambda: {"arrcoc": 1.0})
    deterministic: bool = False
    budget: int | None = None
    max_answer_classes: int | None = None
    answer_vocab: tuple | None = None
    relevance_loss_weight: float = 1.0
    pointer_loss_weight: float = 1.0
    max_grad_norm: float | None = 1.0
    eval_every: int = 0
    eval_policy: str = "arrcoc"
    num_workers: int = 0
    cpu: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.output_dir, (str, os.PathLike)) or not str(self.output_dir).strip():
            raise TypeError(f"output_dir must be a non-empty path, got {self.output_dir!r}")
        self.output_dir = os.fspath(self.output_dir)
        self.num_steps = _optional_int(self.num_steps, "num_steps", 1)
        self.num_epochs = _optional_int(self.num_epochs, "num_epochs", 1)
        if self.num_steps is not None and self.num_epochs is not None:
            raise ValueError(f"set num_steps or num_epochs, not both (got num_steps={self.num_steps}, "
                             f"num_epochs={self.num_epochs})")
        if self.num_steps is None and self.num_epochs is None:
            self.num_epochs = 1
        self.per_device_batch_size = check_int(self.per_device_batch_size, "per_device_batch_size", minimum=1)
        self.gradient_accumulation_steps = check_int(self.gradient_accumulation_steps,
                                                     "gradient_accumulation_steps", minimum=1)
        self.learning_rate = check_real(self.learning_rate, "learning_rate", low=0.0, low_open=True)
        self.weight_decay = check_real(self.weight_decay, "weight_decay", low=0.0)
        self.warmup_steps = check_int(self.warmup_steps, "warmup_steps", minimum=0)
        if self.num_steps is not None and self.warmup_steps >= self.num_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below num_steps ({self.num_steps})")
        self.scheduler = _check_choice(self.scheduler, "scheduler", SCHEDULERS)
        self.mixed_precision = _check_choice(self.mixed_precision, "mixed_precision", PRECISIONS)
        self.seed = check_int(self.seed, "seed", minimum=0, maximum=2 ** 31 - 1)
        self.log_every = check_int(self.log_every, "log_every", minimum=1)
        self.save_every = check_int(self.save_every, "save_every", minimum=0)
        self.keep_checkpoints = check_int(self.keep_checkpoints, "keep_checkpoints", minimum=1)
        if self.resume_from is not None and (not isinstance(self.resume_from, (str, os.PathLike))
                                             or not str(self.resume_from).strip()):
            raise TypeError(f"resume_from must be None, a checkpoint path or 'latest', got {self.resume_from!r}")
        self.resume_from = None if self.resume_from is None else os.fspath(self.resume_from)
        self.train_parts = self._parts(self.train_parts)
        self.train_backbone = _check_bool(self.train_backbone, "train_backbone")
        self.calibration_method = _check_choice(self.calibration_method, "calibration_method", CALIBRATION_METHODS)
        self.calibration_rows = check_int(self.calibration_rows, "calibration_rows", minimum=1)
        self.allocation_mix = self._mix(self.allocation_mix)
        self.deterministic = _check_bool(self.deterministic, "deterministic")
        self.budget = _optional_int(self.budget, "budget", 0)
        self.max_answer_classes = _optional_int(self.max_answer_classes, "max_answer_classes", 2)
        if self.answer_vocab is not None:
            self.answer_vocab = self._vocab(self.answer_vocab)
        self.relevance_loss_weight = check_real(self.relevance_loss_weight, "relevance_loss_weight", low=0.0)
        self.pointer_loss_weight = check_real(self.pointer_loss_weight, "pointer_loss_weight", low=0.0)
        if self.max_grad_norm is not None:
            self.max_grad_norm = check_real(self.max_grad_norm, "max_grad_norm", low=0.0, low_open=True)
        self.eval_every = check_int(self.eval_every, "eval_every", minimum=0)
        self.eval_policy = _check_choice(self.eval_policy, "eval_policy", POLICIES)
        self.num_workers = check_int(self.num_workers, "num_workers", minimum=0)
        self.cpu = _check_bool(self.cpu, "cpu")
        self.progress = _check_bool(self.progress, "progress")

    @staticmethod
    def _parts(parts) -> tuple:
        if isinstance(parts, str) or not isinstance(parts, (tuple, list, set, frozenset)):
            raise TypeError(f"train_parts must be a tuple of names among {list(TRAIN_PARTS)}, got {parts!r}")
        unknown = [p for p in parts if p not in TRAIN_PARTS]
        if unknown:
            raise ValueError(f"train_parts has unknown part(s) {unknown}; expected names among {list(TRAIN_PARTS)}")
        return tuple(p for p in TRAIN_PARTS if p in parts)  # canonical order, duplicates dropped

    @staticmethod
    def _mix(mix) -> dict:
        if not isinstance(mix, dict) or not mix:
            raise TypeError(f"allocation_mix must be a non-empty dict policy -> weight, got {mix!r}")
        out = {}
        for k, w in mix.items():
            if k not in POLICIES:
                raise ValueError(f"allocation_mix has unknown policy {k!r}; expected names among {list(POLICIES)}")
            out[k] = check_real(w, f"allocation_mix[{k!r}]", low=0.0)
        if not sum(out.values()) > 0:
            raise ValueError(f"allocation_mix weights must not all be 0, got {out}")
        return {k: out[k] for k in POLICIES if k in out and out[k] > 0}

    @staticmethod
    def _vocab(vocab) -> tuple:
        if isinstance(vocab, str) or not isinstance(vocab, (tuple, list)):
            raise TypeError(f"answer_vocab must be a list of answer strings, got {type(vocab).__name__}")
        if len(vocab) < 2 or not all(isinstance(a, str) and a.strip() for a in vocab):
            raise ValueError(f"answer_vocab must hold at least 2 non-empty strings, got {list(vocab)[:5]!r}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("answer_vocab has duplicate answers")
        return tuple(vocab)

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps of the run given the steps one epoch takes."""
        return self.num_steps if self.num_steps is not None else self.num_epochs * steps_per_epoch

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["train_parts"] = list(self.train_parts)
        out["answer_vocab"] = None if self.answer_vocab is None else list(self.answer_vocab)
        return out


def _lr_lambda(step: int, warmup: int, total: int, kind: str) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based optimizer step)."""
    if warmup and step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
