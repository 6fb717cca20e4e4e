"""arrcoc.training: train the learned parts of ARR-COC (query head, calibration) and a reader on
Accelerate (``accelerate launch``: 1..N processes, CPU (gloo) or GPU), with data through ``datasets``.

    config.py   ``TrainConfig``: every setting of a run, checked when built
    data.py     ``load_vqa_dataset`` (datasets only), the answer vocabulary, ``VQACollator`` (bad rows
                counted in a ``DataReport`` and skipped)
    reader.py   ``ReaderHead``: a small transformer answering from the encoder's visual tokens (a
                CPU-trainable stand-in for an LLM)
    trainer.py  ``train`` -> ``TrainResult``: gradient accumulation, checkpoints with exact resume,
                mixed allocation policies, progress bar and logged metrics
    command.py  the ``arrcoc train`` subcommand (arguments -> TrainConfig -> train)

The ``train`` extra installs what it needs (accelerate, datasets). Names load lazily, so the
``arrcoc`` command's parser stays cheap.
"""
import importlib

__all__ = ["TrainConfig", "POLICIES", "TRAIN_PARTS", "load_vqa_dataset", "build_answer_vocab",
           "normalize_answer", "DataReport", "VQACollator", "SKIP_REASONS", "ReaderConfig", "ReaderHead",
           "ReaderOutput", "train", "TrainResult", "find_checkpoint"]

_WHERE = {"TrainConfig": "config", "POLICIES": "config", "TRAIN_PARTS": "config",
          "load_vqa_dataset": "data", "build_answer_vocab": "data", "normalize_answer": "data",
          "DataReport": "data", "VQACollator": "data", "SKIP_REASONS": "data",
          "ReaderConfig": "reader", "ReaderHead": "reader", "ReaderOutput": "reader",
          "train": "trainer", "TrainResult": "trainer", "find_checkpoint": "trainer"}


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"arrcoc.training.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'arrcoc.training' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
