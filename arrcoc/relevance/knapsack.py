"""Budgeted token allocation over regions: a multiple-choice knapsack.

Every region i takes one level l_i from a sorted level set L (0 included) and the total must fit
the budget: sum_i l_i <= budget. The objective is a utility table T (B, R, L) -- usually
``utility_table``: T[b,i,j] = p_i * gain(L_j, v_i) - cost * L_j, where

    gain(l, v) = 0.5 * log(1 + l * (c + v) / l_ref)

is the mutual information (nats) between a Gaussian region latent of variance c + v (c = content
variance, v = posterior variance of the region's relevance) and l token measurements each with noise
variance l_ref. It is 0 at l = 0, increasing and concave in l (diminishing returns from more
tokens), and grows with v (uncertain regions are worth a closer look). p_i = sigmoid(relevance).

The allocator's default gain is instead ``resolution_gain``: q(l) = 1 / (1 + (l_half / l)^k), the
chance that l tokens resolve the detail a question needs. It is S-shaped in log-tokens (64 tokens of
a region rarely answer, 256 usually do, 400 adds little), so the per-token value peaks between 100
and 256 tokens and the optimum concentrates tokens on the regions most likely to hold the answer;
with p_i small everywhere else, cost * l exceeds p_i q(l) there and those regions get 0. Uncertainty
enters through Thompson sampling (draws of p_i) rather than through the gain.

Solvers (all return the same ``Allocation``):
  solve_dp          exact, dynamic programming over the budget in units of gcd(levels), batched over
                    B and vectorised over the budget axis (Python loop over regions only)
  solve_greedy      repeatedly takes the upgrade with the best utility gain per token
  solve_brute_force exhaustive L**R enumeration (for checking, small R only)
  allocate_uniform / allocate_random / allocate_top_k   baselines for evaluation

A budget below the smallest nonzero level cannot buy anything: the allocation is all zeros and
``Allocation.insufficient_budget`` is True for that image (``Allocation.notes`` says so in words).
Entries of T equal to -inf mark forbidden levels (e.g. excluded regions); level 0 must be finite.
"""
from __future__ import annotations

import itertools
import math
from functools import reduce
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from arrcoc.bayes._validate import check_generator, check_int, check_real

from ._validate import as_budget, check_table, check_values
from .config import validate_levels

# The unchecked cores (utility_unchecked, solve_unchecked, dp_levels, greedy_levels) are internal:
# the allocator imports them by name after validating once at its boundary.
__all__ = [
    "Allocation", "information_gain", "resolution_gain", "utility_table", "exclude_regions", "as_budget",
    "solve", "solve_dp", "solve_greedy", "solve_brute_force", "allocate_uniform", "allocate_random", "allocate_top_k",
]


class Allocation(NamedTuple):
    """Result of every solver. Shapes: B images, R regions."""

    levels: Tensor               # (B, R) long: tokens given to each region (members of the level set)
    level_index: Tensor          # (B, R) long: index of that level in the level set
    tokens_used: Tensor          # (B,) long: sum of levels, always <= budget
    utility: Tensor              # (B,) utility of this allocation under the table it was solved for
    budget: Tensor               # (B,) long: the budget that was imposed
    insufficient_budget: Tensor  # (B,) bool: budget < smallest nonzero level, so nothing allocated
    solver: str                  # which solver produced it

    @property
    def notes(self) -> tuple[str, ...]:
        """Human-readable warnings (empty when every image could afford at least one level)."""
        bad = self.insufficient_budget.nonzero().flatten().tolist()
        if not bad:
            return ()
        return (f"budget below the smallest nonzero level for image(s) {bad}: nothing allocated",)

    def __str__(self) -> str:
        lines = [f"Allocation(solver={self.solver}, batch={self.levels.shape[0]}, "
                 f"regions={self.levels.shape[1]})"]
        for b in range(self.levels.shape[0]):
            lines.append(f"  image {b}: tokens {int(self.tokens_used[b])}/{int(self.budget[b])} "
                         f"utility {float(self.utility[b]):.4f} levels {self.levels[b].tolist()}")
        lines.extend("  note: " + n for n in self.notes)
        return "\n".join(lines)


# ----------------------------------------------------------------------------- inputs

def _levels_tensor(levels: Sequence[int], device) -> Tensor:
    return torch.tensor(validate_levels(levels, "levels"), dtype=torch.long, device=device)  # (L,)


def information_gain(levels: Sequence[int], var: Tensor, *, gain_ref_tokens: float = 64.0,
                     content_variance: float = 1.0) -> Tensor:
    """gain(l, v) = 0.5 * log(1 + l * (content_variance + v) / gain_ref_tokens): (B, R) -> (B, R, L)."""
    check_values(var, "var", "(B, R)", 2, low=0.0)
    gain_ref_tokens, content_variance = _check_information(gain_ref_tokens, content_variance)
    lv = torch.tensor(validate_levels(levels), dtype=var.dtype, device=var.device)  # (L,)
    return utility_unchecked(torch.ones_like(var), var, lv, 0.0, gain_ref_tokens, content_variance)  # (B, R, L)


def resolution_gain(levels: Sequence[int], *, half_tokens: float = 160.0, steepness: float = 2.0,
                    like: Tensor | None = None) -> Tensor:
    """q(l) = 1 / (1 + (half_tokens / l)^steepness), q(0) = 0: the chance that l tokens resolve the
    detail a question needs (an S-curve in log-tokens). (L,)"""
    half_tokens, steepness = _check_resolution(half_tokens, steepness, "half_tokens", "steepness")
    if like is not None and not isinstance(like, Tensor):
        raise TypeError(f"like must be a tensor (whose dtype and device the result takes) or None, got {type(like).__name__}")
    lv = torch.tensor(validate_levels(levels), dtype=like.dtype if like is not None else torch.float64,
                      device=like.device if like is not None else None)
    return _resolution(lv, half_tokens, steepness)


def _check_information(gain_ref_tokens, content_variance) -> tuple[float, float]:
    return (check_real(gain_ref_tokens, "gain_ref_tokens", low=0.0, low_open=True),
            check_real(content_variance, "content_variance", low=0.0))


def _check_resolution(half_tokens, steepness, half_name: str, steep_name: str) -> tuple[float, float]:
    return (check_real(half_tokens, half_name, low=0.0, low_open=True),
            check_real(steepness, steep_name, low=0.0, low_open=True))


def _resolution(lv: Tensor, half_tokens: float, steepness: float) -> Tensor:
    return torch.where(lv > 0, 1.0 / (1.0 + (half_tokens / lv.clamp_min(1e-12)) ** steepness), torch.zeros_like(lv))


def utility_table(prob: Tensor, var: Tensor, levels: Sequence[int], *, cost: float,
                  gain_ref_tokens: float = 64.0, content_variance: float = 1.0, gain: str = "information",
                  gain_half_tokens: float = 160.0, gain_steepness: float = 2.0) -> Tensor:
    """T[b,i,j] = prob[b,i] * gain(levels[j], var[b,i]) - cost * levels[j]  -> (B, R, L).

    gain "information": 0.5 log(1 + l (content_variance + v) / gain_ref_tokens) (module docstring);
    "resolution": ``resolution_gain`` (the allocator's default, RelevanceConfig.gain).
    """
    if not isinstance(prob, Tensor) or not isinstance(var, Tensor):
        raise TypeError("prob and var must be tensors of shape (B, R)")
    if prob.shape != var.shape:
        raise ValueError(f"prob {tuple(prob.shape)} and var {tuple(var.shape)} must have the same shape")
    if not torch.isfinite(prob).all() or (prob < 0).any() or (prob > 1).any():
        raise ValueError("prob must be finite and in [0, 1]")
    if not torch.isfinite(var).all() or (var < 0).any():
        raise ValueError("var must be finite and non-negative")
    if gain not in ("information", "resolution"):
        raise ValueError(f"gain must be 'information' or 'resolution', got {gain!r}")
    cost = check_real(cost, "cost", low=0.0)
    gain_ref_tokens, content_variance = _check_information(gain_ref_tokens, content_variance)
    gain_half_tokens, gain_steepness = _check_resolution(gain_half_tokens, gain_steepness, "gain_half_tokens",
                                                         "gain_steepness")
    lv = torch.tensor(validate_levels(levels), dtype=var.dtype, device=var.device)  # (L,)
    return utility_unchecked(prob, var, lv, cost, gain_ref_tokens, content_variance, gain, gain_half_tokens,
                             gain_steepness)


def utility_unchecked(prob: Tensor, var: Tensor, lv: Tensor, cost: float, gain_ref_tokens: float,
                      content_variance: float, gain: str = "information", gain_half_tokens: float = 160.0,
                      gain_steepness: float = 2.0) -> Tensor:
    """Core of :func:`utility_table` for checked inputs; lv: (L,) levels of var's dtype."""
    if gain == "resolution":
        g = _resolution(lv, gain_half_tokens, gain_steepness).expand(*var.shape, -1)  # (B, R, L)
    else:
        g = 0.5 * torch.log1p(lv * (content_variance + var[..., None]) / gain_ref_tokens)  # (B, R, L)
    return prob[..., None] * g - cost * lv  # (B, R, L)


def exclude_regions(table: Tensor, exclude: Tensor | None) -> Tensor:
    """Forbid every nonzero level for regions where exclude (B, R) is True."""
    if exclude is None:
        return table
    if not isinstance(table, Tensor) or table.dim() != 3:
        raise TypeError("table must be a tensor of shape (B, R, L)")
    if not isinstance(exclude, Tensor) or exclude.dtype != torch.bool or exclude.shape != table.shape[:2]:
        raise ValueError(f"exclude must be a bool tensor of shape {tuple(table.shape[:2])}, "
                         f"got {exclude.dtype} {tuple(exclude.shape)}")
    out = table.clone()
    out[..., 1:] = out[..., 1:].masked_fill(exclude[..., None], -math.inf)
    return out


def _finish(table: Tensor, lv: Tensor, idx: Tensor, budget: Tensor, solver: str) -> Allocation:
    levels = lv[idx]  # (B, R)
    utility = table.gather(-1, idx[..., None]).squeeze(-1).sum(-1)  # (B,)
    insufficient = budget < lv[1]  # (B,)
    return Allocation(levels, idx, levels.sum(-1), utility, budget, insufficient, solver)


def _prepare(table, levels, budget):
    lv = _levels_tensor(levels, table.device if isinstance(table, Tensor) else None)
    check_table(table, lv.numel())
    B, R, _ = table.shape
    bud = as_budget(budget, B, table.device)
    return lv, bud, B, R


# ----------------------------------------------------------------------------- solvers

def solve_dp(table: Tensor, levels: Sequence[int], budget) -> Allocation:
    """Exact multiple-choice knapsack by DP over budget units of size gcd(levels).

    best_i[b, u] = max utility of regions 0..i-1 using at most u units. Each region costs L
    vectorised (B, U+1) shifted-add/maximum ops; the optimal levels are recovered by walking back
    and picking, per region, the smallest level whose candidate value equals best_{i+1} exactly
    (the same float operations as the forward pass, so equality is exact). Memory O(R B U) floats.
    """
    lv, bud, B, R = _prepare(table, levels, budget)
    return _finish(table, lv, dp_levels(table.detach(), lv, bud), bud, "dp")


def dp_levels(work: Tensor, lv: Tensor, bud: Tensor) -> Tensor:
    """Unchecked core of :func:`solve_dp`: level indices (B, R) for table (B, R, L), levels (L,), budget (B,).

    Short cut: where the budget covers every region's unconstrained best level (the per-region argmax;
    smallest level on ties), that is the optimum and no table is built. Otherwise the DP table spans
    only the budget that can matter: min(budget, sum of those best levels) for the rows that bind.
    """
    B, R, L = work.shape
    best_idx = (work == work.amax(-1, keepdim=True)).to(torch.uint8).argmax(-1)  # (B, R) first argmax
    need = lv[best_idx].sum(-1)  # (B,) tokens of the unconstrained optimum
    binds = bud < need  # (B,)
    if not bool(binds.any()):
        return best_idx
    unit = reduce(math.gcd, lv.tolist())
    w = (lv // unit).tolist()  # weights in units
    wmax = max(w)
    cap = torch.where(binds, torch.minimum(bud, need), torch.zeros_like(bud)) // unit  # (B,)
    U = int(cap.max())
    # best[i] is stored with wmax columns of -inf in front, so shifting by w never leaves the array
    best = work.new_empty(R + 1, B, wmax + U + 1)  # (R+1, B, wmax+U+1)
    best[:, :, :wmax] = -math.inf
    best[0, :, wmax:] = 0.0
    for i in range(R):
        prev, out = best[i], best[i + 1, :, wmax:]  # (B, wmax+U+1), (B, U+1)
        torch.add(prev[:, wmax:], work[:, i, 0:1], out=out)
        for j in range(1, L):
            o = wmax - w[j]
            torch.maximum(out, prev[:, o:o + U + 1] + work[:, i, j:j + 1], out=out)
    rows = torch.arange(B, device=work.device)
    wt = torch.tensor(w, dtype=torch.long, device=work.device)  # (L,)
    idx = torch.empty(B, R, dtype=torch.long, device=work.device)
    u = cap.clone()  # (B,)
    for i in reversed(range(R)):
        target = best[i + 1, rows, wmax + u]  # (B,)
        cand = best[i][rows[:, None], wmax + u[:, None] - wt[None, :]] + work[:, i, :]  # (B, L)
        c = (cand == target[:, None]).to(torch.uint8).argmax(dim=1)  # (B,) first exact match
        idx[:, i] = c
        u = u - wt[c]
    return torch.where(binds[:, None], idx, best_idx)


def solve_greedy(table: Tensor, levels: Sequence[int], budget) -> Allocation:
    """Greedy: repeatedly apply the upgrade (any region, any higher level) with the largest utility
    gain per extra token that still fits; stop when no upgrade fits or none improves utility."""
    lv, bud, B, R = _prepare(table, levels, budget)
    return _finish(table, lv, greedy_levels(table.detach(), lv, bud), bud, "greedy")


def greedy_levels(work: Tensor, lv: Tensor, bud: Tensor) -> Tensor:
    """Unchecked core of :func:`solve_greedy`: level indices (B, R)."""
    B, R, L = work.shape
    cur = torch.zeros(B, R, dtype=torch.long, device=work.device)  # (B, R)
    rem = bud.clone()  # (B,)
    rows = torch.arange(B, device=work.device)
    for _ in range(R * (L - 1)):
        du = work - work.gather(-1, cur[..., None])  # (B, R, L)
        dw = lv[None, None, :] - lv[cur][..., None]  # (B, R, L)
        ok = (dw > 0) & (dw <= rem[:, None, None]) & (du > 0)
        ratio = torch.where(ok, du / dw.clamp(min=1).to(work.dtype), work.new_tensor(-math.inf))
        val, arg = ratio.reshape(B, -1).max(dim=1)  # (B,)
        go = torch.isfinite(val)
        if not go.any():
            break
        r, l = arg // L, arg % L
        new_l = torch.where(go, l, cur[rows, r])
        rem = rem - torch.where(go, lv[l] - lv[cur[rows, r]], torch.zeros_like(rem))
        cur[rows, r] = new_l
    return cur


def solve_brute_force(table: Tensor, levels: Sequence[int], budget, max_combinations: int = 2_000_000
                      ) -> Allocation:
    """Exhaustive search over all L**R assignments (for verification; raises if too many)."""
    lv, bud, B, R = _prepare(table, levels, budget)
    max_combinations = check_int(max_combinations, "max_combinations", minimum=1)
    L = lv.numel()
    if L ** R > max_combinations:
        raise ValueError(f"brute force over {L}**{R} combinations exceeds max_combinations={max_combinations}")
    combos = torch.tensor(list(itertools.product(range(L), repeat=R)), dtype=torch.long,
                          device=table.device)  # (N, R)
    tokens = lv[combos].sum(-1)  # (N,)
    util = table[:, torch.arange(R, device=table.device)[None, :], combos].sum(-1)  # (B, N)
    util = util.masked_fill(tokens[None, :] > bud[:, None], -math.inf)
    best = util.argmax(dim=1)  # (B,)
    return _finish(table, lv, combos[best], bud, "brute_force")


def solve(table: Tensor, levels: Sequence[int], budget, solver: str = "dp") -> Allocation:
    """Dispatch to ``solve_dp`` ("dp") or ``solve_greedy`` ("greedy")."""
    if solver == "dp":
        return solve_dp(table, levels, budget)
    if solver == "greedy":
        return solve_greedy(table, levels, budget)
    raise ValueError(f"solver must be 'dp' or 'greedy', got {solver!r}")


def solve_unchecked(table: Tensor, lv: Tensor, bud: Tensor, solver: str) -> Allocation:
    """:func:`solve` for checked inputs: table (B, R, L), lv (L,) long levels, bud (B,) long."""
    idx = dp_levels(table.detach(), lv, bud) if solver == "dp" else greedy_levels(table.detach(), lv, bud)
    return _finish(table, lv, idx, bud, solver)


# ----------------------------------------------------------------------------- baselines

def allocate_uniform(table: Tensor, levels: Sequence[int], budget) -> Allocation:
    """Every region gets the same level: the largest one with R * level <= budget."""
    lv, bud, B, R = _prepare(table, levels, budget)
    j = torch.searchsorted(lv, (bud // R)[:, None], right=True) - 1  # (B, 1)
    idx = j.expand(B, R).clone()
    idx = torch.where(torch.isfinite(table.gather(-1, idx[..., None]).squeeze(-1)), idx, 0)
    return _finish(table, lv, idx, bud, "uniform")


def _fill_in_order(table, lv, bud, order, pick):
    B, R, L = table.shape
    rows = torch.arange(B, device=table.device)
    idx = torch.zeros(B, R, dtype=torch.long, device=table.device)
    rem = bud.clone()
    for j in range(R):
        reg = order[:, j]  # (B,)
        feasible = (lv[None, :] <= rem[:, None]) & torch.isfinite(table[rows, reg])  # (B, L)
        c = pick(feasible)  # (B,)
        idx[rows, reg] = c
        rem = rem - lv[c]
    return idx


def allocate_random(table: Tensor, levels: Sequence[int], budget, generator: torch.Generator
                    ) -> Allocation:
    """Regions in random order, each gets a uniformly random level among those that still fit."""
    lv, bud, B, R = _prepare(table, levels, budget)
    check_generator(generator)
    order = torch.rand(B, R, generator=generator, device=table.device).argsort(dim=1)  # (B, R)

    def pick(feasible):
        return torch.multinomial(feasible.to(table.dtype), 1, generator=generator).squeeze(1)

    return _finish(table, lv, _fill_in_order(table, lv, bud, order, pick), bud, "random")


def allocate_top_k(table: Tensor, levels: Sequence[int], budget, scores: Tensor,
                   name: str = "top_k") -> Allocation:
    """Regions by descending score (e.g. salience only, or query attention only); each gets the
    largest level that still fits, so the top regions get the largest level and the rest what is left."""
    lv, bud, B, R = _prepare(table, levels, budget)
    if not isinstance(scores, Tensor) or scores.shape != (B, R):
        raise ValueError(f"scores must be a tensor of shape ({B}, {R}), got "
                         f"{tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__}")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    order = scores.argsort(dim=1, descending=True, stable=True)  # (B, R)
    ar = torch.arange(lv.numel(), device=table.device)

    def pick(feasible):
        return torch.where(feasible, ar, -1).max(dim=1).values

    return _finish(table, lv, _fill_in_order(table, lv, bud, order, pick), bud, name)
