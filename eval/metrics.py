"""Check-set metrics on allocations, with their exact chance levels (array functions, batched).

Shapes: N questions (or P question pairs), R regions. ``allocation`` (N, R) integer tokens per
region; ``targets`` (N, R) bool, True for the region(s) the answer is in (at least one per row).

hit@top: the image's highest allocated level is held by at most ``max_ties`` regions and one of
    them is a target. An image with nothing allocated, or whose top level is shared by more than
    ``max_ties`` regions (a spread, not a choice), is a miss.
chance of hit@top: the probability of a hit when the same allocation (the same multiset of
    levels) is permuted uniformly at random over the regions. Only the k regions at the top level
    matter: they form a uniformly random k-subset, which misses all t targets with probability
    C(R - t, k) / C(R, k). Zero when k > max_ties or nothing is allocated.
target token share: tokens to the target regions / all region tokens (0 when no region got any);
    uniform allocation's share is t / R (the same tokens spread evenly over the R regions).
question sensitivity: for an ordered pair (question A, question B about another object of the same
    scene), A's targets get more tokens when A is asked than when B is asked (strictly: a tie means
    the question did not move the tokens). Chance: the same comparison when both allocations are
    independently permuted at random -- P(X > Y) with X, Y the sums of t draws without replacement
    from the two level multisets, computed exactly by enumerating the C(R, t) target placements.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter

import torch
from torch import Tensor

__all__ = ["check_allocation", "check_targets", "target_mask", "top_level_mask", "hit_at_top",
           "hit_at_top_chance", "target_tokens", "target_share", "uniform_share", "question_moved",
           "question_moved_chance", "binomial_se"]

_METHODS = ("exact", "monte_carlo")


def check_allocation(allocation, name: str = "allocation") -> Tensor:
    """An integer tensor (N, R) of non-negative tokens."""
    if not isinstance(allocation, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, R), got {type(allocation).__name__}")
    if allocation.dim() != 2 or allocation.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, R) with R >= 1, got {tuple(allocation.shape)}")
    if allocation.is_floating_point() or allocation.dtype == torch.bool or allocation.is_complex():
        raise TypeError(f"{name} must hold integer tokens, got dtype {allocation.dtype}")
    if (allocation < 0).any():
        raise ValueError(f"{name} must be non-negative; row {int((allocation < 0).any(1).nonzero()[0])} is not")
    return allocation.long()


def check_targets(targets, shape, name: str = "targets") -> Tensor:
    """A bool tensor of the given (N, R) shape with at least one target per row."""
    if not isinstance(targets, Tensor) or targets.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor of shape {tuple(shape)} (use target_mask), got "
                        f"{getattr(targets, 'dtype', type(targets).__name__)}")
    if tuple(targets.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(targets.shape)}")
    empty = ~targets.any(1)
    if empty.any():
        raise ValueError(f"{name} row {int(empty.nonzero()[0])} has no target region")
    return targets


def target_mask(regions, num_regions: int) -> Tensor:
    """Region index lists (one per question) -> (N, R) bool mask."""
    if isinstance(num_regions, bool) or not isinstance(num_regions, int) or num_regions < 1:
        raise ValueError(f"num_regions must be a positive int, got {num_regions!r}")
    rows = list(regions)
    out = torch.zeros(len(rows), num_regions, dtype=torch.bool)
    for i, row in enumerate(rows):
        row = list(row)
        if not row:
            raise ValueError(f"regions[{i}] is empty; every question needs at least one target region")
        for r in row:
            if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < num_regions:
                raise ValueError(f"regions[{i}] has {r!r}; expected region indices in [0, {num_regions})")
        out[i, row] = True
    return out


def _check_ties(max_ties) -> int:
    if isinstance(max_ties, bool) or not isinstance(max_ties, int) or max_ties < 1:
        raise ValueError(f"max_ties must be a positive int, got {max_ties!r}")
    return max_ties


def top_level_mask(allocation: Tensor) -> Tensor:
    """(N, R) bool: regions at the image's highest allocated level (all False if nothing allocated)."""
    a = check_allocation(allocation)
    top = a.max(1, keepdim=True).values  # (N, 1)
    return (a == top) & (top > 0)


def hit_at_top(allocation: Tensor, targets: Tensor, max_ties: int = 2) -> Tensor:
    """(N,) bool: at most max_ties regions share the top level and one of them is a target."""
    a = check_allocation(allocation)
    t = check_targets(targets, a.shape)
    top = top_level_mask(a)  # (N, R)
    k = top.sum(1)  # (N,)
    return (k >= 1) & (k <= _check_ties(max_ties)) & (top & t).any(1)


def hit_at_top_chance(allocation: Tensor, targets: Tensor, max_ties: int = 2, method: str = "exact",
                      generator: torch.Generator | None = None, num_draws: int = 10_000) -> Tensor:
    """(N,) float64: probability of a hit under a uniformly random permutation of each row.

    method "exact": 1 - C(R - t, k) / C(R, k) for k regions at the top level (0 when k > max_ties
    or nothing is allocated). "monte_carlo": the fraction of ``num_draws`` random permutations
    that hit (needs ``generator``; for checking the exact formula)."""
    a = check_allocation(allocation)
    t = check_targets(targets, a.shape)
    ties = _check_ties(max_ties)
    N, R = a.shape
    if method == "exact":
        k = top_level_mask(a).sum(1).tolist()
        n_t = t.sum(1).tolist()
        out = [0.0 if (ki == 0 or ki > ties) else 1.0 - math.comb(R - ti, ki) / math.comb(R, ki)
               for ki, ti in zip(k, n_t)]
        return torch.tensor(out, dtype=torch.float64)
    if method == "monte_carlo":
        if not isinstance(generator, torch.Generator):
            raise TypeError("method='monte_carlo' needs generator=torch.Generator")
        perm = torch.rand(N, num_draws, R, generator=generator).argsort(-1)  # (N, S, R)
        shuffled = a[:, None, :].expand(N, num_draws, R).gather(-1, perm)  # (N, S, R)
        hits = hit_at_top(shuffled.reshape(-1, R), t[:, None, :].expand(N, num_draws, R).reshape(-1, R), ties)
        return hits.reshape(N, num_draws).double().mean(1)
    raise ValueError(f"method must be one of {_METHODS}, got {method!r}")


def target_tokens(allocation: Tensor, targets: Tensor) -> Tensor:
    """(N,) long: tokens given to the target regions."""
    a = check_allocation(allocation)
    return (a * check_targets(targets, a.shape)).sum(1)


def target_share(allocation: Tensor, targets: Tensor) -> Tensor:
    """(N,) float64: target tokens / region tokens (0 where no region got tokens)."""
    a = check_allocation(allocation)
    total = a.sum(1).double()  # (N,)
    tok = target_tokens(a, targets).double()
    return torch.where(total > 0, tok / total.clamp_min(1), torch.zeros_like(total))


def uniform_share(targets: Tensor) -> Tensor:
    """(N,) float64: t / R, the share of evenly spread tokens that lands on the t targets."""
    if not isinstance(targets, Tensor) or targets.dtype != torch.bool or targets.dim() != 2:
        raise TypeError("targets must be a (N, R) bool tensor")
    check_targets(targets, targets.shape)
    return targets.sum(1).double() / targets.shape[1]


def question_moved(own: Tensor, other: Tensor, targets: Tensor) -> Tensor:
    """(P,) bool: the targets of question A get more tokens under A (``own``) than under B (``other``)."""
    own, other = check_allocation(own, "own"), check_allocation(other, "other")
    if own.shape != other.shape:
        raise ValueError(f"own and other must have the same shape, got {tuple(own.shape)} and {tuple(other.shape)}")
    return target_tokens(own, targets) > target_tokens(other, targets)


def _sum_distribution(levels: list[int], t: int) -> Counter:
    """Distribution of the sum of the values at t random distinct positions (counts over placements)."""
    return Counter(sum(levels[i] for i in c) for c in itertools.combinations(range(len(levels)), t))


def question_moved_chance(own: Tensor, other: Tensor, targets: Tensor, method: str = "exact",
                          generator: torch.Generator | None = None, num_draws: int = 10_000) -> Tensor:
    """(P,) float64: P(X > Y) for X, Y the target tokens of independent random permutations of
    ``own`` and ``other`` (method "exact": enumeration; "monte_carlo": ``num_draws`` permutation pairs)."""
    own, other = check_allocation(own, "own"), check_allocation(other, "other")
    if own.shape != other.shape:
        raise ValueError(f"own and other must have the same shape, got {tuple(own.shape)} and {tuple(other.shape)}")
    t = check_targets(targets, own.shape)
    P, R = own.shape
    if method == "exact":
        out = []
        for a, b, n_t in zip(own.tolist(), other.tolist(), t.sum(1).tolist()):
            if math.comb(R, n_t) > 200_000:
                raise ValueError(f"exact chance enumerates C({R}, {n_t}) placements; too many, use monte_carlo")
            dx, dy = _sum_distribution(a, n_t), _sum_distribution(b, n_t)
            total = math.comb(R, n_t) ** 2
            out.append(sum(cx * cy for x, cx in dx.items() for y, cy in dy.items() if x > y) / total)
        return torch.tensor(out, dtype=torch.float64)
    if method == "monte_carlo":
        if not isinstance(generator, torch.Generator):
            raise TypeError("method='monte_carlo' needs generator=torch.Generator")
        tt = t[:, None, :].expand(P, num_draws, R)  # (P, S, R)

        def draw(a):
            perm = torch.rand(P, num_draws, R, generator=generator).argsort(-1)  # (P, S, R)
            return (a[:, None, :].expand(P, num_draws, R).gather(-1, perm) * tt).sum(-1)  # (P, S)

        return (draw(own) > draw(other)).double().mean(1)
    raise ValueError(f"method must be one of {_METHODS}, got {method!r}")


def binomial_se(p: float, n: int) -> float:
    """Standard error sqrt(p (1 - p) / n) of a proportion over n independent questions."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return math.sqrt(max(p * (1 - p), 0.0) / n)
