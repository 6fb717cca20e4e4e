"""Run the model and the allocator's baselines over the check set and collect every allocation.

Driver only (the numbers are computed in ``report.py`` from the records collected here). For each
scene, budget and mode the model sees the scene once per question, exactly as a user calls it:
``model(pixel_values, queries=[question], budget=..., generator=..., deterministic=...)``.

Seeds: Thompson mode uses one generator seed per (scene, budget), the same for every question of
the scene (common random numbers), so a change of allocation between two questions is caused by the
question, not by a different draw; a question-blind policy therefore scores 0 on question
sensitivity. The "random" baseline draws with a seed per (scene, question, budget) instead: it is
the reference of a policy whose tokens move at random with the question.

Allocation-only runs: with one round the allocation is decided before any region is encoded, and
encoding is ~90 % of a CPU forward pass. So by default the forward pass is stopped as soon as
``model.allocator`` has returned (a forward hook raises), and allocation and relevance are read
from the allocator's output. The first scene's first question is also run through the full forward
pass at every budget and mode, and a disagreement is an error (then use ``full_forward=True``).

Baselines come from ``RelevanceAllocator.allocate_baseline`` on the allocator output of the model's
own forward pass (captured with a forward hook on ``model.allocator``, so they see exactly the
scores the model saw). "no-query/*" rows run the model with no question at all: what the bottom-up
channels alone do.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch

__all__ = ["EvalConfig", "Record", "AllocationProbe", "run_checkset", "policy_names", "derive_seed"]

_MODES = ("deterministic", "thompson")


@dataclass(frozen=True)
class EvalConfig:
    """What is evaluated (each default with its reason).

    budgets: total tokens per image (global 64 + regions); 640 and 1024 are the issue's budgets
        (1024 = a quarter of full detail, 16 x 256 tokens).
    modes: the model's two decision modes: posterior mean (reproducible) and a seeded Thompson draw.
    baselines: the allocator's evaluation baselines (``arrcoc.relevance.allocator.BASELINES``).
    no_query: also run the model without a question (bottom-up evidence only), a reference for how
        much of a hit the question itself earns.
    seed: seeds the Thompson draws and the random baseline (see the module docstring).
    max_ties: hit@top allows at most this many regions to share the top level.
    full_forward: run the whole forward pass (region encoding included) for every question instead
        of stopping after the allocation (module docstring); always on when num_rounds > 1.
    """

    budgets: tuple = (640, 1024)
    modes: tuple = _MODES
    baselines: tuple = ("uniform", "random", "top_k_salience", "top_k_query")
    no_query: bool = True
    seed: int = 0
    max_ties: int = 2
    full_forward: bool = False

    def __post_init__(self):
        from arrcoc.bayes._validate import check_int

        if not isinstance(self.budgets, tuple) or not self.budgets:
            raise TypeError(f"budgets must be a non-empty tuple of ints, got {self.budgets!r}")
        object.__setattr__(self, "budgets", tuple(check_int(b, f"budgets[{i}]", minimum=1)
                                                  for i, b in enumerate(self.budgets)))
        if len(set(self.budgets)) != len(self.budgets):
            raise ValueError(f"budgets must not repeat, got {self.budgets}")
        if not isinstance(self.modes, tuple) or not self.modes or any(m not in _MODES for m in self.modes):
            raise ValueError(f"modes must be a non-empty tuple drawn from {_MODES}, got {self.modes!r}")
        if not isinstance(self.baselines, tuple):
            raise TypeError(f"baselines must be a tuple of names, got {self.baselines!r}")
        if not isinstance(self.no_query, bool):
            raise TypeError(f"no_query must be a bool, got {type(self.no_query).__name__}")
        check_int(self.seed, "seed", minimum=0)
        check_int(self.max_ties, "max_ties", minimum=1)
        if not isinstance(self.full_forward, bool):
            raise TypeError(f"full_forward must be a bool, got {type(self.full_forward).__name__}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class Record(NamedTuple):
    policy: str                  # e.g. "arrcoc/deterministic", "no-query/thompson", "top_k_salience"
    budget: int                  # total tokens per image
    scene: int                   # Scene.index
    question: int                # index into Scene.questions
    allocation: tuple            # (R,) tokens per region
    relevance: tuple | None      # (R,) posterior relevance mean (model rows), else None


def policy_names(config: EvalConfig) -> list[str]:
    """Row names in report order."""
    names = [f"arrcoc/{m}" for m in config.modes]
    if config.no_query:
        names += [f"no-query/{m}" for m in config.modes]
    return names + list(config.baselines)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts (stable across processes and platforms)."""
    s = 0x5EED
    for p in parts:
        s = (s * 1_000_003 + int(p) + 1) % (2 ** 63 - 1)
    return s


def _check_inputs(model, processor, scenes, config: EvalConfig):
    from arrcoc.relevance.allocator import BASELINES

    if not isinstance(config, EvalConfig):
        raise TypeError(f"config must be an EvalConfig, got {type(config).__name__}")
    unknown = [b for b in config.baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; the allocator has {BASELINES}")
    if not scenes:
        raise ValueError("scenes must not be empty")
    grid = model.config.grid
    bad = [s.index for s in scenes if s.grid != grid]
    if bad:
        raise ValueError(f"scenes {bad} were built for another grid than the model's {grid}x{grid}")
    g = model.config.global_tokens
    low = [b for b in config.budgets if b < g]
    if low:
        raise ValueError(f"budgets {low} are below the global thumbnail's {g} tokens")
    if getattr(processor, "grid", grid) != grid:
        raise ValueError(f"processor grid {processor.grid} != model grid {grid}")


class _AllocationReached(Exception):
    """Raised by the forward hook to stop a forward pass once the allocation is known."""


class AllocationProbe:
    """Calls the model as a user does and reads its allocation; a context manager that holds a
    forward hook on ``model.allocator`` while open.

    ``probe(pixels, query, budget, seed, deterministic, full=None)`` -> (allocation (R,) tuple,
    relevance mean (R,) tuple, the allocator's RelevanceOutput). Unless ``full`` (default: the
    probe's ``full_forward``, forced on when ``num_rounds > 1``) the pass stops after the allocator.
    """

    def __init__(self, model, full_forward: bool = False):
        self.model = model
        self.full = bool(full_forward) or model.config.num_rounds != 1
        self._captured: list = []
        self._stop = False
        self._handle = None

    def _hook(self, _module, _args, out):
        self._captured.append(out)
        if self._stop:
            raise _AllocationReached()

    def __enter__(self):
        self._handle = self.model.allocator.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()
        self._handle = None
        return False

    def __call__(self, pixels, query, budget: int, seed: int, deterministic: bool, full: bool | None = None):
        if self._handle is None:
            raise RuntimeError("use AllocationProbe as a context manager (with AllocationProbe(model) as probe: ...)")
        self._captured.clear()
        self._stop = not (self.full if full is None else full)
        try:
            with torch.no_grad():
                out = self.model(pixels, queries=query, budget=budget, deterministic=deterministic,
                                 generator=torch.Generator().manual_seed(seed))
        except _AllocationReached:
            out = None
        if not self._captured:
            raise RuntimeError("model.allocator was not called as a module in forward; the check set reads its "
                               "RelevanceOutput through a forward hook")
        rel = self._captured[0]
        src = rel if out is None else out
        return tuple(src.allocation[0].tolist()), tuple(src.relevance_mean[0].tolist()), rel


def run_checkset(model, processor, scenes, config: EvalConfig | None = None, progress: bool = True) -> list[Record]:
    """Every policy's allocation for every (budget, scene, question). ``model`` in eval mode."""
    from tqdm.auto import tqdm

    config = EvalConfig() if config is None else config
    _check_inputs(model, processor, scenes, config)
    n_fwd = sum(len(s.questions) + int(config.no_query) for s in scenes) * len(config.budgets) * len(config.modes)
    records: list[Record] = []
    g_tokens = model.config.global_tokens
    with AllocationProbe(model, config.full_forward) as probe, \
            tqdm(total=n_fwd, desc="check set", unit="fwd", disable=not progress) as bar:
        for scene in scenes:
            pixels = processor(scene.image)["pixel_values"]  # (1, 3, S, S)
            for budget in config.budgets:
                for m, mode in enumerate(config.modes):
                    crn = derive_seed(config.seed, scene.index, budget, m)
                    det = mode == "deterministic"
                    for qi, q in enumerate(scene.questions):
                        alloc, relevance, rel = probe(pixels, [q.text], budget, crn, det)
                        bar.update(1)
                        if not probe.full and scene is scenes[0] and qi == 0:
                            ref, _, _ = probe(pixels, [q.text], budget, crn, det, full=True)
                            if ref != alloc:
                                raise RuntimeError(
                                    f"allocation-only run gave {list(alloc)} but the full forward pass {list(ref)} "
                                    f"(budget {budget}, {mode}); the model changes the allocation after its "
                                    "allocator: run with EvalConfig(full_forward=True) / --full-forward")
                        records.append(Record(f"arrcoc/{mode}", budget, scene.index, qi, alloc, relevance))
                        if m == 0:
                            records += _baselines(model, rel, config, budget - g_tokens, scene, qi, budget)
                    if config.no_query:
                        alloc, relevance, _ = probe(pixels, None, budget, crn, det)
                        bar.update(1)
                        records += [Record(f"no-query/{mode}", budget, scene.index, qi, alloc, relevance)
                                    for qi in range(len(scene.questions))]
    return records


def _baselines(model, rel, config: EvalConfig, region_budget: int, scene, qi: int, budget: int) -> list[Record]:
    # the allocator counts its budget as total tokens less its config.global_tokens (0 when it was
    # built to count region tokens only): give it what leaves exactly region_budget for the regions
    allocator_budget = region_budget + int(getattr(model.allocator.config, "global_tokens", 0))
    out = []
    for kind in config.baselines:
        gen = torch.Generator().manual_seed(derive_seed(config.seed, scene.index, budget, 100 + qi))
        alloc = model.allocator.allocate_baseline(rel, kind, budget=allocator_budget, generator=gen)
        out.append(Record(kind, budget, scene.index, qi, tuple(alloc.levels[0].tolist()), None))
    return out
