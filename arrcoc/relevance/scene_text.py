"""Per-region evidence from the text read in an image (OCR lines, ``arrcoc.backbones.scene_text``).

Two question channels come from it (``config.CHANNELS``):

scene_text   how much text each region holds: log(1 + c_i), c_i the characters read there, each line's
             characters spread over its box in reading order and split between regions by the
             area they fall in, weighted by the recogniser's confidence. Observed for questions that
             ask to read (weighted by how strongly they ask), where the image has any text. It is a
             second, stronger look than ``text_pixels`` (stroke density), which also fires on
             foliage and gravel: a line the recogniser can read is text.
text_match   the question names what is written in the region: the best match of a content word of
             the question with a word read there (1 for the same word, a string similarity for a
             near miss of 4+ letters such as an OCR slip, numbers only exactly), times the share of
             that word inside the region, times the word's share of its line's characters: a
             line that is mostly the word is a label naming the thing it is on ("STOP" on the stop
             sign, "EXIT 42"), a word in running text is a mention ("the coins" in a paragraph about
             coins is not the coins). "What does the stop sign say?" finds the sign that reads STOP.
             Observed when some region matches; a question that matches nothing gives no evidence.

Both are evidence with finite precision in the relevance posterior, never an override: a region that
reads "stop" in an unrelated poster still has to win against the other channels. Text the reader
misses (handwriting, tiny print) simply adds nothing. Words are matched as written: there is no
translation or synonym matching ("exit" does not find "way out").
"""
from __future__ import annotations

import difflib
import math
import re
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

__all__ = ["SceneText", "word_spans", "word_similarity", "region_scene_text", "question_words"]

_TOKEN = re.compile(r"[a-z]+|[0-9]+")
_MIN_FUZZY = 4       # words shorter than this match exactly only ("on" vs "of" is no OCR slip)
_FUZZY_FLOOR = 0.8   # below this string similarity two words are different words


class SceneText(NamedTuple):
    """Per-region text evidence of a batch (``region_scene_text``)."""

    chars: Tensor     # (B, R) confidence-weighted characters read in each region
    match: Tensor     # (B, R) in [0, 1]: best question-word match in the region (0 without a question)
    has_text: Tensor  # (B,) bool: the reader found any text in the image


def _norm(word: str) -> str:
    w = word.lower()
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w  # "notes" ~ "note"


def question_words(content: str) -> list[str]:
    """Content words of a question (``QuestionCues.content``) as match keys, normalised."""
    if not isinstance(content, str):
        raise TypeError(f"content must be a str, got {type(content).__name__}")
    text = re.sub(r"'s\b|'", " ", content.lower())  # "cat's" -> "cat": a possessive is no word of its own
    return [_norm(w) for w in _TOKEN.findall(text) if len(w) > 1 or w.isdigit()]


def word_similarity(a: str, b: str) -> float:
    """1 for the same (normalised) word; a string similarity in [0.8, 1) for a near miss of two words of
    4+ letters; else 0. Numbers match only exactly."""
    for name, v in (("a", a), ("b", b)):
        if not isinstance(v, str):
            raise TypeError(f"{name} must be a str (a word), got {type(v).__name__}")
    a, b = _norm(a), _norm(b)
    if a == b:
        return 1.0
    if a.isdigit() or b.isdigit() or min(len(a), len(b)) < _MIN_FUZZY:
        return 0.0
    r = difflib.SequenceMatcher(None, a, b).ratio()
    return r if r >= _FUZZY_FLOOR else 0.0


def word_spans(text: str, box) -> list[tuple[str, tuple[float, float, float, float]]]:
    """The words of a line with their own boxes: the line's box cut along its long side in proportion
    to character positions (a horizontal line is cut in x, a vertical one in y)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    x0, y0, x1, y1 = _check_box(box)
    n = max(len(text), 1)
    horizontal = (x1 - x0) >= (y1 - y0)
    out = []
    for m in _TOKEN.finditer(text.lower()):
        if len(m.group()) < 2 and not m.group().isdigit():
            continue  # a stray letter ("s_like", "x") is no word to match or count
        a, b = m.start() / n, m.end() / n
        if horizontal:
            out.append((m.group(), (x0 + a * (x1 - x0), y0, x0 + b * (x1 - x0), y1)))
        else:
            out.append((m.group(), (x0, y0 + a * (y1 - y0), x1, y0 + b * (y1 - y0))))
    return out


def _check_box(box, name: str = "box") -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be four numbers (x0, y0, x1, y1), got {box!r}") from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[2] < vals[0] or vals[3] < vals[1]:
        raise ValueError(f"{name} must be four finite numbers (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0, got {box!r}")
    return vals


def _overlap_share(box, regions: Tensor) -> Tensor:
    """Share of box's area inside each region box (R, 4) -> (R,)."""
    x0, y0, x1, y1 = box
    area = max((x1 - x0) * (y1 - y0), 1e-9)
    w = (regions[:, 2].clamp(max=x1) - regions[:, 0].clamp(min=x0)).clamp_min(0)  # (R,)
    h = (regions[:, 3].clamp(max=y1) - regions[:, 1].clamp(min=y0)).clamp_min(0)  # (R,)
    return w * h / area


def region_scene_text(lines: Sequence[Sequence], region_boxes: Tensor,
                      words: Sequence[Sequence[str]] | None = None) -> SceneText:
    """lines: per image, its ``TextLine``s (box, text, confidence) in pixels of the image the regions
    tile; region_boxes (B, R, 4) (x0, y0, x1, y1) pixels; words: per image, the question's match keys
    (``question_words``; None or an empty list: no match channel) -> SceneText."""
    if not isinstance(region_boxes, Tensor) or region_boxes.dim() != 3 or region_boxes.shape[-1] != 4:
        raise ValueError(f"region_boxes must be a (B, R, 4) tensor, got {getattr(region_boxes, 'shape', region_boxes)}")
    B, R, _ = region_boxes.shape
    if not isinstance(lines, (list, tuple)) or not all(isinstance(lb, (list, tuple)) for lb in lines):
        raise TypeError("lines must be a list (one per image) of lists of TextLine")
    if not bool(torch.isfinite(region_boxes).all()):
        raise ValueError("region_boxes contains NaN or inf")
    if len(lines) != B:
        raise ValueError(f"lines must hold one list per image ({B}), got {len(lines)}")
    if words is not None and len(words) != B:
        raise ValueError(f"words must hold one list per image ({B}), got {len(words)}")
    boxes = region_boxes.detach().double().cpu()
    chars = torch.zeros(B, R, dtype=torch.float64)
    match = torch.zeros(B, R, dtype=torch.float64)
    for b in range(B):
        keys = list(words[b]) if words is not None else []
        if not all(isinstance(k, str) for k in keys):
            raise TypeError(f"words[{b}] must be a list of str (question_words), got {words[b]!r}")
        for line in lines[b]:
            if not isinstance(line, (tuple, list)) or len(line) != 3:
                raise TypeError(f"lines[{b}] must hold (box, text, confidence) triples (TextLine), got {line!r}")
            box, text, conf = line
            if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0.0 <= float(conf) <= 1.0:
                raise ValueError(f"lines[{b}] has a confidence outside [0, 1]: {conf!r}")
            conf = float(conf)
            spans = word_spans(text, _check_box(box, f"lines[{b}] box"))
            line_chars = max(sum(len(w) for w, _ in spans), 1)
            for word, wbox in spans:
                share = _overlap_share(wbox, boxes[b])  # (R,)
                chars[b] += conf * len(word) * share
                if keys:
                    m = max(word_similarity(word, k) for k in keys) * (len(word) / line_chars)
                    if m > 0:
                        match[b] = torch.maximum(match[b], m * share)
    has_text = torch.tensor([len(lb) > 0 for lb in lines], dtype=torch.bool)
    dev, dt = region_boxes.device, region_boxes.dtype if region_boxes.is_floating_point() else torch.float32
    return SceneText(chars.to(dev, dt), match.to(dev, dt), has_text.to(dev))
