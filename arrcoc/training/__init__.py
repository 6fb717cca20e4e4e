"""arrcoc.training: train the learned parts of ARR-COC (query head, calibration) and a reader on
Accelerate (``accelerate launch``: 1..N processes, CPU (gloo) or GPU), with data through ``datasets``.

    config.py   ``TrainConfig``: every setting of a run, checked when built
    data.py     ``load_vqa_dataset`` (datasets only), the answer vocabulary, ``VQACollator`` (bad rows
                counted in a ``DataReport`` and skipped)
    reader.py   ``ReaderHead``: a small transformer answering from the encoder's visual tokens (a
                CPU-trainable stand-in for an LLM)
    trainer.py  ``train`` -> ``TrainResult``: gradient accumulation, checkpoints with exact resume,
                mixed allocation policies, progress bar and logged metrics

The ``train`` extra installs what it needs (accelerate, datasets). The command: ``arrcoc train``.
"""
from .config import POLICIES, TRAIN_PARTS, TrainConfig
from .data import (SKIP_REASONS, DataReport, VQACollator, build_answer_vocab, load_vqa_dataset,
                   normalize_answer)
from .reader import ReaderConfig, ReaderHead
from .trainer import TrainResult, find_checkpoint, train

__all__ = ["TrainConfig", "POLICIES", "TRAIN_PARTS", "load_vqa_dataset", "build_answer_vocab",
           "normalize_answer", "DataReport", "VQACollator", "SKIP_REASONS", "ReaderConfig", "ReaderHead",
           "train", "TrainResult", "find_checkpoint"]
