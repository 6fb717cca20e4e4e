"""Question cues: reading, colours, position, content words."""
import math

import pytest

from arrcoc.relevance.question import parse_question


@pytest.mark.parametrize("q, reading", [
    ("What does the blue sign say?", 1.0), ("Read the first line", 1.0), ("What is written on the box?", 1.0),
    ("How much does the coffee cost?", 1.0), ("What time does the clock show?", 1.0),
    ("What colour is the sign?", 0.5), ("Is the cat awake?", 0.0),
])
def test_reading(q, reading):
    assert parse_question(q).reading == reading


def test_colours_are_properties_not_alternatives():
    assert parse_question("What does the blue sign say?").colours == ("blue",)
    assert parse_question("Is the gray car parked next to a Red truck?").colours == ("grey", "red")
    assert parse_question("Are the coins gold or silver?").colours == ()
    assert parse_question("What colour is the house?").colours == ()


@pytest.mark.parametrize("q, xy", [
    ("What is in the top left corner?", (0.125, 0.125)), ("What is at the bottom right?", (0.875, 0.875)),
    ("What is in the centre?", (0.5, 0.5)), ("What does the text at the bottom say?", (math.nan, 0.875)),
    ("Who stands on the left?", (0.125, math.nan)), ("What is the cat doing?", (math.nan, math.nan)),
])
def test_spatial(q, xy):
    got = parse_question(q).spatial
    for g, e in zip(got, xy):
        assert (math.isnan(g) and math.isnan(e)) or g == e
    assert parse_question(q).has_spatial == (not all(math.isnan(v) for v in xy))


def test_content_words():
    assert parse_question("What does the blue sign say?").content == "blue sign"
    assert parse_question("Is the man with the camera wearing a coat?").content == "man camera wearing coat"
    assert parse_question("What is in the top left corner?").content == ""


def test_bad_questions():
    with pytest.raises(ValueError, match="empty"):
        parse_question("   ")
    with pytest.raises(TypeError, match="question"):
        parse_question(None)
