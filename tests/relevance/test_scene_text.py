"""Scene-text evidence (relevance.scene_text) and its two channels in the allocator: exact numbers."""
import math

import pytest
import torch

from arrcoc.relevance import RelevanceAllocator, RelevanceConfig
from arrcoc.relevance.config import CHANNELS
from arrcoc.relevance.cues import QuestionBatch
from arrcoc.relevance.question import parse_questions
from arrcoc.relevance.scene_text import (SceneText, question_words, region_scene_text, word_similarity,
                                         word_spans)

# a 2 x 2 grid over a 200 x 100 image: regions 0 | 1 on top, 2 | 3 below
BOXES = torch.tensor([[[0, 0, 100, 50], [100, 0, 200, 50], [0, 50, 100, 100], [100, 50, 200, 100]]],
                     dtype=torch.float32)


def test_word_similarity_exact_fuzzy_numbers_and_short_words():
    assert word_similarity("STOP", "stop") == 1.0
    assert word_similarity("notes", "note") == 1.0  # plural folded
    assert word_similarity("airport", "airpart") == pytest.approx(6 / 7)  # an OCR slip of one letter
    assert word_similarity("airport", "harbour") == 0.0
    assert word_similarity("42", "42") == 1.0 and word_similarity("42", "43") == 0.0
    assert word_similarity("cat", "car") == 0.0  # 3 letters: exact only


def test_question_words_drop_possessives_and_stray_letters():
    assert question_words("cat's eyes") == ["cat", "eye"]
    assert question_words("stop sign") == ["stop", "sign"]
    assert question_words("exit 42") == ["exit", "42"]
    with pytest.raises(TypeError, match="content must be a str"):
        question_words(None)


def test_word_spans_cut_the_line_box_by_character_position():
    spans = word_spans("EXIT 42", (0.0, 0.0, 70.0, 10.0))  # 7 characters over 70 px
    assert spans == [("exit", (0.0, 0.0, 40.0, 10.0)), ("42", (50.0, 0.0, 70.0, 10.0))]
    vertical = word_spans("ab cd", (0.0, 0.0, 10.0, 50.0))
    assert vertical == [("ab", (0.0, 0.0, 10.0, 20.0)), ("cd", (0.0, 30.0, 10.0, 50.0))]
    assert word_spans("x s_like", (0.0, 0.0, 80.0, 10.0)) == [("like", (40.0, 0.0, 80.0, 10.0))]


def test_region_scene_text_splits_characters_and_matches_labels_not_mentions():
    lines = [[((50.0, 10.0, 150.0, 30.0), "STOP", 1.0),  # a label across regions 0 and 1, half each
              ((0.0, 60.0, 100.0, 80.0), "the stop here", 0.5)]]  # running text in region 2
    st = region_scene_text(lines, BOXES, [question_words("stop sign")])
    # "STOP": 4 characters, its box half in region 0 and half in 1; "the stop here" (3 words, 11
    # letters) wholly in region 2 at confidence 0.5
    assert torch.allclose(st.chars, torch.tensor([[2.0, 2.0, 5.5, 0.0]]))
    # the match: similarity 1 x share of the word in the region x the word's share of its line
    stop_in_text = 4 / 11 * 1.0  # the word "stop" sits wholly inside region 2
    assert torch.allclose(st.match, torch.tensor([[0.5, 0.5, stop_in_text, 0.0]]))
    assert st.has_text.tolist() == [True]
    none = region_scene_text([[]], BOXES, [question_words("stop")])
    assert none.chars.abs().sum() == 0 and none.match.abs().sum() == 0 and none.has_text.tolist() == [False]
    no_words = region_scene_text(lines, BOXES, None)
    assert no_words.match.abs().sum() == 0 and torch.equal(no_words.chars, st.chars)


@pytest.mark.parametrize("kwargs, match", [
    (dict(region_boxes=torch.zeros(1, 4)), "region_boxes must be a"),
    (dict(lines=[[], []]), "one list per image"),
    (dict(words=[[], []]), "one list per image"),
    (dict(lines=[[((0.0, 0.0, 10.0, 10.0), "a", 1.5)]]), "confidence outside"),
])
def test_region_scene_text_bad_inputs(kwargs, match):
    args = dict(lines=[[]], region_boxes=BOXES, words=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        region_scene_text(**args)


# ---------------------------------------------------------------- the allocator's channels
def _allocator():
    torch.manual_seed(0)
    cfg = RelevanceConfig(grid=2, levels=(0, 64, 100, 256, 400), budget=464, global_tokens=0)
    return RelevanceAllocator(cfg, feature_dim=8).eval()


def _question(text):
    return QuestionBatch.from_cues(parse_questions([text]))


def _posterior(alloc, question, scene_text):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(1, 4, 8, generator=g)
    with torch.no_grad():
        return alloc(feats, question=question, scene_text=scene_text, deterministic=True)


def test_text_match_raises_the_named_region_by_its_evidence():
    alloc = _allocator()
    text = "Is the stop marker round?"  # not a reading question: the amount of text is not observed
    q = _question(text)
    assert parse_questions([text])[0].reading == 0.0
    lines = [[((100.0, 0.0, 200.0, 50.0), "STOP", 1.0)]]  # wholly in region 1
    st = region_scene_text(lines, BOXES, [question_words(parse_questions([text])[0].content)])
    assert st.match.tolist() == [[0.0, 1.0, 0.0, 0.0]]
    base = _posterior(alloc, q, None)
    out = _posterior(alloc, q, st)
    k = CHANNELS.index("text_match")
    obs_k = (st.match - st.match.mean()) / alloc.config.cue_scale["text_match"]  # centred, fixed scale
    assert torch.allclose(out.scores["text_match"], st.match)
    # one more Gaussian observation per region: the region's evidence precision grows by the channel's
    # precision times slope^2, and the named region's mean moves up, the others' down
    cal = alloc.calibration(obs_k)
    gain = out.posterior.evidence_precision - base.posterior.evidence_precision
    assert torch.allclose(gain, (cal["precision"][k] * cal["slope"][k] ** 2).expand(1, 4), atol=1e-5)
    delta = out.relevance_mean - base.relevance_mean
    assert delta[0, 1] > 1.0 and (delta[0, [0, 2, 3]] < 0).all()
    assert int(out.allocation[0].argmax()) == 1
    # reading not asked: the amount of text is no evidence
    assert "scene_text" in out.scores and float(out.scores["scene_text"].abs().sum()) == 0.0


def test_scene_text_is_read_only_for_reading_questions_and_absent_without_a_match():
    alloc = _allocator()
    lines = [[((0.0, 50.0, 100.0, 100.0), "Speed limit 50 km/h no parking", 1.0)]]  # region 2
    read = _question("What does the line say?")
    st = region_scene_text(lines, BOXES, [question_words(parse_questions(["What does the line say?"])[0].content)])
    assert float(st.match.sum()) == 0.0  # "line" is not written there
    base, out = _posterior(alloc, read, None), _posterior(alloc, read, st)
    assert torch.allclose(out.scores["scene_text"], torch.log1p(st.chars))  # reading = 1
    assert int(out.relevance_mean[0].argmax()) == 2 and out.relevance_mean[0, 2] > base.relevance_mean[0, 2]
    # not a reading question and no word matches: neither channel is observed, nothing changes
    plain = _question("Is the cat awake?")
    st_plain = region_scene_text(lines, BOXES, [question_words("cat awake")])
    a, b = _posterior(alloc, plain, None), _posterior(alloc, plain, st_plain)
    assert torch.equal(a.relevance_mean, b.relevance_mean) and torch.equal(a.relevance_var, b.relevance_var)


def test_allocator_checks_scene_text():
    alloc = _allocator()
    q = _question("What does it say?")
    feats = torch.zeros(1, 4, 8)
    good = region_scene_text([[]], BOXES, None)
    with pytest.raises(TypeError, match="scene_text must be a SceneText"):
        alloc(feats, question=q, scene_text=(good.chars, good.match, good.has_text)[:2])
    with pytest.raises(ValueError, match=r"scene_text.chars must have shape \(1, 4\)"):
        alloc(feats, question=q, scene_text=good._replace(chars=torch.zeros(1, 3)))
    with pytest.raises(TypeError, match="has_text bool"):
        alloc(feats, question=q, scene_text=good._replace(has_text=torch.ones(1)))
    with pytest.raises(ValueError, match="scene_text.match contains NaN"):
        alloc(feats, question=q, scene_text=good._replace(match=torch.full((1, 4), math.nan)))
    assert isinstance(good, SceneText)
