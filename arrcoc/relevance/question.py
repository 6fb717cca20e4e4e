"""What a question asks for, read off its words (no model): the cues of the zero-shot query channels.

``parse_question`` turns a question into ``QuestionCues``:

reading   the question asks to read ("what does the sign say", "read", "written", "text", numbers,
          prices, dates, times): text-dense regions become evidence (``scorers.text_density``).
colours   colour names it uses as properties ("the blue sign", "a red car"): regions whose pixels
          have that colour become evidence (``scorers.colour_match``). "What colour is the car?"
          names no colour and gives none.
spatial   a position phrase ("at the bottom", "top left", "in the centre", "on the right"): a prior
          over region positions, as a target point in [0, 1]^2 (x right, y down) per axis that the
          phrase fixes (NaN for an axis it leaves free).
content   the content words (stop words, question words, reading verbs and position phrases
          removed): what the question is *about*, embedded by the concept channel (ConSE).

Where it fails: the lexicons are English and small; negation ("not the red one"), comparisons
("the bigger of the two") and relative positions ("left of the car") are not understood (a relative
phrase is read as absolute); colour words that are not properties ("red wine", "Blue Jays") count as
colours (colours offered as alternatives, "gold or silver", do not). Every cue only adds evidence with a finite precision, so a wrong cue shifts the posterior,
it never overrides the other channels.
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple, Sequence

__all__ = ["QuestionCues", "parse_question", "COLOURS", "READING_WORDS", "STOP_WORDS"]

# Colour names -> (hue in degrees, minimum saturation, minimum value, maximum value). Achromatic
# colours have hue None and are matched on saturation / value only (scorers.colour_match).
COLOURS: dict[str, tuple[float | None, float, float, float]] = {
    "red": (0.0, 0.45, 0.30, 1.0), "orange": (30.0, 0.45, 0.45, 1.0), "yellow": (57.0, 0.40, 0.50, 1.0),
    "green": (120.0, 0.30, 0.20, 1.0), "cyan": (185.0, 0.30, 0.30, 1.0), "blue": (225.0, 0.55, 0.20, 1.0),
    "purple": (280.0, 0.30, 0.20, 1.0), "pink": (330.0, 0.25, 0.50, 1.0), "brown": (25.0, 0.35, 0.15, 0.60),
    "white": (None, 0.0, 0.85, 1.0), "black": (None, 0.0, 0.0, 0.18), "grey": (None, 0.0, 0.25, 0.80),
}
_COLOUR_ALIASES = {"gray": "grey", "violet": "purple", "golden": "yellow", "gold": "yellow",
                   "crimson": "red", "navy": "blue", "teal": "cyan", "turquoise": "cyan"}

READING_WORDS = frozenset({
    "say", "says", "said", "read", "reads", "written", "write", "writing", "text", "word", "words",
    "letter", "letters", "spell", "spelled", "title", "label", "labelled", "labeled", "caption",
    "number", "numbers", "digit", "digits", "price", "prices", "cost", "costs", "date", "dates",
    "time", "year", "name", "named", "sign", "signs", "slogan", "headline", "printed", "print",
    "speed", "limit", "code", "phone", "address", "menu", "page", "line",
})
# Words that make the question a reading question on their own (the rest need a wh-word context).
_STRONG_READING = frozenset({"say", "says", "read", "reads", "written", "text", "word", "words",
                             "letters", "spell", "spelled", "printed", "digits", "headline", "slogan"})

STOP_WORDS = frozenset("""
a an the this that these those there here it its of in on at to for from by with about into onto over
under above below near is are was were be been being do does did doing has have had can could would
should will shall may might must what which who whom whose where when why how many much some any
and or but not no yes please tell me you your i my we our they their them he she his her him show
shown see seen visible image picture photo photograph scene region part kind type sort one ones
colour color colours colors look looks like
""".split())

_SPATIAL = [  # (pattern, x, y); checked in order, corners first; NaN leaves that axis free
    (r"\b(top|upper)[ -](left)\b|\b(left)[ -](top|upper)\b", 0.125, 0.125),
    (r"\b(top|upper)[ -](right)\b|\b(right)[ -](top|upper)\b", 0.875, 0.125),
    (r"\b(bottom|lower)[ -](left)\b|\b(left)[ -](bottom|lower)\b", 0.125, 0.875),
    (r"\b(bottom|lower)[ -](right)\b|\b(right)[ -](bottom|lower)\b", 0.875, 0.875),
    (r"\b(centre|center|middle)\b", 0.5, 0.5),
    (r"\b(top|upper|above|sky)\b", math.nan, 0.125),
    (r"\b(bottom|lower|below|foreground|ground)\b", math.nan, 0.875),
    (r"\b(left|leftmost)\b", 0.125, math.nan),
    (r"\b(right|rightmost)\b", 0.875, math.nan),
]
_SPATIAL_WORDS = frozenset({"top", "upper", "bottom", "lower", "left", "right", "leftmost", "rightmost",
                            "centre", "center", "middle", "corner", "side", "edge", "foreground",
                            "background", "above", "below", "ground", "sky"})
_NUMBERISH = re.compile(r"\b(how much|what time|which year|what year|what number|how fast|km/h|mph|\$)")


class QuestionCues(NamedTuple):
    """Cues of one question (plain Python values; ``RelevanceAllocator`` turns a batch into tensors)."""

    reading: float                   # 1.0 reading question, 0.5 weakly (a reading noun only), 0.0 not
    colours: tuple[str, ...]         # canonical colour names used as properties
    spatial: tuple[float, float]     # target (x, y) in [0, 1]; NaN for a free axis; (nan, nan) = none
    content: str                     # content words for the concept channel ("" = nothing to embed)

    @property
    def has_spatial(self) -> bool:
        return not (math.isnan(self.spatial[0]) and math.isnan(self.spatial[1]))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def parse_question(question: str) -> QuestionCues:
    """Cues of a question; see the module docstring. Raises on a non-string or an empty question."""
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {type(question).__name__}")
    if not question.strip():
        raise ValueError("question must not be empty (pass no question for a question-free allocation)")
    low = question.lower()
    words = _words(low)
    strong = any(w in _STRONG_READING for w in words) or bool(_NUMBERISH.search(low))
    weak = any(w in READING_WORDS for w in words)
    reading = 1.0 if strong else (0.5 if weak else 0.0)
    colours = []
    alternatives = set()  # "gold or silver", "red or blue": the colour is asked, not given
    for i in range(len(words) - 2):
        pair = (_COLOUR_ALIASES.get(words[i], words[i]), _COLOUR_ALIASES.get(words[i + 2], words[i + 2]))
        if words[i + 1] == "or" and any(c in COLOURS or c in ("silver", "bronze") for c in pair):
            alternatives.update(pair)
    for w in words:
        c = _COLOUR_ALIASES.get(w, w)
        if c in COLOURS and c not in colours and c not in alternatives:
            colours.append(c)
    x = y = math.nan
    for pattern, px, py in _SPATIAL:
        if re.search(pattern, low):
            x = px if math.isnan(x) else x
            y = py if math.isnan(y) else y
            if not (math.isnan(x) or math.isnan(y)):
                break
    content = [w for w in words if w not in STOP_WORDS and w not in _SPATIAL_WORDS
               and w not in _STRONG_READING and not w.isdigit()]
    return QuestionCues(reading, tuple(colours), (x, y), " ".join(content))


def parse_questions(questions: Sequence[str]) -> list[QuestionCues]:
    """``parse_question`` over a batch (a list or tuple of strings)."""
    if isinstance(questions, str) or not isinstance(questions, (list, tuple)):
        raise TypeError(f"questions must be a list or tuple of strings, got {type(questions).__name__}")
    for i, q in enumerate(questions):
        if not isinstance(q, str) or not q.strip():
            raise (TypeError if not isinstance(q, str) else ValueError)(
                f"questions[{i}] must be a non-empty string, got {q!r}")
    return [parse_question(q) for q in questions]


__all__.append("parse_questions")
