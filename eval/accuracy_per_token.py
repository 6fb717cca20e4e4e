"""Accuracy per visual token on the easy-vqa scenes: ARR-COC against the peers' policies.

``python -m eval.accuracy_per_token`` builds the scenes (``easyvqa_scenes``), encodes every level of
every region once (``token_cache``), trains a reader (``arrcoc.training.ReaderHead``, a stand-in for
an LLM) on the train split under a mix of allocations (full, random, uniform, ARR-COC Thompson at
random budgets, so it favours no policy), keeps the epoch with the best validation accuracy, then
scores every policy (``policies``) on the test split at each budget, for each seed. Writes
``eval/results/accuracy_per_token.json`` and a PNG of accuracy against visual tokens with
bootstrap 95 % intervals; per policy, the tokens needed to reach 95 % of full-detail accuracy.

Denominator: every test question (the builder emits no bad rows; a question is one row). Accuracy
is pooled over seeds; its interval resamples test questions (the same resample for every seed).
Nothing is tuned on the test split: the epoch is chosen on validation.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .easyvqa_scenes import ANSWERS, COLOURS, SHAPES, EasyVQAScenesConfig, build_scenes
from .policies import POLICIES, allocate_policy
from .resolvability import resolvability
from .token_cache import TokenBank, benchmark_config, calibrate_supervised, encode, rescore, score_questions, take_output

__all__ = ["RunConfig", "run", "summarise", "tokens_to_reach", "bootstrap_interval", "plot", "main"]

_MIX_POLICY = {"full": "full", "random": "random", "uniform": "uniform", "arrcoc": "arrcoc_thompson"}
# ARR-COC with its channel calibration fitted to the train split's target regions (``calibration``)
CALIBRATED = {"arrcoc_cal_thompson": "arrcoc_thompson", "arrcoc_cal_mean": "arrcoc_mean"}


@dataclass(frozen=True)
class RunConfig:
    """One benchmark run (each default with its reason).

    scenes: the scene builder's own default, 400 / 80 / 120 scenes (~2,060 / 410 / 620 questions):
        a reader trained from scratch needs the thousands (on 60 training scenes it never learned to
        look: validation accuracy 0.34-0.39 against 0.92 here at full detail).
    budget_fractions: total-token budgets as fractions of full detail (4 + 16 x 25 = 404 tokens):
        the issue's 10, 15, 25, 50, 100 %.
    seeds: 3 reader trainings (initialisation, batch order, training allocations) and policy draws.
    epochs: passes over the train split; 6 (the first ``warmup_full_epochs`` at full detail; the
        best validation epoch is kept).
    batch_size: 16 questions per step (~130 steps per epoch; the fresh reader needs updates more
        than it needs large batches).
    learning_rate: AdamW on the reader, 2e-3 with cosine decay (a 64-wide transformer).
    allocation_mix: training allocation policy weights (full, random, uniform, ARR-COC); the budgets
        of the budgeted ones are drawn from budget_fractions below 1.
    reader_dim, reader_layers: the ``ReaderHead``'s width and depth; 64 x 2 (a cross-talk layer and a
        readout layer; 128 wide costs 3x the CPU time and did not fit the budget).
    bootstrap: resamples of the test questions for the 95 % intervals.
    threads: torch threads; 1: next to other jobs on this 2-core box an epoch took 232 s at 2 threads
        and 35 s at 1.
    warmup_full_epochs: the first epochs train on full detail only, then the mix; 1. A fresh reader
        learns where to look fastest when every region has its tokens; straight into the mix, one
        of three seeds sat on a plateau for all 6 epochs (train loss 4.4 against 2.5, validation
        0.45 against 0.60 for the next seed) while full detail alone had it at 0.70 after 2.
    pointer_weight: weight of the reader's pointer loss (``ReaderHead.pointer_loss``: its region
        logits against the question's target region, a column the train split has); 1.0. Without it
        a 64-wide reader trained on a few thousand questions never learns where to look (the
        measured run of the first release: validation accuracy 0.34-0.39, at the thumbnail's level).
    attribute_weight: weight of an auxiliary per-token loss on the train split's scene labels (each
        visual token's state predicts its region's item shape and colour, or "none"); 1.0. An LLM
        arrives knowing shapes and colours; the fresh reader must learn them from ~1,600 items, and
        this gives it one label per token instead of one per question. Policy-neutral: the same
        labels whatever the allocation, and only at training time.
    calibration: "supervised" also scores ARR-COC with its channel calibration fitted to the train
        split's target regions (``token_cache.calibrate_supervised``: ``fit_supervised``, closed
        form), as the policies arrcoc_cal_*; the training mix's ARR-COC allocations then use it.
        "zero_shot": the pretrained default's calibration only.
    """

    scenes: EasyVQAScenesConfig = field(default_factory=EasyVQAScenesConfig)
    budget_fractions: tuple = (0.10, 0.15, 0.25, 0.50, 1.0)
    seeds: tuple = (0, 1, 2)
    epochs: int = 6
    batch_size: int = 16
    learning_rate: float = 2e-3
    allocation_mix: dict = field(default_factory=lambda: {"full": 1.0, "random": 1.0, "uniform": 1.0, "arrcoc": 1.0})
    reader_dim: int = 64
    reader_layers: int = 2
    bootstrap: int = 1000
    threads: int = 1
    calibration: str = "supervised"
    warmup_full_epochs: int = 1
    pointer_weight: float = 1.0
    attribute_weight: float = 1.0

    def __post_init__(self):
        from arrcoc._checks import check_int
        from arrcoc.bayes._validate import check_real

        if not isinstance(self.scenes, EasyVQAScenesConfig):
            raise TypeError(f"scenes must be an EasyVQAScenesConfig, got {type(self.scenes).__name__}")
        if not self.budget_fractions:
            raise ValueError("budget_fractions must not be empty")
        for f in self.budget_fractions:
            check_real(f, "budget_fractions", low=0.0, high=1.0, low_open=True)
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        for s in self.seeds:
            check_int(s, "seeds", minimum=0)
        for name in ("epochs", "batch_size", "bootstrap", "threads", "reader_dim", "reader_layers"):
            check_int(getattr(self, name), name, minimum=1)
        check_real(self.learning_rate, "learning_rate", low=0.0, low_open=True)
        check_int(self.warmup_full_epochs, "warmup_full_epochs", minimum=0)
        check_real(self.pointer_weight, "pointer_weight", low=0.0)
        check_real(self.attribute_weight, "attribute_weight", low=0.0)
        if not isinstance(self.allocation_mix, dict) or not self.allocation_mix:
            raise TypeError("allocation_mix must be a non-empty dict policy -> weight")
        for k, w in self.allocation_mix.items():
            if k not in _MIX_POLICY:
                raise ValueError(f"allocation_mix has unknown policy {k!r}; expected among {sorted(_MIX_POLICY)}")
            check_real(w, f"allocation_mix[{k!r}]", low=0.0)
        if sum(self.allocation_mix.values()) <= 0:
            raise ValueError("allocation_mix weights must not all be 0")
        if self.calibration not in ("zero_shot", "supervised"):
            raise ValueError(f"calibration must be 'zero_shot' or 'supervised', got {self.calibration!r}")


class _Split:
    """A split's token cache, plus its calibrated twin (same tokens, the posteriors under the
    supervised calibration) and whether the training mix's ARR-COC uses that one; its token bank
    (fast assembly), each question's target regions (Q, R) bool and each scene's region labels."""

    def __init__(self, cache, calibrated=None, train_calibrated=False, bank=None, targets=None, attributes=None):
        self.cache, self.calibrated, self.train_calibrated = cache, calibrated, train_calibrated
        self.bank, self.targets, self.attributes = bank, targets, attributes

    def __getattr__(self, name):
        return getattr(self.cache, name)


def _targets(scenes, num_regions: int) -> torch.Tensor:
    """(Q, R) bool: the regions holding each question's answer."""
    qs = [q for sc in scenes for q in sc.questions]
    out = torch.zeros(len(qs), num_regions, dtype=torch.bool)
    for i, q in enumerate(qs):
        out[i, list(q[2])] = True
    return out


def _attributes(scenes, num_regions: int) -> torch.Tensor:
    """(S, R, 2) long: each region's item shape (1 + index in SHAPES, 0 none) and colour (likewise)."""
    out = torch.zeros(len(scenes), num_regions, 2, dtype=torch.long)
    for i, sc in enumerate(scenes):
        for it in sc.items:
            out[i, it.cell] = torch.tensor([1 + SHAPES.index(it.shape), 1 + COLOURS.index(it.colour)])
    return out


def _labels(scenes) -> torch.Tensor:
    return torch.tensor([ANSWERS.index(q[1]) for sc in scenes for q in sc.questions], dtype=torch.long)


def _budgets(cache, fractions) -> list[int]:
    return [int(round(f * cache.full_tokens)) for f in fractions]


def _allocate(policy, model, cache, idx, budget, gen, mix: bool = False):
    """mix: an allocation of the training mix (its ARR-COC uses the calibrated posterior when there
    is one); scoring passes False, so arrcoc_* is the zero-shot posterior and arrcoc_cal_* the fitted one."""
    rel = cache.relevance
    if policy in CALIBRATED:
        policy, rel = CALIBRATED[policy], cache.calibrated.relevance
    elif mix and policy == "arrcoc_thompson" and cache.train_calibrated:
        rel = cache.calibrated.relevance
    out = take_output(rel, idx)
    feats = cache.region_features[cache.scene_of[idx]]  # (B, R, D)
    if policy == "full":
        budget = cache.full_tokens
    return allocate_policy(policy, model.allocator, out, budget, generator=gen, region_features=feats)


def _assemble(model, cache, idx, alloc):
    bank = getattr(cache, "bank", None)
    return bank.assemble(idx, alloc) if bank is not None else cache.assemble(model, idx, alloc)


def _logits(model, reader, cache, idx, alloc):
    hidden, mask, region = _assemble(model, cache, idx, alloc)  # (B, N, D), (B, N), (B, N)
    return reader(hidden, mask, region, cache.question_ids[idx], cache.question_mask[idx])  # (B, A)


def _train_loss(model, reader, probe, cache, labels, idx, alloc, run):
    """Answer cross-entropy + pointer loss + per-token attribute loss (see ``RunConfig``)."""
    hidden, mask, region = _assemble(model, cache, idx, alloc)  # (B, N, D), (B, N), (B, N)
    out = reader.forward_detailed(hidden, mask, region, cache.question_ids[idx], cache.question_mask[idx])
    loss = F.cross_entropy(out.logits, labels[idx])
    if run.pointer_weight > 0 and cache.targets is not None:
        loss = loss + run.pointer_weight * reader.pointer_loss(out.region_logits, cache.targets[idx])
    if run.attribute_weight > 0 and cache.attributes is not None:
        real = region >= 0  # (B, N) region tokens (not the thumbnail, not padding)
        if bool(real.any()):
            attr = cache.attributes[cache.scene_of[idx][:, None], region.clamp(min=0)]  # (B, N, 2)
            pred = probe(out.visual_states[real])  # (n, 1 + shapes + 1 + colours)
            k = 1 + len(SHAPES)
            loss = loss + run.attribute_weight * 0.5 * (
                F.cross_entropy(pred[:, :k], attr[..., 0][real]) + F.cross_entropy(pred[:, k:], attr[..., 1][real]))
    return loss


def _accuracy_under_mix(model, reader, cache, labels, run, budgets, gen) -> float:
    """Validation accuracy: each batch under a policy and budget drawn from the training mix."""
    reader.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), run.batch_size):
            idx = torch.arange(start, min(start + run.batch_size, len(labels)))
            policy, budget = _draw(run, budgets, gen)
            alloc = _allocate(policy, model, cache, idx, budget, gen, mix=True)
            correct += int((_logits(model, reader, cache, idx, alloc).argmax(-1) == labels[idx]).sum())
    return correct / max(1, len(labels))


def _draw(run, budgets, gen):
    names = list(run.allocation_mix)
    w = torch.tensor([float(run.allocation_mix[n]) for n in names])
    policy = _MIX_POLICY[names[int(torch.multinomial(w, 1, generator=gen))]]
    partial = [b for b, f in zip(budgets, run.budget_fractions) if f < 1.0] or budgets
    return policy, partial[int(torch.randint(len(partial), (1,), generator=gen))]


def _train_reader(model, train, val, run: RunConfig, seed: int, log=print):
    """The benchmark's training loop over cached tokens (train = (cache, labels), val likewise):
    AdamW + cosine schedule, one policy and budget per batch from the mix, best validation epoch kept."""
    from arrcoc.training.reader import ReaderConfig, ReaderHead

    (cache, labels), (vcache, vlabels) = train, val
    torch.manual_seed(seed)
    reader = ReaderHead(ReaderConfig.for_encoder(model, num_answers=len(ANSWERS), dim=run.reader_dim,
                                                 num_layers=run.reader_layers))
    probe = torch.nn.Linear(run.reader_dim, 1 + len(SHAPES) + 1 + len(COLOURS))  # the attribute head
    opt = torch.optim.AdamW(list(reader.parameters()) + list(probe.parameters()), lr=run.learning_rate,
                            weight_decay=0.01)
    steps = run.epochs * math.ceil(len(labels) / run.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    budgets = _budgets(cache, run.budget_fractions)
    best, best_state, history = -1.0, None, []
    for epoch in range(run.epochs):
        reader.train()
        perm = torch.randperm(len(labels), generator=gen)
        t0, loss_sum = time.time(), 0.0
        for start in range(0, len(labels), run.batch_size):
            idx = perm[start:start + run.batch_size]
            policy, budget = _draw(run, budgets, gen)
            if epoch < run.warmup_full_epochs:
                policy = "full"
            alloc = _allocate(policy, model, cache, idx, budget, gen, mix=True)
            loss = _train_loss(model, reader, probe, cache, labels, idx, alloc, run)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
        acc = _accuracy_under_mix(model, reader, vcache, vlabels, run, budgets, torch.Generator().manual_seed(seed + 1))
        history.append({"epoch": epoch, "loss": loss_sum / len(labels), "val_accuracy_mix": acc, "s": time.time() - t0})
        log(f"seed {seed} epoch {epoch}: loss {loss_sum / len(labels):.3f}, validation accuracy (mix) {acc:.3f}, "
            f"{time.time() - t0:.0f} s")
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in reader.state_dict().items()}
    reader.load_state_dict(best_state)
    return reader.eval(), history


def _score(model, reader, cache, labels, run, seed):
    """Per (policy, budget): per-question correctness and tokens per image on ``cache``. A batch
    whose allocation an earlier policy already gave it (every policy's is full detail at 100 %) is
    not read again: the same input, the same answers."""
    out, seen = {}, {}
    budgets = _budgets(cache, run.budget_fractions)
    with torch.inference_mode():
        for policy in _policies(cache):
            for budget in ([cache.full_tokens] if policy in ("full", "global_only") else budgets):
                gen = torch.Generator().manual_seed(seed * 1000 + budget)
                hits, tokens = [], []
                for start in range(0, len(labels), 128):
                    idx = torch.arange(start, min(start + 128, len(labels)))
                    alloc = _allocate(policy, model, cache, idx, budget, gen)
                    key = (start, tuple(alloc.shape), alloc.numpy().tobytes())
                    if key not in seen:
                        seen[key] = _logits(model, reader, cache, idx, alloc).argmax(-1) == labels[idx]
                    hits.append(seen[key])
                    tokens.append(cache.global_tokens.shape[1] + alloc.sum(-1))
                out[(policy, budget)] = (torch.cat(hits).numpy(), torch.cat(tokens).float().numpy())
    return out


def _policies(cache):
    return POLICIES + (tuple(CALIBRATED) if cache.calibrated is not None else ())


def bootstrap_interval(hits: np.ndarray, resamples: int, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``hits`` (seeds x questions: questions resampled,
    the same draw for every seed, then the mean over seeds and questions)."""
    hits = np.atleast_2d(np.asarray(hits, dtype=np.float64))
    rng = np.random.default_rng(seed)
    n = hits.shape[1]
    means = np.array([hits[:, rng.integers(0, n, n)].mean() for _ in range(resamples)])
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def tokens_to_reach(tokens, accuracy, target: float):
    """Fewest tokens at which the accuracy curve (points sorted by tokens, linearly interpolated)
    first reaches ``target``; None when it never does."""
    pts = sorted(zip(tokens, accuracy))
    for j, (t, a) in enumerate(pts):
        if a >= target:
            if j == 0:
                return float(t)
            t0, a0 = pts[j - 1]
            return float(t0 + (target - a0) / (a - a0) * (t - t0)) if a > a0 else float(t)
    return None


def summarise(per_seed: list, run: RunConfig, full_tokens: int) -> dict:
    """Pool the seeds: accuracy, 95 % interval, mean tokens per (policy, budget); tokens to 95 %."""
    rows = []
    for key in per_seed[0]:
        hits = np.stack([r[key][0] for r in per_seed])  # (seeds, Q)
        toks = np.stack([r[key][1] for r in per_seed])
        lo, hi = bootstrap_interval(hits, run.bootstrap)
        rows.append({"policy": key[0], "budget": int(key[1]), "budget_fraction": key[1] / full_tokens,
                     "accuracy": float(hits.mean()), "ci95": [lo, hi],
                     "accuracy_per_seed": [float(h.mean()) for h in hits],
                     "tokens_mean": float(toks.mean()), "questions": int(hits.shape[1])})
    full = next(r for r in rows if r["policy"] == "full")["accuracy"]
    reach = {}
    names = list(dict.fromkeys(r["policy"] for r in rows))
    for p in names:
        pts = [r for r in rows if r["policy"] == p]
        reach[p] = tokens_to_reach([r["tokens_mean"] for r in pts], [r["accuracy"] for r in pts], 0.95 * full)
    return {"rows": rows, "full_detail_accuracy": full, "tokens_to_95pct_of_full": reach}


def plot(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    names = list(dict.fromkeys(r["policy"] for r in summary["rows"]))
    colours = plt.cm.tab20(np.linspace(0, 1, max(len(names), 2)))
    for p, colour in zip(names, colours):
        pts = sorted((r for r in summary["rows"] if r["policy"] == p), key=lambda r: r["tokens_mean"])
        x = [r["tokens_mean"] for r in pts]
        y = [r["accuracy"] for r in pts]
        err = [[r["accuracy"] - r["ci95"][0] for r in pts], [r["ci95"][1] - r["accuracy"] for r in pts]]
        style = dict(marker="o", capsize=3, lw=2.2 if p.startswith("arrcoc") else 1.2, color=colour)
        if len(pts) == 1:
            ax.errorbar(x, y, yerr=err, ls="none", label=p, **style)
        else:
            ax.errorbar(x, y, yerr=err, label=p, **style)
    ax.axhline(0.95 * summary["full_detail_accuracy"], color="grey", ls=":", lw=1, label="95 % of full detail")
    ax.set_xscale("log")
    ax.set_xlabel("visual tokens per image (mean, global view included)")
    ax.set_ylabel("test accuracy")
    ax.set_title("easy-vqa scenes: accuracy per visual token (95 % bootstrap CI)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cache_key(config: RunConfig) -> str:
    import hashlib

    return hashlib.sha1(repr((asdict(config.scenes), benchmark_config().to_dict())).encode()).hexdigest()[:12]


def run(config: RunConfig | None = None, log=print, cache_dir: str | None = None) -> dict:
    """The whole benchmark; returns the JSON-able result (summary, timings, the setup).
    cache_dir: keep each split's encoded tokens there (a rerun with the same scenes and encoder
    reuses them); None encodes afresh."""
    from arrcoc.modeling import ARRCOCVisionModel
    from arrcoc.relevance.config import CHANNELS

    config = config or RunConfig()
    torch.set_num_threads(config.threads)
    times = {}
    t = time.time()
    model = ARRCOCVisionModel(benchmark_config()).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    splits, targets, built = {}, {}, {}
    for split in ("train", "validation", "test"):
        scenes = build_scenes(config.scenes, (split,))
        t1 = time.time()
        key = None if cache_dir is None else os.path.join(cache_dir, f"{split}-{_cache_key(config)}.pt")
        if key is not None and os.path.exists(key):
            cache = torch.load(key, weights_only=False)
        else:
            cache = encode(model, scenes, progress=lambda i, n: log(f"  {split}: encoded {i}/{n} scenes")
                           if i % 20 == 0 or i == n else None)
            if key is not None:
                os.makedirs(cache_dir, exist_ok=True)
                torch.save(cache, key)
        if cache.evidence is None:  # a cache from before the evidence was kept: the allocator's part again
            cache = score_questions(model, cache, scenes)
        R = model.config.num_regions
        splits[split] = (_Split(cache, bank=TokenBank(model, cache), targets=_targets(scenes, R),
                                attributes=_attributes(scenes, R) if split == "train" else None), _labels(scenes))
        targets[split] = [q[2] for sc in scenes for q in sc.questions]
        built[split] = scenes
        times[f"encode_{split}_s"] = time.time() - t1
        log(f"{split}: {len(scenes)} scenes, {len(splits[split][1])} questions, encoded in {time.time() - t1:.0f} s")
    times["build_and_encode_s"] = time.time() - t
    t = time.time()  # a diagnostic of the scenes (selects nothing): is the answer only in the region tokens?
    probe = resolvability((splits["train"][0].cache, built["train"]), (splits["test"][0].cache, built["test"]),
                          model.config.levels[1:])
    times["resolvability_s"] = time.time() - t
    log(f"oracle-location probe (test accuracy per view): {json.dumps(probe)}")
    calibration = None
    if config.calibration == "supervised":  # fitted on the train split's target regions only
        res = calibrate_supervised(model, splits["train"][0].cache, targets["train"])
        calibration = {"slope": res.slope.tolist(), "offset": res.offset.tolist(),
                       "precision": res.precision.tolist(), "mu_global": res.mu_global, "tau": res.tau,
                       "sigma": res.sigma}
        for split, (sp, _) in splits.items():
            sp.calibrated, sp.train_calibrated = rescore(model, sp.cache), True
        log("supervised calibration (train split), slopes: " + ", ".join(
            f"{c} {a:.2f}" for c, a in zip(CHANNELS, res.slope.tolist())))
    per_seed, histories = [], {}
    for seed in config.seeds:
        t = time.time()
        reader, histories[seed] = _train_reader(model, splits["train"], splits["validation"], config, seed, log)
        times[f"train_seed{seed}_s"] = time.time() - t
        t = time.time()
        per_seed.append(_score(model, reader, *splits["test"], config, seed))
        times[f"score_seed{seed}_s"] = time.time() - t
    summary = summarise(per_seed, config, splits["test"][0].full_tokens)
    cfg = asdict(config)
    return {"summary": summary, "timings_s": times, "training": histories, "config": cfg, "calibration": calibration,
            "resolvability_probe": probe,
            "encoder": {k: v for k, v in benchmark_config().to_dict().items()
                        if k in ("levels", "global_tokens", "glimpse_side", "grid", "image_size")},
            "questions": {s: int(len(splits[s][1])) for s in splits}, "denominator": "every test question"}


def _table(summary: dict) -> str:
    lines = ["| policy | budget (tokens) | tokens used | accuracy | 95 % CI |", "| --- | ---: | ---: | ---: | --- |"]
    order = list(dict.fromkeys(r["policy"] for r in summary["rows"]))
    for r in sorted(summary["rows"], key=lambda r: (order.index(r["policy"]), r["budget"])):
        lines.append(f"| {r['policy']} | {r['budget']} | {r['tokens_mean']:.0f} | {r['accuracy']:.3f} | "
                     f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.accuracy_per_token", description=__doc__.split("\n")[0])
    _d = RunConfig()
    ap.add_argument("--train-scenes", type=int, default=_d.scenes.num_train)
    ap.add_argument("--validation-scenes", type=int, default=_d.scenes.num_validation)
    ap.add_argument("--test-scenes", type=int, default=_d.scenes.num_test)
    ap.add_argument("--epochs", type=int, default=_d.epochs)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (see RunConfig.threads)")
    ap.add_argument("--reader-dim", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=_d.batch_size)
    ap.add_argument("--learning-rate", type=float, default=2e-3)
    ap.add_argument("--calibration", choices=("supervised", "zero_shot"), default="supervised")
    ap.add_argument("--cache-dir", default=None, help="keep / reuse the encoded tokens here (e.g. out/easyvqa_cache)")
    ap.add_argument("--out", default="eval/results/accuracy_per_token.json")
    ap.add_argument("--png", default="eval/results/accuracy_per_token.png")
    a = ap.parse_args(argv)
    try:
        cfg = RunConfig(scenes=EasyVQAScenesConfig(num_train=a.train_scenes, num_validation=a.validation_scenes,
                                                   num_test=a.test_scenes),
                        epochs=a.epochs, seeds=tuple(a.seeds), threads=a.threads, reader_dim=a.reader_dim,
                        calibration=a.calibration, batch_size=a.batch_size,
                        learning_rate=a.learning_rate)
    except (TypeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t = time.time()
    res = run(cfg, log=lambda s: print(s, flush=True), cache_dir=a.cache_dir)
    res["timings_s"]["total_s"] = time.time() - t
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    plot(res["summary"], a.png)
    print(_table(res["summary"]))
    print("tokens to reach 95 % of full-detail accuracy:", json.dumps(res["summary"]["tokens_to_95pct_of_full"]))
    print(f"wrote {a.out} and {a.png} in {time.time() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
