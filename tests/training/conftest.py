"""Tiny encoder and a small synthetic VQA set for the training tests (nothing downloaded).

The scenes: a 64x64 grey noise image with one coloured square in one cell of a 2 x 2 grid; the
question asks for the square's colour (four answers), the target is the square's cell."""
from __future__ import annotations

import io

import numpy as np
import pytest

from arrcoc.modeling import ARRCOCVisionConfig, ARRCOCVisionModel

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220), "yellow": (230, 220, 30)}
QUESTIONS = ("what colour is the square?", "which colour does the square have?")


def tiny_config(**overrides) -> ARRCOCVisionConfig:
    from transformers import CLIPVisionConfig
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                              image_size=16, patch_size=4)
    kw = dict(backbone={"type": "hf", "config": vision.to_dict()}, query_encoder={"type": "bytes", "dim": 32},
              image_size=64, grid=2, levels=[0, 4, 16], global_tokens=4, budget=40, scorer_pixels=16,
              relevance={"num_heads": 2, "head_dim": 8})
    kw.update(overrides)
    return ARRCOCVisionConfig(**kw)


def tiny_model(**overrides) -> ARRCOCVisionModel:
    return ARRCOCVisionModel(tiny_config(**overrides))


def scene(seed: int) -> tuple[bytes, str, str, int]:
    """(PNG bytes, question, answer, target cell) of one scene, deterministic from the seed."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 160, size=(64, 64, 3), dtype=np.uint8)
    cell = int(rng.integers(4))
    name = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    y0, x0 = (cell // 2) * 32 + int(rng.integers(4, 12)), (cell % 2) * 32 + int(rng.integers(4, 12))
    img[y0:y0 + 16, x0:x0 + 16] = COLOURS[name]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue(), QUESTIONS[seed % 2], name, cell


def scene_rows(n: int, start: int = 0) -> dict:
    cols = {"image": [], "question": [], "answer": [], "target": []}
    for i in range(start, start + n):
        png, q, a, t = scene(i)
        cols["image"].append({"bytes": png, "path": None})
        cols["question"].append(q)
        cols["answer"].append(a)
        cols["target"].append(t)
    return cols


def scene_dataset(n: int, start: int = 0):
    import datasets
    feats = datasets.Features({"image": datasets.Image(decode=False), "question": datasets.Value("string"),
                               "answer": datasets.Value("string"), "target": datasets.Value("int64")})
    return datasets.Dataset.from_dict(scene_rows(n, start), features=feats)


@pytest.fixture
def tmp_out(tmp_path):
    return tmp_path / "run"
