"""ConSE's window look (arrcoc/relevance/concept.py: window_pairs, window_features, pool_windows) and
the allocator's ``concept_windows`` switch, on hand-built classifiers whose numbers are worked out here."""
import math

import pytest
import torch
import torch.nn.functional as F

from arrcoc.relevance import RelevanceAllocator, RelevanceConfig
from arrcoc.relevance.concept import ConceptScorer, pool_windows, window_features, window_pairs
from arrcoc.relevance.cues import QuestionBatch
from arrcoc.relevance.question import parse_questions


def test_window_pairs_lists_every_adjacent_pair_once():
    p = window_pairs(4)
    assert p.shape == (24, 2) and p.dtype == torch.long
    assert p[:3].tolist() == [[0, 1], [1, 2], [2, 3]] and p[11].tolist() == [14, 15]  # 1x2, row by row
    assert p[12:15].tolist() == [[0, 4], [1, 5], [2, 6]] and p[23].tolist() == [11, 15]  # 2x1
    assert len({tuple(x) for x in p.tolist()}) == 24
    assert all(abs(a // 4 - b // 4) + abs(a % 4 - b % 4) == 1 for a, b in p.tolist())  # grid neighbours
    counts = torch.bincount(p.reshape(-1), minlength=16).reshape(4, 4)
    assert counts[0, 0] == 2 and counts[0, 1] == 3 and counts[1, 1] == 4  # corner, edge, inside
    assert window_pairs(2).tolist() == [[0, 1], [2, 3], [0, 2], [1, 3]]
    assert window_pairs(1).shape == (0, 2)
    for bad in (0, -1, 2.0, True, "4"):
        with pytest.raises(ValueError, match="grid"):
            window_pairs(bad)


def test_window_feature_is_the_pooled_feature_of_the_window():
    """The glimpse's region features are a 16x16 map average-pooled to 4x4 (cells of 4x4 tokens): the
    mean of two regions' features is exactly the map's average over the 4x8 (or 8x4) window."""
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(2, 5, 16, 16, generator=g, dtype=torch.float64)  # (B, D, 16, 16)
    regions = F.adaptive_avg_pool2d(fmap, 4).flatten(2).transpose(1, 2)  # (B, R, D)
    win = window_features(regions, window_pairs(4))  # (B, W, D)
    assert win.shape == (2, 24, 5)
    torch.testing.assert_close(win[:, 0], fmap[:, :, 0:4, 0:8].mean((-1, -2)))  # regions 0 and 1
    torch.testing.assert_close(win[:, 11], fmap[:, :, 12:16, 8:16].mean((-1, -2)))  # 14 and 15
    torch.testing.assert_close(win[:, 12 + 6], fmap[:, :, 4:12, 8:12].mean((-1, -2)))  # 6 and 10


def test_window_class_log_probs_are_those_of_the_window_feature():
    """The ImageNet head is affine: the windows' class log probabilities from the mean of the two
    regions' logits equal the head on the window's mean feature."""
    g = torch.Generator().manual_seed(1)
    D, C = 6, 5
    scorer = ConceptScorer(torch.randn(C, D, generator=g, dtype=torch.float64), torch.randn(C, generator=g, dtype=torch.float64),
                           torch.randn(C, 3, generator=g, dtype=torch.float64))
    f = torch.randn(2, 16, D, generator=g, dtype=torch.float64)
    pairs = window_pairs(4)
    lp = scorer.class_log_probs(f, pairs)
    assert lp.shape == (2, 40, C)
    torch.testing.assert_close(lp[:, :16], scorer.class_log_probs(f))
    torch.testing.assert_close(lp[:, 16:], scorer.class_log_probs(window_features(f, pairs)))


def test_pool_windows_adds_the_gain_of_a_window_over_its_better_half():
    pairs = window_pairs(2)  # windows (0,1) (2,3) (0,2) (1,3)
    own = torch.tensor([[0.5, 0.2, 0.1, 0.0]])
    win = torch.tensor([[0.6, 0.05, 0.3, 0.1]])  # only (0,1) beats both its halves, by 0.1
    sd = torch.tensor([[1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0]])
    score, spread = pool_windows(torch.cat([own, win], 1), sd, pairs)
    torch.testing.assert_close(score, torch.tensor([[0.6, 0.3, 0.1, 0.0]]))  # 0.5 + 0.1, 0.2 + 0.1
    torch.testing.assert_close(spread, torch.tensor([[10.0, 10.0, 3.0, 4.0]]))  # the window's sd where it lent
    # a region in two winning windows takes the larger gain
    win2 = torch.tensor([[0.6, 0.05, 0.8, 0.1]])  # (0,2) beats 0.5 by 0.3
    score2, spread2 = pool_windows(torch.cat([own, win2], 1), sd, pairs)
    torch.testing.assert_close(score2, torch.tensor([[0.8, 0.3, 0.4, 0.0]]))
    torch.testing.assert_close(spread2, torch.tensor([[30.0, 10.0, 30.0, 4.0]]))
    # no window above its halves: the regions' own looks, unchanged
    flat = torch.cat([own, torch.full((1, 4), -1.0)], 1)
    score3, spread3 = pool_windows(flat, sd, pairs)
    assert torch.equal(score3, own) and torch.equal(spread3, sd[:, :4])


# A hand-built ImageNet head (D = 3 feature dims, C = 4 classes): class 0 fires on dim 0, class 1 on
# dim 1, class 2 (the class the question asks about) on dims 0 and 1 together, class 3 (background)
# on dim 2. Class c's name embedding is axis c of a 4-dim text space; the question's is axis 2.
_W = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [2.5, 2.5, 0.0], [0.0, 0.0, 5.0]], dtype=torch.float64)
_B = torch.tensor([0.0, 0.0, -1.0, 0.0], dtype=torch.float64)
_BETA = 5.0  # a mild soft max keeps the hand numbers apart
_A, _HALF_B, _DISTRACTOR = 5, 6, 15  # the object spans regions 5 and 6 (a 1x2 window); a look-alike at 15


def _scene() -> torch.Tensor:
    f = torch.zeros(1, 16, 3, dtype=torch.float64)
    f[0, :, 2] = 2.0  # background everywhere ...
    f[0, _A] = torch.tensor([2.0, 0.0, 0.0])  # ... the object's left half looks like class 0
    f[0, _HALF_B] = torch.tensor([0.0, 2.0, 0.0])  # its right half like class 1
    f[0, _DISTRACTOR] = torch.tensor([0.7, 0.7, 0.0])  # a region that looks a little like class 2
    return f


def _hand_score(feature) -> float:
    """ConSE's soft max by hand: (1/beta) log sum_c p_c exp(beta cos(e_c, q)) = log(1 + p_2 (e^beta - 1)) / beta."""
    logits = [sum(w * x for w, x in zip(row, feature)) + b for row, b in zip(_W.tolist(), _B.tolist())]
    z = [math.exp(v - max(logits)) for v in logits]
    p2 = z[2] / sum(z)
    return math.log1p(p2 * math.expm1(_BETA)) / _BETA


def _allocator(windows: bool) -> RelevanceAllocator:
    scorer = ConceptScorer(_W, _B, torch.eye(4, dtype=torch.float64), sharpness=_BETA)
    return RelevanceAllocator(RelevanceConfig(num_heads=2, head_dim=4, concept_windows=windows),
                              feature_dim=3, concept=scorer).double()


def _question():
    return QuestionBatch.from_cues(parse_questions(["Where is the thing?"]),
                                   torch.eye(4, dtype=torch.float64)[2][None], embed_dim=4, dtype=torch.float64)


def test_window_look_classifies_an_object_split_over_two_regions():
    f = _scene()
    m = _allocator(True)
    pairs = window_pairs(4)
    win = window_features(f, pairs)  # (1, 24, 3)
    k = pairs.tolist().index([_A, _HALF_B])
    # the classifier sees class 2 in the window's mean feature, in neither half
    looks = m.concept(torch.cat([f, win], 1), _question().concept_vector)
    assert looks.top_class[0, _A] == 0 and looks.top_class[0, _HALF_B] == 1 and looks.top_class[0, 16 + k] == 2
    # the regions' scores by hand: own look + the best window gain over its better half
    own = [_hand_score(f[0, r].tolist()) for r in range(16)]
    ws = [_hand_score(win[0, w].tolist()) for w in range(24)]
    want = []
    for r in range(16):
        gains = [max(0.0, ws[w] - max(own[a], own[b])) for w, (a, b) in enumerate(pairs.tolist()) if r in (a, b)]
        want.append(own[r] + max(gains))
    torch.testing.assert_close(looks.score[0], torch.tensor(own + ws, dtype=torch.float64))
    out = m(f, question=_question(), deterministic=True)
    got = out.scores["concept"][0]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
    # both halves are symmetric: each scores exactly the window, the max over {itself, its windows}
    assert math.isclose(float(got[_A]), ws[k], rel_tol=1e-12) and math.isclose(float(got[_HALF_B]), ws[k], rel_tol=1e-12)
    assert ws[k] > own[_DISTRACTOR] > max(own[_A], own[_HALF_B])  # by hand: 0.888 > 0.825 > 0.584
    assert math.isclose(float(got[_DISTRACTOR]), own[_DISTRACTOR], rel_tol=1e-12)  # no window helps it
    assert set(got.topk(2).indices.tolist()) == {_A, _HALF_B}
    assert set(out.relevance_mean[0].topk(2).indices.tolist()) == {_A, _HALF_B}
    # the regions that took the window carry its sd into the epistemic factor
    torch.testing.assert_close(m.concept(win, _question().concept_vector).sd[0, k],
                               pool_windows(looks.score, looks.sd, pairs)[1][0, _A])
    # without the window look the look-alike wins
    off = _allocator(False)(f, question=_question(), deterministic=True)
    torch.testing.assert_close(off.scores["concept"][0], torch.tensor(own, dtype=torch.float64))
    assert off.scores["concept"][0].argmax() == _DISTRACTOR and off.relevance_mean[0].argmax() == _DISTRACTOR


def test_window_look_pools_both_looks_before_the_windows():
    """With concept_features (the crops) the candidate's score is the crop-weighted mean of its two
    looks' scores (each look's window from its own features), and the windows are pooled after."""
    f = _scene()
    crops = _scene().roll(1, dims=1)  # another look: everything shifted by one region
    m = _allocator(True)
    pairs = window_pairs(4)
    q = _question()
    ext = [m.concept(torch.cat([x, window_features(x, pairs)], 1), q.concept_vector) for x in (f, crops)]
    w = m.config.concept_crop_weight
    want = pool_windows((1 - w) * ext[0].score + w * ext[1].score, (1 - w) * ext[0].sd + w * ext[1].sd, pairs)
    out = m(f, question=q, deterministic=True, concept_features=crops)
    torch.testing.assert_close(out.scores["concept"], want[0])


def test_window_look_needs_the_full_grid():
    """R != grid**2 (regions not on the config's grid): no windows, the regions' own looks."""
    f = _scene()[:, :5]
    on = _allocator(True)(f, question=_question(), deterministic=True)
    off = _allocator(False)(f, question=_question(), deterministic=True)
    torch.testing.assert_close(on.scores["concept"], off.scores["concept"])


def test_text_concept_takes_the_window_look_too():
    f = _scene()
    m = _allocator(True)
    m.concept.text_embedding = torch.eye(4, dtype=torch.float64)[2]  # "printed text" = class 2, for the test
    q = QuestionBatch.from_cues(parse_questions(["What does the sign say?"]),
                                torch.eye(4, dtype=torch.float64)[2][None], embed_dim=4, dtype=torch.float64)
    assert float(q.reading[0]) > 0
    out = m(f, question=q, deterministic=True)
    torch.testing.assert_close(out.scores["text_concept"], q.reading[:, None] * out.scores["concept"])


@pytest.mark.parametrize("bad", [1, 0, "yes", None, 1.0])
def test_concept_windows_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="concept_windows"):
        RelevanceConfig(concept_windows=bad)


def test_concept_windows_round_trips_and_defaults_off():
    assert RelevanceConfig().concept_windows is False
    cfg = RelevanceConfig(concept_windows=True)
    assert RelevanceConfig.from_json(cfg.to_json()).concept_windows is True
