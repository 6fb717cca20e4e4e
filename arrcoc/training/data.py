"""VQA data through ``datasets``: loading, the answer vocabulary, and a collate that skips bad rows.

``load_vqa_dataset`` returns a ``datasets.Dataset`` with the canonical columns ``image``,
``question``, ``answer`` (and ``target`` when a target column is named). Images are kept undecoded
(``Image(decode=False)``: bytes or a path), so reading a row never fails; ``VQACollator`` decodes
them and turns rows into model inputs with the encoder's image processor. A bad row (missing or
unreadable image, empty question, answer outside the vocabulary, malformed target) is counted by
reason in a ``DataReport`` and left out of the batch: a long run never stops on one.

Metric denominators: training loss and accuracy are over the rows used (read minus skipped);
evaluation reports ``accuracy`` over the rows used and ``accuracy_all_rows`` over every row read
(skipped rows counted as wrong), and the report says how many of each.
"""
from __future__ import annotations

import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from arrcoc._checks import check_int

__all__ = ["load_vqa_dataset", "build_answer_vocab", "normalize_answer", "DataReport", "VQACollator",
           "SKIP_REASONS"]

SKIP_REASONS = ("missing_image", "unreadable_image", "empty_question", "unknown_answer", "bad_target")
_FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".arrow": "arrow"}


def _datasets():
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - the train extra installs it
        raise ImportError("arrcoc.training's data loading needs the `datasets` package: "
                          "pip install 'arrcoc[train]'") from e
    return datasets


def normalize_answer(answer) -> str | None:
    """An answer as the vocabulary stores it: stripped, lower-cased, inner whitespace single;
    None for a missing or empty answer. Numbers (ints) are written as digits."""
    if answer is None or isinstance(answer, bool):
        return None
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(int(answer)) if float(answer).is_integer() else str(answer)
    if not isinstance(answer, str):
        return None
    a = " ".join(answer.split()).lower()
    return a or None


def _check_column(value, name: str, optional: bool = False):
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty column name, got {value!r}")
    return value


def _load_raw(name_or_path: str, split):
    ds = _datasets()
    p = Path(name_or_path)
    if p.is_dir():
        if (p / "dataset_info.json").is_file() or (p / "state.json").is_file() or (p / "dataset_dict.json").is_file():
            return ds.load_from_disk(str(p)), None
        return ds.load_dataset(str(p)), None
    if p.is_file():
        builder = _FILE_BUILDERS.get(p.suffix.lower())
        if builder is None:
            raise ValueError(f"name_or_path {name_or_path!r} is a file of unknown type; expected one of "
                             f"{sorted(_FILE_BUILDERS)} (or a folder, or a dataset name)")
        return ds.load_dataset(builder, data_files=str(p)), p.parent
    if name_or_path.startswith(("/", ".", "~")) or p.suffix.lower() in _FILE_BUILDERS:
        raise FileNotFoundError(f"name_or_path {name_or_path!r}: no such file or folder")
    try:
        return ds.load_dataset(name_or_path), None
    except Exception as e:  # noqa: BLE001 - offline / unknown names raise many types; one clear error
        raise FileNotFoundError(f"name_or_path {name_or_path!r} is neither a local file/folder nor a dataset "
                                f"that load_dataset could load: {e}") from e


def _pick_split(data, split):
    ds = _datasets()
    if isinstance(data, (ds.DatasetDict, dict)):
        names = list(data.keys())
        if split is None:
            if len(names) == 1:
                return data[names[0]]
            if "train" in names:
                return data["train"]
            raise ValueError(f"the data set has splits {names}; pass split= to choose one")
        if split not in names:
            raise ValueError(f"split {split!r} not found; the data set has splits {names}")
        return data[split]
    if split is not None and split not in ("train", str(getattr(data, "split", None))):
        raise ValueError(f"split {split!r} not found; the data set is a single split")
    return data


def load_vqa_dataset(name_or_path, split: str | None = None, image_column: str = "image",
                     question_column: str = "question", answer_column: str = "answer",
                     target_column: str | None = None):
    """Load a VQA data set through ``datasets``: a folder saved with ``save_to_disk``
    (``load_from_disk``), an image folder with a metadata.jsonl/csv (``imagefolder``) or any folder
    ``load_dataset`` reads, a .parquet / .json / .jsonl / .csv / .arrow file, or a dataset name.

    Returns a ``datasets.Dataset`` with columns ``image`` (undecoded: bytes/path dicts, or path
    strings resolved against the data file's folder), ``question``, ``answer`` and, with
    ``target_column``, ``target`` (a region index, or an (x0, y0, x1, y1) box in [0, 1] image
    coordinates, or None). split: None = the only split, else "train".
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise TypeError(f"name_or_path must be a path or a dataset name, got {name_or_path!r}")
    if split is not None and (not isinstance(split, str) or not split):
        raise TypeError(f"split must be a split name or None, got {split!r}")
    cols = {"image": _check_column(image_column, "image_column"),
            "question": _check_column(question_column, "question_column"),
            "answer": _check_column(answer_column, "answer_column")}
    target_column = _check_column(target_column, "target_column", optional=True)
    if target_column is not None:
        cols["target"] = target_column
    data, base = _load_raw(os.fspath(name_or_path), split)
    data = _pick_split(data, split)
    missing = {k: v for k, v in cols.items() if v not in data.column_names}
    if missing:
        which = ", ".join(f"{k}_column={v!r}" for k, v in missing.items())
        raise ValueError(f"{which} not in the data set's columns {data.column_names}")
    data = data.select_columns(list(dict.fromkeys(cols.values())))
    for canon, col in cols.items():
        if col != canon and canon not in cols.values():
            data = data.rename_column(col, canon)
        elif col != canon:  # e.g. image_column="question": copy instead of a name clash
            data = data.add_column(canon, data[col])
    data = data.select_columns(list(cols))
    ds = _datasets()
    feat = data.features["image"]
    if isinstance(feat, ds.Image):
        data = data.cast_column("image", ds.Image(decode=False))
    elif base is not None and getattr(feat, "dtype", None) in ("string", "large_string"):
        def absolute(batch):
            return {"image": [p if (p is None or os.path.isabs(p)) else str(base / p) for p in batch["image"]]}
        data = data.map(absolute, batched=True, desc=None)
    return data


def build_answer_vocab(answers, max_classes: int | None = None) -> list[str]:
    """The answer vocabulary: normalised answers by descending frequency (ties alphabetical), at most
    ``max_classes``. answers: a sequence of answers or a data set with an ``answer`` column."""
    if hasattr(answers, "column_names"):
        if "answer" not in answers.column_names:
            raise ValueError(f"answers has no 'answer' column (columns {answers.column_names})")
        answers = answers["answer"]
    if isinstance(answers, (str, bytes)) or not hasattr(answers, "__iter__"):
        raise TypeError(f"answers must be a sequence of answers or a data set, got {type(answers).__name__}")
    if max_classes is not None:
        max_classes = check_int(max_classes, "max_classes", minimum=2)
    counts = Counter(a for a in (normalize_answer(x) for x in answers) if a is not None)
    vocab = [a for a, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    if len(vocab) < 2:
        raise ValueError(f"answers must hold at least 2 distinct non-empty answers, got {vocab}")
    return vocab[:max_classes] if max_classes is not None else vocab


@dataclass
class DataReport:
    """Rows read, used and skipped (by reason: ``SKIP_REASONS``). Counts are per row read: in a
    multi-epoch run a bad row is counted once per epoch. ``str()`` says what the metrics are over."""

    rows: int = 0
    skipped: dict = field(default_factory=lambda: {r: 0 for r in SKIP_REASONS})
    examples: dict = field(default_factory=dict)  # reason -> one example message (the first seen)

    def __post_init__(self) -> None:
        self.rows = check_int(self.rows, "rows", minimum=0)
        if not isinstance(self.skipped, dict) or set(self.skipped) - set(SKIP_REASONS):
            raise ValueError(f"skipped must be a dict reason -> count with reasons among {list(SKIP_REASONS)}, "
                             f"got {self.skipped!r}")
        self.skipped = {r: check_int(self.skipped.get(r, 0), f"skipped[{r!r}]", minimum=0) for r in SKIP_REASONS}
        if sum(self.skipped.values()) > self.rows:
            raise ValueError(f"skipped rows ({sum(self.skipped.values())}) exceed the rows read ({self.rows})")
        if not isinstance(self.examples, dict):
            raise TypeError(f"examples must be a dict reason -> message, got {type(self.examples).__name__}")

    @property
    def used(self) -> int:
        return self.rows - sum(self.skipped.values())

    def add_status(self, status: Tensor) -> None:
        """Add a batch's per-row status codes (0 = used, k = SKIP_REASONS[k - 1])."""
        counts = torch.bincount(status.long().flatten().cpu(), minlength=len(SKIP_REASONS) + 1)
        self.add_counts(counts)

    def add_counts(self, counts: Tensor) -> None:
        """Add a (1 + len(SKIP_REASONS),) count vector (rows with each status)."""
        counts = [int(c) for c in counts.tolist()]
        self.rows += sum(counts)
        for r, c in zip(SKIP_REASONS, counts[1:]):
            self.skipped[r] += c

    def as_dict(self) -> dict:
        return {"rows": self.rows, "used": self.used, "skipped": dict(self.skipped)}

    def __str__(self) -> str:
        bad = sum(self.skipped.values())
        parts = ", ".join(f"{r.replace('_', ' ')} {c}" for r, c in self.skipped.items())
        text = (f"{self.rows} rows read, {self.used} used, {bad} skipped ({parts}); "
                f"metrics are over the {self.used} rows used")
        for r, msg in self.examples.items():
            text += f"\n  e.g. {r.replace('_', ' ')}: {msg}"
        return text


class VQACollator:
    """Rows (dicts with image, question, answer[, target]) -> a model batch; bad rows are skipped.

    processor: the encoder's ``ARRCOCImageProcessor``; answers: the answer vocabulary. Returns
    {"pixel_values" (n, 3, S, S), "queries" (n strings), "labels" (n,) long, "target" (n, R) float
    (each row's target distribution over the regions, zeros where the row has none),
    "has_target" (n,) bool, "status" (rows,) long (0 used, k = SKIP_REASONS[k-1]), "index" (n,) long
    (the rows' ``__index__`` when present, else -1)}; n may be 0.
    Greyscale / RGBA / palette images are converted to RGB; the processor's size limits apply.
    """

    def __init__(self, processor, answers: Sequence[str]):
        if not hasattr(processor, "preprocess") or not hasattr(processor, "grid"):
            raise TypeError(f"processor must be an ARRCOCImageProcessor, got {type(processor).__name__}")
        if isinstance(answers, str) or not isinstance(answers, (list, tuple)) or len(answers) < 2:
            raise TypeError(f"answers must be a list of at least 2 answer strings, got {answers!r}")
        norm = [normalize_answer(a) for a in answers]
        if any(a is None for a in norm) or len(set(norm)) != len(norm):
            raise ValueError("answers must be distinct non-empty strings (after normalize_answer)")
        self.processor = processor
        self.answers = list(norm)
        self.answer_index = {a: i for i, a in enumerate(self.answers)}
        self.grid = int(processor.grid)
        self.messages: dict = {}  # reason -> first message seen (for DataReport.examples)

    def _note(self, reason: str, msg: str) -> int:
        self.messages.setdefault(reason, msg)
        return SKIP_REASONS.index(reason) + 1

    def _image(self, value):
        """(PIL RGB image, None) or (None, reason)."""
        from PIL import Image

        try:
            if value is None:
                return None, ("missing_image", "no image")
            if isinstance(value, Image.Image):
                im = value
            else:
                data, path = None, None
                if isinstance(value, dict):
                    data, path = value.get("bytes"), value.get("path")
                elif isinstance(value, (bytes, bytearray)):
                    data = value
                elif isinstance(value, (str, os.PathLike)):
                    path = os.fspath(value)
                else:
                    return None, ("unreadable_image", f"image of type {type(value).__name__}")
                if data is None:
                    if not path or not os.path.isfile(path):
                        return None, ("missing_image", f"no image bytes and no file at {path!r}")
                    with open(path, "rb") as f:
                        data = f.read()
                im = Image.open(io.BytesIO(data))
            w, h = im.size
            if min(w, h) < self.processor.min_size or w * h > self.processor.max_pixels:
                return None, ("unreadable_image", f"{w}x{h} image outside the processor's size limits")
            im.load()
            return (im if im.mode == "RGB" else im.convert("RGB")), None
        except Exception as e:  # noqa: BLE001 - any decoding failure is a bad row, never a crash
            return None, ("unreadable_image", f"{type(e).__name__}: {str(e)[:120]}")

    def _target(self, value):
        """(R,) distribution, None for no target, or the string 'bad'."""
        R, G = self.grid * self.grid, self.grid
        if value is None:
            return None
        if isinstance(value, (int,)) and not isinstance(value, bool):
            if 0 <= value < R:
                t = torch.zeros(R)
                t[value] = 1.0
                return t
            return "bad"
        if isinstance(value, (list, tuple)) and len(value) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            x0, y0, x1, y1 = (float(v) for v in value)
            if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
                return "bad"
            edges = torch.linspace(0, 1, G + 1)
            ox = (torch.minimum(edges[1:], torch.tensor(x1)) - torch.maximum(edges[:-1], torch.tensor(x0))).clamp_min(0)
            oy = (torch.minimum(edges[1:], torch.tensor(y1)) - torch.maximum(edges[:-1], torch.tensor(y0))).clamp_min(0)
            area = oy[:, None] * ox[None, :]  # (G, G), row-major like the region grid
            return (area / area.sum()).flatten()  # (R,)
        return "bad"

    def __call__(self, rows: list) -> dict:
        status, images, queries, labels, targets, has_t, index = [], [], [], [], [], [], []
        R = self.grid * self.grid
        for row in rows:
            im, why = self._image(row.get("image"))
            q = row.get("question")
            a = normalize_answer(row.get("answer"))
            t = self._target(row.get("target")) if "target" in row else None
            if why is not None:
                code = self._note(*why)
            elif not isinstance(q, str) or not q.strip():
                code = self._note("empty_question", f"question {q!r}")
            elif a is None or a not in self.answer_index:
                code = self._note("unknown_answer", f"answer {row.get('answer')!r} not in the {len(self.answers)}-answer vocabulary")
            elif isinstance(t, str):
                code = self._note("bad_target", f"target {row.get('target')!r} (expected a region index in [0, {R}) "
                                                "or an (x0, y0, x1, y1) box in [0, 1])")
            else:
                code = 0
            status.append(code)
            if code:
                continue
            images.append(im)
            queries.append(" ".join(q.split()))
            labels.append(self.answer_index[a])
            targets.append(torch.zeros(R) if t is None else t)
            has_t.append(t is not None)
            index.append(int(row.get("__index__", -1)))
        if images:
            pixel_values = self.processor(images)["pixel_values"]  # (n, 3, S, S)
        else:
            S = self.processor.size
            pixel_values = torch.zeros(0, 3, S, S)
        return {"pixel_values": pixel_values, "queries": queries,
                "labels": torch.tensor(labels, dtype=torch.long),
                "target": torch.stack(targets) if targets else torch.zeros(0, R),
                "has_target": torch.tensor(has_t, dtype=torch.bool),
                "status": torch.tensor(status, dtype=torch.long),
                "index": torch.tensor(index, dtype=torch.long)}
