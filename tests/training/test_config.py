"""TrainConfig: defaults, normalisation and a clear error for every bad field."""
import math

import pytest

from arrcoc.training import TrainConfig
from arrcoc.training.config import _lr_lambda


def test_defaults_and_normalisation():
    c = TrainConfig()
    assert c.num_epochs == 1 and c.num_steps is None
    assert c.train_parts == ("query_head", "calibration", "reader")
    assert c.allocation_mix == {"arrcoc": 1.0}
    c = TrainConfig(num_steps=5.0, train_parts=["reader", "query_head", "reader"],
                    allocation_mix={"random": 1, "arrcoc": 3, "full": 0})
    assert c.num_steps == 5 and isinstance(c.num_steps, int) and c.num_epochs is None
    assert c.train_parts == ("query_head", "reader")          # canonical order, duplicate dropped
    assert c.allocation_mix == {"arrcoc": 3.0, "random": 1.0}  # zero weights dropped
    assert c.total_steps(7) == 5 and TrainConfig(num_epochs=3).total_steps(7) == 21
    d = c.to_dict()
    assert d["train_parts"] == ["query_head", "reader"] and d["num_steps"] == 5


@pytest.mark.parametrize("field, value, match", [
    ("num_steps", 0, "num_steps"), ("num_steps", 2.5, "num_steps"), ("num_epochs", -1, "num_epochs"),
    ("per_device_batch_size", 0, "per_device_batch_size"), ("per_device_batch_size", True, "per_device_batch_size"),
    ("gradient_accumulation_steps", 0, "gradient_accumulation_steps"),
    ("learning_rate", 0.0, "learning_rate"), ("learning_rate", math.nan, "learning_rate"),
    ("learning_rate", "1e-3", "learning_rate"), ("weight_decay", -0.1, "weight_decay"),
    ("warmup_steps", -1, "warmup_steps"), ("scheduler", "linear", "scheduler"),
    ("mixed_precision", "fp16", "mixed_precision"), ("seed", -1, "seed"), ("seed", 2 ** 40, "seed"),
    ("log_every", 0, "log_every"), ("save_every", -2, "save_every"), ("keep_checkpoints", 0, "keep_checkpoints"),
    ("resume_from", "", "resume_from"), ("resume_from", 3, "resume_from"),
    ("train_parts", "reader", "train_parts"), ("train_parts", ("reader", "llm"), "train_parts"),
    ("train_backbone", "yes", "train_backbone"), ("calibration_method", "mcmc", "calibration_method"),
    ("calibration_rows", 0, "calibration_rows"),
    ("allocation_mix", {}, "allocation_mix"), ("allocation_mix", {"topk": 1}, "allocation_mix"),
    ("allocation_mix", {"arrcoc": -1}, "allocation_mix"), ("allocation_mix", {"arrcoc": 0}, "allocation_mix"),
    ("allocation_mix", {"arrcoc": math.inf}, "allocation_mix"), ("allocation_mix", ["arrcoc"], "allocation_mix"),
    ("deterministic", 1, "deterministic"), ("budget", -5, "budget"), ("budget", 10.5, "budget"),
    ("max_answer_classes", 1, "max_answer_classes"), ("answer_vocab", "yes", "answer_vocab"),
    ("answer_vocab", ["a"], "answer_vocab"), ("answer_vocab", ["a", "a"], "answer_vocab"),
    ("answer_vocab", ["a", ""], "answer_vocab"),
    ("relevance_loss_weight", -1.0, "relevance_loss_weight"), ("max_grad_norm", 0.0, "max_grad_norm"),
    ("eval_every", -1, "eval_every"), ("eval_policy", "best", "eval_policy"), ("num_workers", -1, "num_workers"),
    ("cpu", None, "cpu"), ("progress", "no", "progress"), ("output_dir", "", "output_dir"), ("output_dir", None, "output_dir"),
])
def test_bad_field_is_named(field, value, match):
    with pytest.raises((TypeError, ValueError), match=match):
        TrainConfig(**{field: value})


def test_steps_and_epochs_exclusive_and_warmup_below_steps():
    with pytest.raises(ValueError, match="num_steps or num_epochs"):
        TrainConfig(num_steps=3, num_epochs=1)
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(num_steps=3, warmup_steps=3)


def test_learning_rate_schedule_numbers():
    # cosine: peak at the first step after warm-up, half way at the middle, 0 at the end
    assert _lr_lambda(0, 0, 10, "cosine") == pytest.approx(1.0)
    assert _lr_lambda(5, 0, 10, "cosine") == pytest.approx(0.5)
    assert _lr_lambda(10, 0, 10, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert [_lr_lambda(s, 3, 10, "constant") for s in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
