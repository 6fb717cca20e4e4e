"""eval.resolvability: the oracle-location probe (quadrant of the thumbnail, region means, the regression)."""
from types import SimpleNamespace

import torch

from eval.resolvability import probe_accuracy, view_features


def test_view_features_pick_the_thumbnail_quadrant_and_the_region_mean():
    glob = torch.arange(4.0).view(1, 4, 1).expand(1, 4, 3)  # token t holds value t
    regions = {4: torch.arange(16.0).view(1, 16, 1, 1).expand(1, 16, 4, 3) + torch.arange(4.0).view(1, 1, 4, 1)}
    cache = SimpleNamespace(global_tokens=glob, region_features=torch.zeros(1, 16, 3), scene_of=torch.zeros(4, dtype=torch.long),
                            region_tokens=regions)
    targets = [[0], [3], [10], [15]]  # cells: top-left, top-right, lower-left quadrant's right half, bottom-right
    assert view_features(cache, targets, "thumbnail")[:, 0].tolist() == [0.0, 1.0, 3.0, 3.0]
    assert view_features(cache, [[10]], "thumbnail")[0, 0] == 3.0  # row 2, col 2 -> quadrant (1, 1)
    assert view_features(cache, [[8]], "thumbnail")[0, 0] == 2.0   # row 2, col 0 -> quadrant (1, 0)
    assert view_features(cache, targets, 4)[:, 0].tolist() == [1.5, 4.5, 11.5, 16.5]  # cell + mean(0..3)


def test_probe_separates_what_is_there_and_not_what_is_not():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=g)
    signal = torch.nn.functional.one_hot(y, 3).float() * 2 + 0.5 * torch.randn(300, 3, generator=g)
    x = torch.cat([signal, torch.randn(300, 20, generator=g)], 1)
    assert probe_accuracy(x[:200], y[:200], x[200:], y[200:], 3) > 0.95
    noise = torch.randn(300, 23, generator=g)
    assert probe_accuracy(noise[:200], y[:200], noise[200:], y[200:], 3) < 0.5
