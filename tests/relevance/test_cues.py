"""Cue scorers (colour, text strokes, position) and the question channels inside the allocator."""
import math

import torch

from arrcoc.relevance import RelevanceAllocator, RelevanceConfig
from arrcoc.relevance.cues import (COLOUR_NAMES, QuestionBatch, colour_match, colour_weights, region_centres,
                                   rgb_to_hsv, spatial_prior, text_density)
from arrcoc.relevance.question import parse_questions


def _solid(rgb, h=16, w=16):
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, h, w)


def test_hsv_matches_colorsys():
    import colorsys
    for rgb in [(0.8, 0.1, 0.1), (0.1, 0.3, 0.7), (0.5, 0.5, 0.5), (0.2, 0.9, 0.4)]:
        h, s, v = rgb_to_hsv(torch.tensor(rgb).view(3, 1, 1))
        eh, es, ev = colorsys.rgb_to_hsv(*rgb)
        assert math.isclose(float(h) / 360, eh, abs_tol=1e-5) and math.isclose(float(s), es, abs_tol=1e-6)
        assert math.isclose(float(v), ev, abs_tol=1e-6)


def test_colour_match_finds_the_named_colour():
    regions = torch.stack([_solid((0.08, 0.27, 0.63)), _solid((0.55, 0.75, 1.0)), _solid((0.78, 0.08, 0.08)),
                           _solid((0.38, 0.55, 0.27))])[None]  # (1, 4, 3, h, w): sign blue, sky, red, grass
    blue = colour_match(regions, colour_weights(["blue"])[None])[0]
    assert blue[0] > 0.9 and blue[1:].max() < 0.1  # pale sky is not "blue" enough
    red = colour_match(regions, colour_weights(["red"])[None])[0]
    assert red.argmax() == 2 and red[2] > 0.9
    none = colour_match(regions, torch.zeros(1, len(COLOUR_NAMES)))
    assert (none == 0).all()
    half = regions.clone()
    half[0, 3, :, :8] = regions[0, 0, :, :8]  # half of the grass region painted sign-blue
    assert math.isclose(float(colour_match(half, colour_weights(["blue"])[None])[0, 3]), 0.5, abs_tol=0.02)


def test_text_density_prefers_strokes_over_flat_and_smooth():
    g = torch.Generator().manual_seed(0)
    flat = torch.full((32, 32), 0.6)
    ramp = torch.linspace(0, 1, 32).expand(32, 32)
    text = flat.clone()
    for x in range(2, 30, 4):  # vertical 1-px dark strokes in one line band
        text[12:18, x] = 0.05
    noise = torch.rand(32, 32, generator=g) * 0.05 + 0.5
    s = text_density(torch.stack([flat, ramp, text, noise])[None])[0]
    assert s.argmax() == 2 and s[2] > 0.3 and s[[0, 1, 3]].max() < 0.1


def test_spatial_prior_bump_and_free_axes():
    c = region_centres(4)
    assert torch.allclose(c[0], torch.tensor([0.125, 0.125])) and torch.allclose(c[15], torch.tensor([0.875, 0.875]))
    t = torch.tensor([[0.125, 0.125], [math.nan, 0.875], [math.nan, math.nan]])
    p = spatial_prior(c, t)
    assert p[0].argmax() == 0 and p[0, 0] == 1.0
    assert torch.equal(p[1].view(4, 4)[3], torch.ones(4)) and p[1].view(4, 4)[0].max() < 0.01  # bottom row
    assert (p[2] == 0).all()


def test_question_channels_move_the_posterior(gen):
    """A named colour, a reading question and a position each raise the matching region, and only
    when the question has that cue (the channel is masked otherwise)."""
    m = RelevanceAllocator(RelevanceConfig(num_heads=2, head_dim=4), feature_dim=8)
    f = torch.randn(1, 16, 8, generator=gen).expand(3, 16, 8).contiguous()
    px = torch.full((3, 16, 3, 16, 16), 0.6)
    px[:, 5] = _solid((0.08, 0.27, 0.63))  # a blue region
    for x in range(2, 14, 3):
        px[:, 10, :, 6:10, x] = 0.05  # a line of strokes
    qs = ["Is the blue thing big?", "What does it say?", "What is in the top left corner?"]
    qb = QuestionBatch.from_cues(parse_questions(qs))
    out = m(f, region_pixels=px, question=qb, deterministic=True)
    assert out.relevance_mean[0].argmax() == 5 and out.relevance_mean[1].argmax() == 10
    assert out.relevance_mean[2].argmax() == 0
    plain = m(f, region_pixels=px, deterministic=True)
    assert not torch.allclose(plain.relevance_mean, out.relevance_mean)
    # each cue channel is observed only for the image whose question has the cue: the three images
    # differ in evidence precision by exactly the precision of their one cue channel
    prec = out.posterior.evidence_precision.sum(-1) / 16
    lam = m.config.init_precision
    torch.testing.assert_close(prec[1] - prec[0], torch.tensor(lam["text_pixels"] - lam["colour"]))
    torch.testing.assert_close(prec[2] - prec[0], torch.tensor(lam["spatial"] - lam["colour"]))


def test_tokens_concentrate_on_the_likely_region(gen):
    """The decision rule: at ~25 % of full detail a region the posterior favours gets a top level and
    the regions confidently irrelevant get nothing."""
    m = RelevanceAllocator(RelevanceConfig(num_heads=2, head_dim=4, budget=1600), feature_dim=8)
    f = torch.randn(1, 16, 8, generator=gen)
    px = torch.full((1, 16, 3, 16, 16), 0.6)
    px[:, 6] = _solid((0.78, 0.08, 0.08))
    qb = QuestionBatch.from_cues(parse_questions(["What does the red sign in the centre say?"]))
    out = m(f, region_pixels=px, question=qb, deterministic=True)
    a = out.allocation[0]
    assert a[6] == 400 and a.max() == 400
    assert (a == 0).sum() >= 8  # far, plain regions get nothing


def test_concept_channel_reads_concept_features_when_given(gen):
    """With concept_features the ConSE channels score both looks and weigh them by
    config.concept_crop_weight (1: the crop alone, 0: the glimpse alone, 0.5: their mean)."""
    from arrcoc.relevance.concept import ConceptScorer

    D, C, Dq = 8, 3, 4
    W = torch.eye(C, D) * 10  # class c fires on feature dim c
    labels = torch.eye(C, Dq)  # class c's name embedding is axis c

    def allocator(w):
        return RelevanceAllocator(RelevanceConfig(num_heads=2, head_dim=4, concept_crop_weight=w), feature_dim=D,
                                  concept=ConceptScorer(W, torch.zeros(C), labels, torch.eye(Dq)[3]))

    f = torch.zeros(1, 16, D)
    f[0, 2, 0] = 1.0  # region features: region 2 shows class 0
    crops = torch.zeros(1, 16, D)
    crops[0, 9, 1] = 1.0  # concept features: region 9 shows class 1
    qb = QuestionBatch.from_cues(parse_questions(["Where is the thing?"]), torch.eye(Dq)[1][None], embed_dim=Dq)
    m = allocator(1.0)
    on_crop = m.concept(crops, qb.concept_vector).score
    on_glimpse = m.concept(f, qb.concept_vector).score
    seen = m(f, question=qb, deterministic=True, concept_features=crops)
    torch.testing.assert_close(seen.scores["concept"], on_crop)
    assert seen.scores["concept"][0].argmax() == 9 and seen.relevance_mean[0].argmax() == 9
    torch.testing.assert_close(allocator(0.0)(f, question=qb, deterministic=True, concept_features=crops).scores["concept"],
                               on_glimpse)
    torch.testing.assert_close(m(f, question=qb, deterministic=True).scores["concept"], on_glimpse)
    mixed = allocator(0.5)(f, question=qb, deterministic=True, concept_features=crops)
    torch.testing.assert_close(mixed.scores["concept"], 0.5 * (on_crop + on_glimpse))
    assert on_glimpse[0].argmax() != 9
