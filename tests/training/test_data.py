"""Data loading through ``datasets`` and the collate's bad-row handling (parquet, imagefolder, json,
save_to_disk): every bad row is counted by reason and left out; good rows become exact model inputs."""
import io
import json

import numpy as np
import pytest
import torch

from arrcoc.modeling import ARRCOCImageProcessor
from arrcoc.training import (DataReport, VQACollator, build_answer_vocab, load_vqa_dataset,
                             normalize_answer)

from .conftest import scene, scene_rows

datasets = pytest.importorskip("datasets")


@pytest.fixture
def processor():
    return ARRCOCImageProcessor(size=64, grid=2, min_size=8)


def _broken_rows():
    """4 good rows, then one row per failure (and one good row without a target)."""
    good = scene_rows(4)
    png, _, _, _ = scene(99)
    rows = [dict(zip(good, vals)) for vals in zip(*good.values())]
    rows += [
        {"image": None, "question": "what colour?", "answer": "red", "target": 0},
        {"image": {"bytes": b"not an image at all", "path": None}, "question": "what colour?", "answer": "red", "target": 0},
        {"image": {"bytes": png[: len(png) // 2], "path": None}, "question": "what colour?", "answer": "red", "target": 0},
        {"image": {"bytes": png, "path": None}, "question": "   ", "answer": "red", "target": 1},
        {"image": {"bytes": png, "path": None}, "question": None, "answer": "red", "target": 1},
        {"image": {"bytes": png, "path": None}, "question": "what colour?", "answer": "purple", "target": 1},
        {"image": {"bytes": png, "path": None}, "question": "what colour?", "answer": None, "target": 1},
        {"image": {"bytes": png, "path": None}, "question": "what colour?", "answer": "red", "target": 7},
        {"image": {"bytes": png, "path": None}, "question": "what  colour?", "answer": " Red ", "target": None},
    ]
    return rows


def test_parquet_bad_rows_counted_and_skipped(tmp_path, processor):
    feats = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                               "answer": datasets.Value("string"), "target": datasets.Value("int64")})
    path = tmp_path / "train.parquet"
    datasets.Dataset.from_list(_broken_rows(), features=feats).to_parquet(str(path))
    data = load_vqa_dataset(path, target_column="target")
    assert data.column_names == ["image", "question", "answer", "target"] and len(data) == 13
    vocab = ["red", "green", "blue", "yellow"]
    collate = VQACollator(processor, vocab)
    batch = collate([data[i] for i in range(len(data))])
    report = DataReport()
    report.add_status(batch["status"])
    assert report.rows == 13 and report.used == 5
    assert report.skipped == {"missing_image": 1, "unreadable_image": 2, "empty_question": 2,
                              "unknown_answer": 2, "bad_target": 1}
    assert batch["status"].tolist() == [0, 0, 0, 0, 1, 2, 2, 3, 3, 4, 4, 5, 0]
    # the good rows, exactly: labels, one-hot targets (none for the last), the processor's pixels
    answers = [scene(i)[2] for i in range(4)] + ["red"]
    assert batch["labels"].tolist() == [vocab.index(a) for a in answers]
    assert batch["has_target"].tolist() == [True] * 4 + [False]
    assert batch["target"][:4].argmax(-1).tolist() == [scene(i)[3] for i in range(4)]
    assert batch["target"][4].sum() == 0 and torch.all(batch["target"][:4].sum(-1) == 1)
    from PIL import Image
    expect = processor(Image.open(io.BytesIO(scene(0)[0])).convert("RGB"))["pixel_values"][0]
    assert torch.equal(batch["pixel_values"][0], expect)
    assert batch["queries"][4] == "what colour?"  # inner whitespace collapsed
    text = str(report)
    assert "13 rows read, 5 used, 8 skipped" in text and "over the 5 rows used" in text
    assert set(collate.messages) == set(report.skipped)


def test_all_bad_batch_is_empty_not_an_error(processor):
    collate = VQACollator(processor, ["red", "blue"])
    b = collate([{"image": None, "question": "q", "answer": "red"}, {"image": b"xx", "question": "", "answer": "red"}])
    assert b["pixel_values"].shape == (0, 3, 64, 64) and b["labels"].numel() == 0
    assert b["status"].tolist() == [1, 2]


def test_imagefolder_with_a_truncated_file(tmp_path, processor):
    from PIL import Image
    folder = tmp_path / "imgs"
    folder.mkdir()
    meta = []
    for i in range(3):
        png, q, a, t = scene(i)
        Image.open(io.BytesIO(png)).convert("L").save(folder / f"{i}.png")  # greyscale: converted to RGB
        meta.append({"file_name": f"{i}.png", "question": q, "answer": a, "box": [0.0, 0.0, 0.5, 1.0]})
    (folder / "3.png").write_bytes(scene(3)[0][:100])  # truncated PNG
    meta.append({"file_name": "3.png", "question": "what colour?", "answer": "red", "box": [0.25, 0.0, 0.75, 0.5]})
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(m) for m in meta))
    data = load_vqa_dataset(folder, target_column="box")
    assert len(data) == 4
    collate = VQACollator(processor, ["red", "green", "blue", "yellow"])
    rows = sorted((data[i] for i in range(4)), key=lambda r: r["image"]["path"])
    b = collate(rows)
    assert b["status"].tolist() == [0, 0, 0, 2]
    # the box (x0 0, y0 0, x1 .5, y1 1) covers the left column of the 2 x 2 grid half each
    assert b["target"][0].tolist() == pytest.approx([0.5, 0.0, 0.5, 0.0])
    bad = collate([{"image": rows[0]["image"], "question": "q", "answer": "red", "target": [0.5, 0.0, 0.2, 1.0]}])
    assert bad["status"].tolist() == [5]


def test_json_relative_paths_and_missing_file(tmp_path, processor):
    (tmp_path / "a.png").write_bytes(scene(5)[0])
    rows = [{"img": "a.png", "q": "what colour?", "ans": scene(5)[2]},
            {"img": "gone.png", "q": "what colour?", "ans": "red"}]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data = load_vqa_dataset(path, image_column="img", question_column="q", answer_column="ans")
    assert data[0]["image"] == str(tmp_path / "a.png")
    b = VQACollator(processor, ["red", "green", "blue", "yellow"])([data[0], data[1]])
    assert b["status"].tolist() == [0, 1]


def test_save_to_disk_splits_and_errors(tmp_path):
    d = datasets.DatasetDict({"train": datasets.Dataset.from_dict(scene_rows(3)),
                              "test": datasets.Dataset.from_dict(scene_rows(2, start=10))})
    d.save_to_disk(str(tmp_path / "dd"))
    assert len(load_vqa_dataset(tmp_path / "dd")) == 3          # 'train' by default
    assert len(load_vqa_dataset(tmp_path / "dd", split="test")) == 2
    with pytest.raises(ValueError, match="split 'val' not found.*'train', 'test'"):
        load_vqa_dataset(tmp_path / "dd", split="val")
    with pytest.raises(ValueError, match="answer_column='label'"):
        load_vqa_dataset(tmp_path / "dd", answer_column="label")
    with pytest.raises(FileNotFoundError, match="name_or_path"):
        load_vqa_dataset(tmp_path / "nothing.parquet")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="unknown type"):
        load_vqa_dataset(tmp_path / "x.txt")
    with pytest.raises(TypeError, match="name_or_path"):
        load_vqa_dataset(None)
    with pytest.raises(TypeError, match="target_column"):
        load_vqa_dataset(tmp_path / "dd", target_column="")


def test_answer_vocabulary():
    answers = ["Red", "blue", "red ", None, "", "green", "blue", "red", 3, 3.0]
    assert build_answer_vocab(answers) == ["red", "3", "blue", "green"]  # by count, ties alphabetical
    assert build_answer_vocab(answers, max_classes=2) == ["red", "3"]
    assert normalize_answer("  Two   Cats ") == "two cats" and normalize_answer(True) is None
    ds = datasets.Dataset.from_dict({"answer": ["b", "a", "b"]})
    assert build_answer_vocab(ds) == ["b", "a"]
    with pytest.raises(ValueError, match="at least 2"):
        build_answer_vocab(["x", "x"])
    with pytest.raises(TypeError, match="answers"):
        build_answer_vocab("red")
    with pytest.raises(ValueError, match="max_classes"):
        build_answer_vocab(answers, max_classes=1)


def test_collator_argument_errors(processor):
    with pytest.raises(TypeError, match="processor"):
        VQACollator(object(), ["a", "b"])
    with pytest.raises(TypeError, match="answers"):
        VQACollator(processor, "ab")
    with pytest.raises(ValueError, match="answers"):
        VQACollator(processor, ["a", " A"])


def test_oversized_and_tiny_images_are_bad_rows(processor):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(buf, format="PNG")
    b = VQACollator(processor, ["red", "blue"])([{"image": buf.getvalue(), "question": "q", "answer": "red"}])
    assert b["status"].tolist() == [2]
