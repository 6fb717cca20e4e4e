"""RelevanceAllocator.forward validates once at the boundary: a batch costs a handful of host syncs."""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from arrcoc.relevance import RelevanceAllocator, RelevanceConfig

MAX_SYNCS = 5  # inputs' finiteness, budget, scorers' finiteness, the knapsack's two sizes


def _syncs(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == "aten::_local_scalar_dense")


@pytest.mark.parametrize("deterministic", [True, False])
def test_forward_host_syncs(gen, deterministic):
    m = RelevanceAllocator(RelevanceConfig(global_tokens=64), feature_dim=32, query_dim=16)
    f = torch.randn(4, 16, 32, generator=gen)
    px = torch.rand(4, 16, 3, 16, 16, generator=gen)
    q = torch.randn(4, 5, 16, generator=gen)
    out = m(f, region_pixels=px, query_embeds=q, budget=1024, generator=gen, deterministic=deterministic)
    assert (out.tokens_used <= 1024 - 64).all()
    n = _syncs(lambda: m(f, region_pixels=px, query_embeds=q, budget=1024, generator=gen,
                         deterministic=deterministic))
    assert 1 <= n <= MAX_SYNCS, n


def test_boundary_still_catches_bad_inputs(gen):
    m = RelevanceAllocator(RelevanceConfig(), feature_dim=8, query_dim=8)
    f = torch.randn(1, 4, 8, generator=gen)
    q = torch.randn(1, 3, 8, generator=gen)
    with pytest.raises(ValueError, match="region_features"):
        m(f.clone().index_fill_(1, torch.tensor([2]), float("nan")), deterministic=True)
    bad_q = q.clone()
    bad_q[0, 1, 0] = float("inf")
    with pytest.raises(ValueError, match="query_embeds"):
        m(f, query_embeds=bad_q, deterministic=True)
    # an inf at a masked (padding) token is ignored
    mask = torch.tensor([[True, False, True]])
    m(f, query_embeds=bad_q, query_mask=mask, deterministic=True)
    with pytest.raises(ValueError, match="budget"):
        m(f, budget=-1, deterministic=True)
    with pytest.raises(TypeError, match="generator"):
        m(f, deterministic=False)
