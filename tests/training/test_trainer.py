"""The training loop: exact resume, gradient accumulation, bad rows mid-run, what each part learns,
and the argument errors. Runs on the tiny encoder (64-px scenes, 2 x 2 grid): seconds each."""
import io
import json

import numpy as np
import pytest
import torch

from arrcoc.modeling import ARRCOCVisionModel
from arrcoc.training import ReaderConfig, ReaderHead, TrainConfig, build_answer_vocab, find_checkpoint, train

from .conftest import scene_dataset, scene_rows, tiny_model

datasets = pytest.importorskip("datasets")
st = pytest.importorskip("safetensors.torch")


def _cfg(out, **kw):
    base = dict(output_dir=str(out), per_device_batch_size=8, progress=False, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def _weights(ckpt: str) -> dict:
    return st.load_file(f"{ckpt}/model.safetensors")


@pytest.fixture(scope="module")
def data24():
    return scene_dataset(24)


def test_resume_gives_the_same_final_weights_bit_exact(tmp_path, data24):
    """5 steps of 2 micro-batches of 4 (3 steps per epoch, so the run crosses an epoch), Thompson draws
    on: stopped after step 2 (mid-epoch) and resumed from 'latest' == uninterrupted, bit for bit."""
    kw = dict(num_steps=5, gradient_accumulation_steps=2, keep_checkpoints=1, per_device_batch_size=4)
    full = train(_cfg(tmp_path / "a", **kw), tiny_model(), None, data24)
    part = train(_cfg(tmp_path / "b", **kw), tiny_model(), None, data24, callbacks=[lambda r: r["step"] == 2])
    assert part.stopped_early and part.checkpoint.endswith("step_00000002") and len(part.history) == 2
    rest = train(_cfg(tmp_path / "b", resume_from="latest", **kw), tiny_model(), None, data24)
    assert [h["loss"] for h in rest.history] == [h["loss"] for h in full.history]
    assert [h["epoch"] for h in full.history] == [0, 0, 0, 1, 1]
    wa, wb = _weights(full.checkpoint), _weights(rest.checkpoint)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # the checkpoint holds everything needed to use the result; only the newest one is kept
    ck = tmp_path / "b" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["step_00000005"]
    enc = ARRCOCVisionModel.from_pretrained(ck / "step_00000005" / "encoder")
    assert torch.equal(enc.allocator.slope, tiny_model().allocator.slope) is False  # trained calibration saved
    assert json.loads((ck / "step_00000005" / "answers.json").read_text()) == full.answers
    reader = ReaderHead(ReaderConfig(**json.loads((ck / "step_00000005" / "reader.json").read_text())))
    reader.load_state_dict(torch.load(ck / "step_00000005" / "reader.pt"))
    assert find_checkpoint(tmp_path / "b") == str(ck / "step_00000005")


def test_gradient_accumulation_equals_one_big_batch(tmp_path, data24):
    big = train(_cfg(tmp_path / "a", num_steps=3, deterministic=True, per_device_batch_size=6), tiny_model(),
                None, data24)
    acc = train(_cfg(tmp_path / "b", num_steps=3, deterministic=True, per_device_batch_size=2,
                     gradient_accumulation_steps=3), tiny_model(), None, data24)
    assert [h["loss"] for h in acc.history] == pytest.approx([h["loss"] for h in big.history], abs=1e-5)
    # weights agree to float noise, except that Adam turns the noise in parameters whose true gradient
    # is 0 (attention key biases, the query head's output bias under per-image standardisation) into
    # steps of up to ~lr: those agree to 1e-3 only
    wa, wb = _weights(big.checkpoint), _weights(acc.checkpoint)
    zero_grad = ("in_proj_bias", "k_proj.bias", "query.out.bias")
    diff = {k: float((wa[k] - wb[k]).abs().max()) for k in wa}
    assert max(v for k, v in diff.items() if not k.endswith(zero_grad)) < 1e-4
    assert max(diff.values()) < 1e-3


def _with_bad_rows(n_good: int) -> "datasets.Dataset":
    rows = [dict(zip(scene_rows(n_good), v)) for v in zip(*scene_rows(n_good).values())]
    bad = [{"image": None, "question": "what colour?", "answer": "red", "target": 0},
           {"image": {"bytes": b"\x89PNG broken", "path": None}, "question": "what colour?", "answer": "red", "target": 0},
           {"image": rows[0]["image"], "question": "", "answer": "red", "target": 0},
           {"image": rows[0]["image"], "question": "what colour?", "answer": "violet", "target": 0}]
    rows = rows[: n_good // 2] + bad + rows[n_good // 2:] + bad
    feats = datasets.Features({"image": datasets.Image(decode=False), "question": datasets.Value("string"),
                               "answer": datasets.Value("string"), "target": datasets.Value("int64")})
    return datasets.Dataset.from_list(rows, features=feats)


def test_bad_rows_are_counted_and_never_stop_a_run(tmp_path):
    data = _with_bad_rows(16)  # 24 rows, 8 bad
    ev = _with_bad_rows(8)     # 16 rows, 8 bad
    res = train(_cfg(tmp_path, num_epochs=1, answer_vocab=("red", "green", "blue", "yellow")),
                tiny_model(), None, data, ev)
    r = res.data_report
    assert (r.rows, r.used) == (24, 16)
    assert r.skipped == {"missing_image": 2, "unreadable_image": 2, "empty_question": 2, "unknown_answer": 2,
                         "bad_target": 0}
    assert sum(h["used"] for h in res.history if "used" in h) == 16
    assert "24 rows read, 16 used, 8 skipped" in str(r) and "e.g. unknown answer" in str(r)
    m = res.metrics
    assert (m["rows"], m["used"]) == (16, 8) and m["accuracy_all_rows"] == pytest.approx(m["accuracy"] / 2)


def _striped_or_plain(n: int):
    """Two equal white squares in two cells, one striped; the question names one by its pattern (no
    colour or position word, so only the learned query head can tell them apart); target = its cell."""
    from PIL import Image
    rows = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        img = rng.integers(90, 160, size=(64, 64, 3), dtype=np.uint8)
        cells = rng.permutation(4)[:2]
        for c, striped in zip(cells, (True, False)):
            y0, x0 = (c // 2) * 32 + 8, (c % 2) * 32 + 8
            img[y0:y0 + 16, x0:x0 + 16] = 230
            if striped:
                img[y0:y0 + 16:4, x0:x0 + 16] = 20
                img[y0 + 1:y0 + 16:4, x0:x0 + 16] = 20
        k = int(rng.integers(2))
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        rows.append({"image": {"bytes": buf.getvalue(), "path": None},
                     "question": f"where is the {('striped', 'plain')[k]} square?", "answer": "yes",
                     "target": int(cells[k])})
    return datasets.Dataset.from_list(rows)


def test_query_head_and_calibration_learn_from_target_regions(tmp_path):
    """The region-target loss trains the query head and calibration (the reader is frozen here): the
    relevance cross-entropy of the last 8 steps is well below that of the first 8."""
    model = tiny_model()
    before = {k: v.detach().clone() for k, v in model.allocator.named_parameters()}
    res = train(_cfg(tmp_path, num_epochs=3, deterministic=True, learning_rate=0.1, max_grad_norm=None,
                     train_parts=("query_head", "calibration"), answer_vocab=("yes", "no"), seed=0),
                model, None, _striped_or_plain(64))
    rel = [h["relevance_loss"] for h in res.history]
    assert len(rel) == 24
    first, last = np.mean(rel[:8]), np.mean(rel[-8:])
    assert last < 0.9 * first, (first, last)
    moved = {k for k, v in model.allocator.named_parameters() if not torch.equal(v.detach(), before[k])}
    assert {"log_precision", "slope", "query.q_proj.weight", "query.out.weight"} <= moved


def test_empirical_bayes_calibration_without_targets(tmp_path):
    data = scene_dataset(16).remove_columns("target")
    model = tiny_model()
    init = model.allocator.log_precision.detach().clone()
    res = train(_cfg(tmp_path, num_steps=2, calibration_rows=16, train_parts=("calibration", "reader")),
                model, None, data)
    fitted = model.allocator.log_precision.detach()
    assert not torch.equal(fitted, init) and torch.isfinite(fitted).all()
    assert res.history[-1]["relevance_loss"] is None  # no targets: no region loss
    with pytest.raises(ValueError, match="calibration_method='gradient' needs a target column"):
        train(_cfg(tmp_path, calibration_method="gradient"), tiny_model(), None, data)


def test_mixed_allocation_policies(tmp_path, data24):
    """Each micro-batch's policy is drawn from the mix; the encoder gets the forced allocation."""
    mix = {"arrcoc": 1, "full": 1, "uniform": 1, "random": 1}
    res = train(_cfg(tmp_path, num_steps=8, allocation_mix=mix, per_device_batch_size=2), tiny_model(), None, data24)
    seen = {h["policies"][0]: h["tokens_per_image"] for h in res.history}
    assert len(seen) >= 3
    # tiny encoder: 4 global tokens, 4 regions, levels 0/4/16, budget 40 (36 for the regions)
    expect = {"full": 4 + 4 * 16, "uniform": 4 + 4 * 4}
    for policy, tokens in seen.items():
        if policy in expect:
            assert tokens == expect[policy], policy
        else:
            assert 4 < tokens <= 40, policy


def test_argument_errors(tmp_path, data24):
    m = tiny_model()
    with pytest.raises(TypeError, match="config"):
        train({"num_steps": 1}, m, None, data24)
    with pytest.raises(TypeError, match="model"):
        train(_cfg(tmp_path), object(), None, data24)
    with pytest.raises(TypeError, match="reader"):
        train(_cfg(tmp_path), m, "reader", data24)
    with pytest.raises(TypeError, match="train_dataset"):
        train(_cfg(tmp_path), m, None, "rows")
    with pytest.raises(ValueError, match="train_dataset is empty"):
        train(_cfg(tmp_path), m, None, data24.select([]))
    with pytest.raises(TypeError, match="callbacks"):
        train(_cfg(tmp_path), m, None, data24, callbacks=[3])
    with pytest.raises(ValueError, match="answer classes"):
        train(_cfg(tmp_path), m, ReaderHead(ReaderConfig.for_encoder(m, 7)), data24)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        train(_cfg(tmp_path, per_device_batch_size=64), m, None, data24)
    with pytest.raises(ValueError, match="nothing to train"):
        train(_cfg(tmp_path, train_parts=()), m, None, data24)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(_cfg(tmp_path / "empty", resume_from="latest"), m, None, data24)
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        find_checkpoint(tmp_path, str(tmp_path))


def test_decoding_image_column_and_plain_lists(tmp_path):
    """A data set whose Image column decodes (a corrupt file would raise on reading the row) and a
    plain list of row dicts both train; the corrupt row is counted, not raised."""
    rows = scene_rows(8)
    rows["image"][3] = {"bytes": b"\x89PNG not really", "path": None}
    feats = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                               "answer": datasets.Value("string"), "target": datasets.Value("int64")})
    decoding = datasets.Dataset.from_dict(rows, features=feats)
    res = train(_cfg(tmp_path / "a", num_steps=1), tiny_model(), None, decoding)
    assert res.data_report.skipped["unreadable_image"] == 1 and res.data_report.used == 7
    assert isinstance(res.reader, ReaderHead) and not res.reader.training
    plain = [dict(zip(rows, v)) for v in zip(*rows.values())]
    res = train(_cfg(tmp_path / "b", num_steps=1), tiny_model(), None, plain)
    assert res.data_report.rows == 8 and res.answers == build_answer_vocab([r["answer"] for r in plain])


def test_bf16_on_a_cpu_without_it_falls_back_with_a_warning(caplog):
    from pathlib import Path

    from arrcoc.training._loop import check_mixed_precision as _check_mixed_precision
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    with caplog.at_level("WARNING", logger="arrcoc.training"):
        got = _check_mixed_precision(TrainConfig(mixed_precision="bf16"), use_cpu=True)
    assert got == ("bf16" if native else "no")
    assert native or "training in float32" in caplog.text
    assert _check_mixed_precision(TrainConfig(), use_cpu=True) == "no"


def test_reader_pointer_learns_from_target_regions(tmp_path):
    """With a target column and the reader training, the pointer loss (``pointer_loss_weight``) is
    logged and falls: the reader learns where the answer is; with weight 0 it is not computed."""
    res = train(_cfg(tmp_path / "a", num_epochs=3, deterministic=True, learning_rate=3e-3,
                     train_parts=("reader",), answer_vocab=("yes", "no"), seed=0),
                tiny_model(), None, _striped_or_plain(64))
    point = [h["pointer_loss"] for h in res.history]
    assert len(point) == 24 and all(np.isfinite(point))
    assert np.mean(point[-8:]) < 0.8 * np.mean(point[:8]), point
    res0 = train(_cfg(tmp_path / "b", num_steps=2, pointer_loss_weight=0.0, train_parts=("reader",),
                      answer_vocab=("yes", "no"), seed=0), tiny_model(), None, _striped_or_plain(16))
    assert all(h["pointer_loss"] is None for h in res0.history)
