"""arrcoc.training cases: every setting, data argument and entry point names its bad argument."""
from __future__ import annotations

import functools
import math

import torch
from hypothesis import strategies as st

from . import (BAD_COUNT, BAD_INT, BAD_POSITIVE, BAD_PROB, BAD_REAL, BAD_STR, OPAQUE, Case, bad_tensor,
               keyword_cases)

kw = keyword_cases("arrcoc.training.")
NOT_PATH = st.sampled_from(["", "   ", None, 3, 1.5, OPAQUE])
NOT_COLUMN = st.sampled_from(["", None, 3, OPAQUE, "no_such_column"])
BAD_MIX = st.sampled_from([{}, {"topk": 1.0}, {"arrcoc": -1.0}, {"arrcoc": 0.0}, {"arrcoc": math.nan},
                           {"arrcoc": "1"}, ["arrcoc"], None, OPAQUE, "arrcoc"])
BAD_PARTS = st.sampled_from(["reader", ("reader", "llm"), None, 3, OPAQUE])
BAD_VOCAB = st.sampled_from(["red", ["red"], ["red", "red"], ["red", ""], [1, 2], 3, OPAQUE])


@functools.lru_cache(maxsize=1)
def _parquet() -> str:
    """A 4-row parquet data set in a temporary folder (made once)."""
    import tempfile

    import datasets

    from tests.training.conftest import scene_rows

    path = tempfile.mkdtemp(prefix="arrcoc-train-cases-") + "/rows.parquet"
    datasets.Dataset.from_dict(scene_rows(4)).to_parquet(path)
    return path


@functools.lru_cache(maxsize=1)
def _tiny():
    from tests.training.conftest import tiny_model

    return tiny_model()


def _processor():
    from arrcoc.modeling import ARRCOCImageProcessor

    return ARRCOCImageProcessor(size=64, grid=2)


def _reader_inputs():
    g = torch.Generator().manual_seed(0)
    return dict(visual_tokens=torch.randn(2, 6, 8, generator=g), visual_mask=torch.ones(2, 6, dtype=torch.long),
                token_region=torch.tensor([[-1, 0, 1, 2, 3, 0]] * 2), question_ids=torch.randint(0, 10, (2, 3), generator=g),
                question_mask=torch.ones(2, 3, dtype=torch.bool))


@functools.lru_cache(maxsize=1)
def _reader():
    from arrcoc.training import ReaderConfig, ReaderHead

    return ReaderHead(ReaderConfig(num_answers=3, visual_dim=8, vocab_size=10, num_regions=4, dim=8, num_heads=2))


def _reader_call(**bad):
    return _reader()(**{**_reader_inputs(), **bad})


READER = dict(num_answers=3, visual_dim=8, vocab_size=10, num_regions=4, dim=8, num_heads=2)
BAD_IDS = st.sampled_from([torch.zeros(2, 3), torch.full((2, 3), 10), torch.full((2, 3), -1), torch.zeros(3, 3, dtype=torch.long),
                           torch.zeros(2, 3, dtype=torch.bool), None, OPAQUE])
BAD_REGION = st.sampled_from([torch.zeros(2, 6), torch.full((2, 6), 4), torch.full((2, 6), -3), torch.zeros(2, 5, dtype=torch.long),
                              None, OPAQUE])


def _config(field, v):
    from arrcoc.training import TrainConfig
    return TrainConfig(**{field: v})


CASES = [
    *[kw("TrainConfig", {}, f, bad) for f, bad in [
        ("num_steps", BAD_COUNT), ("num_epochs", BAD_COUNT), ("per_device_batch_size", BAD_COUNT),
        ("gradient_accumulation_steps", BAD_COUNT), ("learning_rate", BAD_POSITIVE), ("weight_decay", BAD_REAL),
        ("warmup_steps", BAD_INT), ("scheduler", BAD_STR), ("mixed_precision", BAD_STR), ("seed", BAD_INT),
        ("log_every", BAD_COUNT), ("save_every", BAD_INT), ("keep_checkpoints", BAD_COUNT), ("resume_from", NOT_PATH),
        ("train_parts", BAD_PARTS), ("allocation_mix", BAD_MIX), ("calibration_method", BAD_STR),
        ("calibration_rows", BAD_COUNT), ("budget", BAD_INT), ("max_answer_classes", BAD_COUNT),
        ("answer_vocab", BAD_VOCAB), ("relevance_loss_weight", BAD_REAL), ("pointer_loss_weight", BAD_REAL),
        ("max_grad_norm", BAD_POSITIVE),
        ("eval_every", BAD_INT), ("eval_policy", BAD_STR), ("num_workers", BAD_INT), ("output_dir", NOT_PATH),
        ("train_backbone", st.sampled_from(["yes", 1, None, OPAQUE])),
        ("deterministic", st.sampled_from(["yes", 1, None, OPAQUE])),
        ("cpu", st.sampled_from(["yes", 1, None, OPAQUE])), ("progress", st.sampled_from(["no", 0, None]))]],
    *[kw("ReaderConfig", READER, f, bad) for f, bad in [
        ("num_answers", BAD_COUNT), ("visual_dim", BAD_COUNT), ("vocab_size", BAD_COUNT), ("num_regions", BAD_COUNT),
        ("dim", BAD_COUNT), ("num_layers", BAD_COUNT), ("num_heads", BAD_COUNT), ("ffn_mult", BAD_COUNT),
        ("dropout", BAD_PROB), ("max_question_tokens", BAD_COUNT)]],
    kw("ReaderConfig.for_encoder", lambda: {"model": _tiny(), "num_answers": 4}, "model",
       st.sampled_from([None, 3, OPAQUE, torch.nn.Linear(2, 2)])),
    kw("ReaderConfig.for_encoder", lambda: {"model": _tiny(), "num_answers": 4}, "num_answers", BAD_COUNT),
    kw("ReaderHead", {}, "config", st.sampled_from([None, 3, OPAQUE, {"num_answers": 3}])),
    *[Case("arrcoc.training.ReaderHead", arg, (lambda a: lambda v: _reader_call(**{a: v}))(arg), bad, name="forward",
           examples=6) for arg, bad in [("visual_tokens", bad_tensor((2, 6, 8), dtype=torch.float32)),
                                        ("question_ids", BAD_IDS), ("token_region", BAD_REGION)]],
    Case("arrcoc.training.ReaderHead", "target_regions",
         lambda v: _reader().pointer_loss(torch.zeros(2, 4), v), st.sampled_from([
             None, 3, OPAQUE, torch.zeros(2, 3, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)]),
         name="pointer_loss", examples=5),
    kw("load_vqa_dataset", {}, "name_or_path", NOT_PATH),
    kw("load_vqa_dataset", lambda: {"name_or_path": _parquet()}, "split", st.sampled_from(["", 3, OPAQUE, "val"])),
    *[kw("load_vqa_dataset", lambda: {"name_or_path": _parquet()}, col, NOT_COLUMN)
      for col in ("image_column", "question_column", "answer_column", "target_column")],
    kw("build_answer_vocab", {}, "answers", st.sampled_from(["red", None, 3, OPAQUE, ["x", "x"], [None, ""]])),
    kw("build_answer_vocab", {"answers": ["a", "b", "c"]}, "max_classes", BAD_COUNT),
    kw("normalize_answer", {}, "answer", st.one_of(BAD_REAL, BAD_STR)),
    kw("DataReport", {}, "rows", st.one_of(BAD_INT, st.integers(max_value=-1))),
    kw("DataReport", {"rows": 3}, "skipped", st.sampled_from([None, 3, {"lost": 1}, {"missing_image": -1},
                                                              {"missing_image": 5}, {"missing_image": 1.5}])),
    kw("VQACollator", {"answers": ["red", "blue"]}, "processor", st.sampled_from([None, 3, OPAQUE])),
    kw("VQACollator", lambda: {"processor": _processor()}, "answers",
       st.sampled_from(["red", ["red"], ["a", " A "], [None, "b"], 3, OPAQUE])),
    kw("train", lambda: {"model": _tiny(), "reader": None, "train_dataset": [{}]}, "config",
       st.sampled_from([None, 3, OPAQUE, {"num_steps": 1}])),
    kw("train", lambda: {"config": _config("num_steps", 1), "reader": None, "train_dataset": [{}]}, "model",
       st.sampled_from([None, 3, OPAQUE, torch.nn.Linear(2, 2)])),
    kw("train", lambda: {"config": _config("num_steps", 1), "model": _tiny(), "train_dataset": [{}]}, "reader",
       st.sampled_from([3, OPAQUE, torch.nn.Linear(2, 2)])),
    kw("train", lambda: {"config": _config("num_steps", 1), "model": _tiny(), "reader": None}, "train_dataset",
       st.sampled_from([None, 3, "rows", OPAQUE, {"image": []}, []])),
    kw("find_checkpoint", {"output_dir": "/nonexistent"}, "which", st.sampled_from([None, 3, OPAQUE])),
    kw("find_checkpoint", {"which": "latest"}, "output_dir", st.sampled_from([None, 3, OPAQUE])),
    kw("command.parse_mix", {}, "allocation_mix", st.sampled_from(["", "  ", None, 3, OPAQUE, "arrcoc=x"])),
    kw("command.add_train_parser", {}, "sub", st.sampled_from([None, 3, OPAQUE])),
    kw("command.run_train", {}, "args", st.sampled_from([None, 3, OPAQUE, {"data": "x"}])),
]

EXEMPT = {
    "arrcoc.training.TrainResult": "result container built by train() from checked values",
    "arrcoc.training.ReaderOutput": "result container built by ReaderHead.forward_detailed",
    "arrcoc.training.POLICIES": "constant tuple of policy names",
    "arrcoc.training.TRAIN_PARTS": "constant tuple of part names",
    "arrcoc.training.SKIP_REASONS": "constant tuple of skip reasons",
}

XFAIL: dict[str, str] = {}
