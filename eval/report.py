"""Check-set numbers from the runner's records: one ``PolicyMetrics`` per (policy, budget, subset).

Subsets: "object" (questions that name an object; the headline numbers) and "spatial" (questions
that name a corner; reported separately). Question sensitivity is computed on object questions
only, over ordered pairs (A, B) of questions about different objects of the same scene whose target
regions do not overlap.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from .metrics import (binomial_se, hit_at_top, hit_at_top_chance, question_moved, question_moved_chance,
                      target_mask, target_share, top_level_mask, uniform_share)

__all__ = ["PolicyMetrics", "CheckSetResult", "summarise", "one_region_chance", "object_chance", "scene_summary", "SUBSETS"]

SUBSETS = ("object", "spatial")


@dataclass
class PolicyMetrics:
    policy: str
    budget: int
    subset: str
    n: int                         # questions
    hit_at_top: float              # fraction of questions
    hit_at_top_se: float           # binomial standard error
    hit_chance: float              # mean exact chance under random permutations of the same allocations
    top_level_regions: float       # mean number of regions sharing the top level
    target_share: float            # mean target tokens / region tokens
    uniform_share: float           # mean t / R
    share_ratio: float             # target_share / uniform_share
    mean_tokens: float             # mean region tokens allocated
    n_pairs: int = 0               # question pairs (object subset)
    moved: float | None = None     # question sensitivity: fraction of pairs moved towards A's target
    moved_chance: float | None = None
    relevance_moved: float | None = None  # same on the posterior relevance mean (model rows)
    relevance_top: float | None = None    # the highest relevance mean is on a target region (model rows)

    def to_dict(self) -> dict:
        return asdict(self)


def one_region_chance(scenes, subset: str) -> float:
    """Mean t / R: the hit rate of a policy that gives its top level to one random region."""
    qs = [(q, s) for s in scenes for q in s.questions if q.kind == subset]
    return sum(len(q.targets) / s.num_regions for q, s in qs) / max(len(qs), 1)


def object_chance(scenes) -> float:
    """Mean 1 / (objects in the scene) over object questions: the hit rate of a question-blind
    policy that finds the scene's objects and gives the top level to one of them at random (the
    reference for "finds objects but ignores the question")."""
    qs = [len(s.objects) for s in scenes for q in s.questions if q.kind == "object"]
    return sum(1 / n for n in qs) / max(len(qs), 1)


def _pct(v) -> str:
    return "    -" if v is None else f"{100 * v:5.1f}"


@dataclass
class CheckSetResult:
    metrics: list                  # PolicyMetrics
    scenes: list                   # per scene: objects and questions (JSON-safe dicts)
    records: list                  # runner Records as dicts
    checkset_config: dict
    eval_config: dict
    one_region: dict               # subset -> one_region_chance, "object_blind" -> object_chance
    runtime_s: float = 0.0
    environment: dict = field(default_factory=dict)

    def table(self) -> str:
        lines = []
        by_key = {}
        for m in self.metrics:
            by_key.setdefault((m.budget, m.subset), []).append(m)
        for (budget, subset), rows in by_key.items():
            ref = self.one_region[subset]
            extra = (f"; a random object of the scene {100 * self.one_region['object_blind']:.1f} %"
                     if subset == "object" and "object_blind" in self.one_region else "")
            lines.append(f"budget {budget} tokens · {subset} questions (n={rows[0].n}; one random top region "
                         f"hits {100 * ref:.1f} %{extra})")
            lines.append(f"  {'policy':<24}{'hit@top %':>10}{'±se':>6}{'chance %':>10}{'top-k':>7}"
                         f"{'share %':>9}{'unif %':>8}{'ratio':>7}{'tokens':>8}{'moved %':>9}{'chance %':>10}"
                         f"{'rel-moved %':>13}{'rel@top %':>11}")
            for m in rows:
                lines.append(f"  {m.policy:<24}{_pct(m.hit_at_top):>10}{100 * m.hit_at_top_se:>6.1f}"
                             f"{_pct(m.hit_chance):>10}{m.top_level_regions:>7.1f}{_pct(m.target_share):>9}"
                             f"{_pct(m.uniform_share):>8}{m.share_ratio:>7.2f}{m.mean_tokens:>8.0f}"
                             f"{_pct(m.moved):>9}{_pct(m.moved_chance):>10}{_pct(m.relevance_moved):>13}"
                             f"{_pct(m.relevance_top):>11}")
            lines.append("")
        lines += ["hit@top: top level held by <= 2 regions, one of them a target; chance: the same allocation",
                  "  permuted at random over the regions; top-k: regions sharing the top level; share: target tokens /",
                  "  region tokens, unif: t/R (tokens spread evenly), ratio = share / unif; moved: question A's target",
                  "  gets more tokens under A than under question B about another object of the scene, chance: both",
                  "  allocations permuted at random; rel-moved: the same on the relevance mean; rel@top: the highest",
                  "  relevance mean is on a target (chance = one random top region)."]
        if any(m.policy == "uniform" and m.mean_tokens == 0 for m in self.metrics):
            lines.append("uniform (the allocator's baseline) gives every region one level; where 16 x 64 tokens do "
                         "not fit the budget it allocates nothing.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table() + f"\nruntime {self.runtime_s:.0f} s"

    def to_dict(self) -> dict:
        return {"checkset_config": self.checkset_config, "eval_config": self.eval_config,
                "environment": self.environment, "runtime_s": round(self.runtime_s, 1),
                "one_region_chance": self.one_region,
                "metrics": [m.to_dict() for m in self.metrics], "scenes": self.scenes, "records": self.records}

    def get(self, policy: str, budget: int, subset: str = "object") -> PolicyMetrics:
        for m in self.metrics:
            if (m.policy, m.budget, m.subset) == (policy, budget, subset):
                return m
        raise KeyError(f"no metrics for policy={policy!r}, budget={budget}, subset={subset!r}")


def scene_summary(scene) -> dict:
    return {"index": scene.index, "num_regions": scene.num_regions,
            "objects": [{"key": o.key, "name": o.name, "shape": list(o.shape), "box": list(o.box),
                         "regions": list(o.regions), "coverage": list(o.coverage), "words": o.words}
                        for o in scene.objects],
            "questions": [{"text": q.text, "object": q.object_key, "targets": list(q.targets), "kind": q.kind,
                           "reading": q.reading} for q in scene.questions],
            "clutter": list(scene.clutter)}


def _pairs(scenes, keys: dict, policy: str, budget: int):
    """Ordered pairs (A, B) of object questions of one scene with disjoint targets -> index lists."""
    a_idx, b_idx, tgt = [], [], []
    for s in scenes:
        obj = [i for i, q in enumerate(s.questions) if q.kind == "object"]
        for i in obj:
            for j in obj:
                if i != j and not set(s.questions[i].targets) & set(s.questions[j].targets):
                    a_idx.append(keys[(policy, budget, s.index, i)])
                    b_idx.append(keys[(policy, budget, s.index, j)])
                    tgt.append(s.questions[i].targets)
    return a_idx, b_idx, tgt


def summarise(records, scenes, policies, budgets, max_ties: int = 2) -> list[PolicyMetrics]:
    """PolicyMetrics for every policy x budget x subset present in the records."""
    keys = {(r.policy, r.budget, r.scene, r.question): k for k, r in enumerate(records)}
    by_index = {s.index: s for s in scenes}
    R = scenes[0].num_regions
    out = []
    for budget in budgets:
        for subset in SUBSETS:
            for policy in policies:
                rows = [r for r in records if r.policy == policy and r.budget == budget
                        and by_index[r.scene].questions[r.question].kind == subset]
                if not rows:
                    continue
                alloc = torch.tensor([r.allocation for r in rows], dtype=torch.long)  # (N, R)
                tg = target_mask([by_index[r.scene].questions[r.question].targets for r in rows], R)  # (N, R)
                hit = hit_at_top(alloc, tg, max_ties).double().mean().item()
                share = target_share(alloc, tg).mean().item()
                ushare = uniform_share(tg).mean().item()
                m = PolicyMetrics(policy, budget, subset, len(rows), hit, binomial_se(hit, len(rows)),
                                  hit_at_top_chance(alloc, tg, max_ties).mean().item(),
                                  top_level_mask(alloc).sum(1).double().mean().item(), share, ushare,
                                  share / ushare, alloc.sum(1).double().mean().item())
                if subset == "object":
                    a_idx, b_idx, tgt = _pairs(scenes, keys, policy, budget)
                    if a_idx:
                        own = torch.tensor([records[k].allocation for k in a_idx], dtype=torch.long)  # (P, R)
                        other = torch.tensor([records[k].allocation for k in b_idx], dtype=torch.long)  # (P, R)
                        pt = target_mask(tgt, R)  # (P, R)
                        m.n_pairs = len(a_idx)
                        m.moved = question_moved(own, other, pt).double().mean().item()
                        m.moved_chance = question_moved_chance(own, other, pt).mean().item()
                        if records[a_idx[0]].relevance is not None:
                            ra = torch.tensor([records[k].relevance for k in a_idx], dtype=torch.float64)
                            rb = torch.tensor([records[k].relevance for k in b_idx], dtype=torch.float64)
                            pf = pt.double()
                            gain = ((ra - rb) * pf).sum(1) / pf.sum(1)  # (P,) mean relevance change on A's target
                            m.relevance_moved = (gain > 0).double().mean().item()
                if rows[0].relevance is not None:
                    rel = torch.tensor([r.relevance for r in rows], dtype=torch.float64)  # (N, R)
                    m.relevance_top = tg.gather(1, rel.argmax(1, keepdim=True)).double().mean().item()
                if not all(math.isfinite(v) for v in (m.hit_at_top, m.target_share, m.share_ratio)):
                    raise FloatingPointError(f"non-finite metric for {policy} at budget {budget}")
                out.append(m)
    return out
