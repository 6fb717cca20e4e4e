"""RelevanceAllocator end to end: reproducibility, query-free fallback, update, baselines, bad input."""
import pytest
import torch

from arrcoc.relevance import BASELINES, CHANNELS, RelevanceAllocator, RelevanceConfig
from arrcoc.relevance.config import EXTERNAL, STANDARDIZED

QUESTION_CHANNELS = [c for c in CHANNELS if c not in STANDARDIZED and c != "refined"]
from arrcoc.relevance.posterior import hierarchical_posterior
from arrcoc.relevance.scorers import standardize

D, DQ = 32, 24


def _inputs(gen, B=3, R=16, T=5):
    f = torch.randn(B, R, D, generator=gen)
    px = torch.rand(B, R, 3, 12, 12, generator=gen)
    q = torch.randn(B, T, DQ, generator=gen)
    qm = torch.ones(B, T, dtype=torch.bool)
    qm[1, 3:] = False
    return f, px, q, qm


# The mathematical properties below are checked under the first release's parameterisation (a
# prior at p = 0.5, a learned query head trusted at precision 2, the information gain); the
# question-aware defaults are tested in test_question_channels.py.
LEGACY = dict(mu_global=0.0, sigma=1.0, init_precision={"query": 2.0, "information_pixel": 0.25, "information_feature": 0.25,
                                              "salience_contrast": 0.5, "salience_spectral": 0.5},
              gain="information", cost=1e-3, budget=1600, probability="sigmoid")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return RelevanceAllocator(RelevanceConfig(num_thompson=2, num_heads=4, head_dim=8, **LEGACY),
                              feature_dim=D, query_dim=DQ)


def test_forward_shapes_budget_and_levels(model, gen):
    f, px, q, qm = _inputs(gen)
    out = model(f, region_pixels=px, query_embeds=q, query_mask=qm, generator=gen)
    B, R = 3, 16
    assert out.allocation.shape == (B, R) and out.allocation.dtype == torch.long
    assert (out.tokens_used <= 1600).all() and (out.tokens_used == out.allocation.sum(-1)).all()
    assert torch.isin(out.allocation, torch.tensor(model.config.levels)).all()
    assert set(out.scores) == set(CHANNELS) - {"refined"} - set(QUESTION_CHANNELS) - set(EXTERNAL)  # no question cues given
    assert out.draws.shape == (B, 2, R) and out.query_present.all()
    assert (out.relevance_var > out.posterior.aleatoric_var).all()  # the query head adds epistemic variance
    # per-image budgets
    out2 = model(f, query_embeds=q, query_mask=qm, budget=torch.tensor([0, 64, 6400]), generator=gen)
    assert out2.tokens_used[0] == 0 and out2.insufficient_budget.tolist() == [True, False, False]
    assert out2.tokens_used[1] <= 64


def test_same_seed_same_allocation(model, gen):
    f, px, q, qm = _inputs(gen)
    a = model(f, region_pixels=px, query_embeds=q, query_mask=qm, generator=torch.Generator().manual_seed(5))
    b = model(f, region_pixels=px, query_embeds=q, query_mask=qm, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.allocation, b.allocation) and torch.equal(a.draws, b.draws)
    c = model(f, region_pixels=px, query_embeds=q, query_mask=qm, deterministic=True)
    d = model(f, region_pixels=px, query_embeds=q, query_mask=qm, deterministic=True)
    assert torch.equal(c.allocation, d.allocation)
    torch.testing.assert_close(c.probability, torch.sigmoid(c.relevance_mean))


def test_posterior_is_the_documented_model(model, gen):
    """The module's posterior equals hierarchical_posterior on the standardised scores."""
    f, px, q, qm = _inputs(gen)
    out = model(f, region_pixels=px, query_embeds=q, query_mask=qm, deterministic=True)
    present = [n for n in CHANNELS if n in out.scores]
    obs = torch.zeros(3, len(CHANNELS), 16)
    mask = torch.zeros(3, len(CHANNELS), 16, dtype=torch.bool)
    for n in present:
        k = CHANNELS.index(n)
        obs[:, k] = standardize(out.scores[n])[0]
        mask[:, k] = True
    cal = model.calibration(obs)
    ref = hierarchical_posterior(obs, mask, **cal)
    torch.testing.assert_close(out.posterior.mean, ref.mean)
    torch.testing.assert_close(out.posterior.aleatoric_var, ref.var)


def test_query_free_input_falls_back_to_the_other_scorers(model, gen):
    f, px, q, qm = _inputs(gen)
    none = model(f, region_pixels=px, deterministic=True)
    masked = model(f, region_pixels=px, query_embeds=q, query_mask=torch.zeros_like(qm), deterministic=True)
    assert not none.query_present.any() and not masked.query_present.any()
    torch.testing.assert_close(none.relevance_mean, masked.relevance_mean)
    torch.testing.assert_close(none.relevance_var, none.posterior.aleatoric_var)
    # equals the posterior of the remaining channels alone
    names = [n for n in CHANNELS if n in none.scores and n != "query"]
    idx = [CHANNELS.index(n) for n in names]
    obs = torch.stack([standardize(none.scores[n])[0] for n in names], 1)
    cal = model.calibration(obs)
    ref = hierarchical_posterior(obs, slope=cal["slope"][idx], offset=cal["offset"][idx],
                                 precision=cal["precision"][idx], mu_global=cal["mu_global"], tau=cal["tau"],
                                 sigma=cal["sigma"])
    torch.testing.assert_close(none.relevance_mean, ref.mean)
    # no pixels: only the feature-based channels
    feat = model(f, deterministic=True)
    assert set(feat.scores) == {"information_feature", "salience_contrast", "query"}
    with pytest.raises(ValueError, match="top_k_query"):
        model.allocate_baseline(none, "top_k_query")


def test_update_moves_every_region_and_reallocates(model, gen):
    f, px, q, qm = _inputs(gen)
    out = model(f, region_pixels=px, query_embeds=q, query_mask=qm, deterministic=True)
    idx = torch.tensor([[0, 1]] * 3)
    up = model.update(out.posterior, idx, torch.tensor([[4.0, 4.0]] * 3))
    delta = up.mean - out.posterior.mean
    assert (delta[:, :2] > 0.5).all() and (delta[:, 2:] > 0).all()
    # a dict of raw scorer outputs is standardised with the glimpse's loc/scale
    raw = out.scores["query"][:, :2] + 1.0
    up2 = model.update(out.posterior, idx, {"query": raw})
    k = CHANNELS.index("query")
    z = (raw - out.posterior.channel_loc[:, k, None]) / out.posterior.channel_scale[:, k, None]
    cal = model.calibration(z)
    gain = cal["slope"][k] * cal["precision"][k]
    torch.testing.assert_close(up2.evidence_info - out.posterior.evidence_info,
                               torch.zeros_like(up2.evidence_info).scatter_add(1, idx, gain * (z - cal["offset"][k])))
    # allocating again, excluding the regions already encoded
    ex = torch.zeros(3, 16, dtype=torch.bool); ex[:, :2] = True
    alloc = model.allocate(up, 800, deterministic=True, exclude=ex)
    assert (alloc.levels[:, :2] == 0).all() and (alloc.tokens_used <= 800).all()
    with pytest.raises(ValueError, match="refined_scores"):
        model.update(out.posterior, idx, {"nonsense": raw})


def test_update_mask_ignores_padded_slots(model, gen):
    """Images refining different numbers of regions: a masked slot (even holding NaN) carries no evidence."""
    f, px, q, qm = _inputs(gen)
    post = model(f, region_pixels=px, query_embeds=q, query_mask=qm, deterministic=True).posterior
    raw = torch.tensor([[1.5, float("nan")], [0.3, -0.7], [2.0, float("nan")]])
    idx = torch.tensor([[2, 5], [2, 5], [2, 5]])
    valid = torch.tensor([[True, False], [True, True], [True, False]])
    masked = model.update(post, idx, {"query": raw}, mask=valid)
    one = model.update(post, idx[:, :1], {"query": raw[:, :1]})  # first slot only, for every image
    torch.testing.assert_close(masked.mean[[0, 2]], one.mean[[0, 2]])
    torch.testing.assert_close(masked.var[[0, 2]], one.var[[0, 2]])
    both = model.update(post, idx, {"query": torch.nan_to_num(raw)})
    torch.testing.assert_close(masked.mean[1], both.mean[1])
    assert not torch.equal(masked.mean[1], one.mean[1])
    with pytest.raises(ValueError):
        model.update(post, idx, {"query": raw})  # NaN without a mask is an error, not a silent NaN


def test_baselines_and_greedy(model, gen):
    f, px, q, qm = _inputs(gen)
    out = model(f, region_pixels=px, query_embeds=q, query_mask=qm, deterministic=True)
    dp = model.allocate(out.posterior, 1000, deterministic=True)
    greedy = model.allocate(out.posterior, 1000, deterministic=True, solver="greedy")
    for kind in BASELINES:
        a = model.allocate_baseline(out, kind, budget=1000, generator=gen)
        assert (a.tokens_used <= 1000).all() and a.solver == kind
        assert (a.utility <= dp.utility + 1e-5).all()
    assert (greedy.utility <= dp.utility + 1e-5).all()
    top_q = model.allocate_baseline(out, "top_k_query", budget=400)
    assert (top_q.levels.argmax(1) == out.scores["query"].argmax(1)).all()
    with pytest.raises(ValueError, match="kind"):
        model.allocate_baseline(out, "oracle")


def test_bad_input(model, gen):
    f, px, q, qm = _inputs(gen)
    with pytest.raises(ValueError, match="region_features"):
        model(f.masked_fill(torch.rand(f.shape, generator=gen) < 0.1, float("nan")))
    with pytest.raises(ValueError, match="region_features"):
        model(f.masked_fill(torch.ones_like(f, dtype=torch.bool), float("inf")))
    with pytest.raises(ValueError, match="empty batch"):
        model(f[:0])
    with pytest.raises(ValueError, match="feature_dim"):
        model(f[..., :10])
    with pytest.raises(ValueError, match="region_pixels"):
        model(f, region_pixels=px[:, :5])
    with pytest.raises(ValueError, match="region_pixels"):
        model(f, region_pixels=px.masked_fill(torch.ones_like(px, dtype=torch.bool), float("nan")))
    with pytest.raises(ValueError, match="query_embeds"):
        model(f, query_embeds=q[:2])
    with pytest.raises(ValueError, match="query_embeds"):
        model(f, query_embeds=q[..., :5])
    with pytest.raises(ValueError, match="query_mask"):
        model(f, query_embeds=q, query_mask=qm[:, :2])
    with pytest.raises(ValueError, match="budget"):
        model(f, budget=-1)
    with pytest.raises(TypeError, match="budget"):
        model(f, budget=12.5)
    with pytest.raises(ValueError, match="levels"):
        RelevanceAllocator(RelevanceConfig(levels=(0, 100, 64)), feature_dim=D)
    with pytest.raises(ValueError, match="feature_dim"):
        RelevanceAllocator(RelevanceConfig(), feature_dim=0)


def test_constant_channel_is_treated_as_unobserved(model, gen):
    f = torch.randn(1, 1, D, generator=gen).expand(2, 16, D).clone()  # every region identical
    out = model(f, deterministic=True)
    # no informative channel left: the posterior is the prior for every region
    torch.testing.assert_close(out.relevance_mean, torch.zeros(2, 16))
    torch.testing.assert_close(out.relevance_var, torch.full((2, 16), 2.0))
    assert torch.isfinite(out.posterior.channel_scale).all() and (out.posterior.channel_scale == 1).all()
