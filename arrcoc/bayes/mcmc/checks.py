"""Loud diagnostics for a finished run: what ``sample`` warns about and keeps in ``MCMCResult``.

After every run ``sample`` checks, with the thresholds of ``DiagnosticsConfig``:

* divergent transitions after warmup, and draws whose trajectory stopped at the kernel's length cap
  (NUTS' max tree depth);
* rank-normalised split R-hat above 1.01 and bulk or tail ESS below 100 per chain (Vehtari, Gelman,
  Simpson, Carpenter and Buerkner 2021), on the constrained scalar parameters;
* a chain whose mean of some parameter sits far from the other chains' (a chain in another mode);
* a chain stuck at the end of warmup: its log density over the last part of warmup far below the
  other chains' (checked at the warmup / sampling boundary, from the draws warmup visited);
* runaway draws: an unconstrained coordinate whose draws wander like a random walk (a variance ratio
  near 1: nothing pulls the chains back), the signature of an improper posterior (a parameter with no
  proper prior) or of chains that mix far too slowly.

Each finding is one ``MCMCWarning`` (a kind, the chains concerned, a one-line message with the
numbers), issued as a Python warning of category ``MCMCDiagnosticWarning`` unless
``sample(..., warn=False)``; the numbers behind them are a ``RunDiagnostics``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ._validate import check_positive, check_real

__all__ = ["MCMCDiagnosticWarning", "MCMCWarning", "DiagnosticsConfig", "RunDiagnostics", "diagnose",
           "stuck_chains", "scalar_parameters"]


class MCMCDiagnosticWarning(UserWarning):
    """The category of ``sample``'s diagnostic warnings (``warnings.filterwarnings`` can select it)."""


@dataclass(frozen=True)
class MCMCWarning:
    """One diagnostic finding of a run."""
    kind: str                       # divergences, max_tree_depth, rhat, ess_bulk, ess_tail, chain_mean,
    #                                 stuck_chain, runaway
    message: str                    # one line, with the numbers
    chains: tuple[int, ...] = ()    # the chains concerned (empty: all / the run as a whole)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Thresholds of the post-run checks (the module docstring lists them)."""
    max_rhat: float = 1.01            # Vehtari et al. (2021): rank R-hat above 1.01 means the chains disagree
    min_ess_per_chain: float = 100.0  # Vehtari et al. (2021): bulk and tail ESS of at least 100 per chain
    # a chain mean more than one posterior sd from the others' median: with the 100 effective draws per
    # chain asked above, a chain mean's Monte Carlo error is ~0.1 sd, so this is another region, not noise
    chain_mean_sd: float = 1.0
    # warmup-end log density 5 within-chain sds below the other chains' median: a log density's sd is
    # ~sqrt(d / 2), and a chain in the same region as the others is within a few sds of them
    stuck_logdensity_sd: float = 5.0
    stuck_window: float = 0.25        # the last quarter of warmup: past the first, largest adaptation moves
    # variance ratio at lag S / 4 (checks._runaway): ~1 for a random walk (an improper direction), ~0
    # for a stationary chain; 0.3 leaves room for the estimate's noise on both sides
    runaway_variance_ratio: float = 0.3

    def __post_init__(self):
        check_real(self.max_rhat, "max_rhat", low=1.0, low_open=True)
        check_real(self.min_ess_per_chain, "min_ess_per_chain", low=0.0)
        check_positive(self.chain_mean_sd, "chain_mean_sd")
        check_positive(self.stuck_logdensity_sd, "stuck_logdensity_sd")
        check_real(self.stuck_window, "stuck_window", low=0.0, high=1.0, low_open=True)
        check_positive(self.runaway_variance_ratio, "runaway_variance_ratio")


@dataclass
class RunDiagnostics:
    """The numbers behind the checks (NaN / None where a check could not run, e.g. one chain)."""
    num_chains: int
    num_draws: int                                   # per chain, after warmup
    num_divergent: int = 0
    num_max_depth: int | None = None                 # None: the kernel has no length cap
    max_rhat: float = math.nan
    max_rhat_parameter: str | None = None
    min_ess_bulk: float = math.nan
    min_ess_bulk_parameter: str | None = None
    min_ess_tail: float = math.nan
    min_ess_tail_parameter: str | None = None
    warmup_logdensity: list[float] | None = None     # per chain: mean log density over the warmup's end
    stuck_chains: list[int] = field(default_factory=list)
    runaway_coordinates: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        def num(v, fmt):
            return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)
        lines = [f"{self.num_chains} chains x {self.num_draws} draws",
                 f"divergent: {self.num_divergent}" + ("" if self.num_max_depth is None
                                                      else f"   at max tree depth: {self.num_max_depth}"),
                 f"max R-hat: {num(self.max_rhat, '.4f')} ({self.max_rhat_parameter or '-'})",
                 f"min bulk ESS: {num(self.min_ess_bulk, '.1f')} ({self.min_ess_bulk_parameter or '-'})"
                 f"   min tail ESS: {num(self.min_ess_tail, '.1f')} ({self.min_ess_tail_parameter or '-'})"]
        if self.warmup_logdensity is not None:
            lines.append("warmup-end log density per chain: " + ", ".join(f"{v:.2f}" for v in self.warmup_logdensity))
        if self.stuck_chains:
            lines.append(f"stuck chains: {self.stuck_chains}")
        if self.runaway_coordinates:
            lines.append(f"runaway unconstrained coordinates: {self.runaway_coordinates}")
        return "\n".join(lines)


def scalar_parameters(draws: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
    """Constrained draws name -> (C, S, *shape) as one (C, S, P) float64 tensor and the P names."""
    columns, names = [], []
    for name, v in draws.items():
        C, S = v.shape[:2]
        flat = v.reshape(C, S, -1).to(torch.float64)
        columns.append(flat)
        shape = tuple(v.shape[2:])
        if not shape:
            names.append(name)
        else:
            for index in torch.cartesian_prod(*[torch.arange(n) for n in shape]).reshape(-1, len(shape)).tolist():
                names.append(f"{name}[{','.join(str(i) for i in index)}]")
    return torch.cat(columns, -1), names


def stuck_chains(warmup_logdensity: torch.Tensor, cfg: DiagnosticsConfig):
    """Chains whose log density over the end of warmup lies far below the others'.  warmup_logdensity
    (C, W).  Returns (window means (C,) or None, flagged chain indices, their z-scores)."""
    C, W = warmup_logdensity.shape
    n = int(math.ceil(cfg.stuck_window * W))
    if C < 2 or n < 10:
        return None, [], []
    tail = warmup_logdensity[:, -n:].to(torch.float64)               # (C, n)
    if not bool(torch.isfinite(tail).all()):
        return None, [], []
    means, sd = tail.mean(1), tail.std(1)                              # (C,)
    pooled = float(sd.pow(2).mean().sqrt()) or 1.0
    flagged, zs = [], []
    for c in range(C):
        others = torch.cat([means[:c], means[c + 1:]])
        z = (float(means[c]) - float(others.median())) / pooled
        if z < -cfg.stuck_logdensity_sd:
            flagged.append(c)
            zs.append(z)
    return means, flagged, zs


def _chain_list(chains) -> str:
    return ", ".join(str(c) for c in chains)


def diagnose(draws: dict[str, torch.Tensor], unconstrained: torch.Tensor, info: dict[str, torch.Tensor],
             max_depth_hits: torch.Tensor | None, warmup_logdensity: torch.Tensor | None,
             cfg: DiagnosticsConfig) -> tuple[RunDiagnostics, list[MCMCWarning]]:
    """Run every check on a finished run (see the module docstring)."""
    from arrcoc.bayes.diagnostics import ess, rhat
    C, S = unconstrained.shape[:2]
    diag = RunDiagnostics(C, S)
    found: list[MCMCWarning] = []
    # ---- sampler statistics
    divergent = info.get("is_divergent")
    if divergent is not None and divergent.dim() == 2:
        diag.num_divergent = _count_flagged(divergent, "divergences", "were divergent",
                                            "raise target_accept or reparameterise", found)
    if max_depth_hits is not None:
        diag.num_max_depth = _count_flagged(max_depth_hits, "max_tree_depth", "stopped at the maximum tree depth",
                                            "trajectories are cut short", found)
    # ---- warmup / sampling boundary
    if warmup_logdensity is not None and warmup_logdensity.shape[1] > 0:
        means, flagged, zs = stuck_chains(warmup_logdensity, cfg)
        if means is not None:
            diag.warmup_logdensity = means.tolist()
            diag.stuck_chains = flagged
            if flagged:
                ms = ", ".join(f"chain {c}: {float(means[c]):.2f} ({z:.1f} sd)" for c, z in zip(flagged, zs))
                found.append(MCMCWarning("stuck_chain", f"chain(s) {_chain_list(flagged)} ended warmup at a log "
                                         f"density far below the others' ({ms}; all chains: "
                                         f"{', '.join(f'{v:.2f}' for v in means.tolist())}): stuck in a minor mode?",
                                         tuple(flagged)))
    # ---- convergence of the constrained parameters
    x, names = scalar_parameters(draws)                                # (C, S, P)
    finite = torch.isfinite(x).all(0).all(0)                           # (P,)
    if not bool(finite.all()):
        bad = [names[i] for i in (~finite).nonzero().flatten().tolist()]
        found.append(MCMCWarning("non_finite", f"non-finite draws of {bad[:5]}{' ...' if len(bad) > 5 else ''}"))
    keep = finite.nonzero().flatten()
    x, names = x[..., keep], [names[i] for i in keep.tolist()]
    if S >= 4 and x.shape[-1] > 0:
        if C >= 2:
            r = torch.nan_to_num(rhat(x), nan=1.0)                     # constant parameters: no disagreement
            i = int(r.argmax())
            diag.max_rhat, diag.max_rhat_parameter = float(r[i]), names[i]
            if diag.max_rhat > cfg.max_rhat:
                found.append(MCMCWarning("rhat", f"max rank R-hat {diag.max_rhat:.3f} > {cfg.max_rhat} "
                                         f"({diag.max_rhat_parameter}): the chains have not mixed"))
        floor = cfg.min_ess_per_chain * C
        for kind, method in (("ess_bulk", "bulk"), ("ess_tail", "tail")):
            e = torch.nan_to_num(ess(x, method=method), nan=math.inf)
            i = int(e.argmin())
            value = float(e[i])
            setattr(diag, f"min_{kind}", value)
            setattr(diag, f"min_{kind}_parameter", names[i])
            if value < floor:
                found.append(MCMCWarning(kind, f"min {method} ESS {value:.1f} < {floor:g} ({cfg.min_ess_per_chain:g} per "
                                         f"chain x {C} chains; {names[i]}): run longer or reparameterise"))
        if C >= 2:
            found.extend(_far_chain_means(x, names, cfg))
    # ---- runaway draws (unconstrained)
    if S >= 100:
        diag.runaway_coordinates, message = _runaway(unconstrained, cfg)
        if message:
            found.append(MCMCWarning("runaway", message))
    return diag, found


def _count_flagged(flags: torch.Tensor, kind: str, what: str, advice: str, found: list) -> int:
    """Count flagged draws (C, S) and add a warning naming the share and the chains when any."""
    C, S = flags.shape
    count = int(flags.sum())
    if count:
        per_chain = flags.sum(1).tolist()
        found.append(MCMCWarning(kind, f"{count} of {C * S} draws after warmup ({100 * count / (C * S):.1f} %) {what} "
                                 f"(per chain: {per_chain}); {advice}", tuple(c for c in range(C) if per_chain[c])))
    return count


def _far_chain_means(x: torch.Tensor, names: list[str], cfg: DiagnosticsConfig) -> list[MCMCWarning]:
    """Chains whose mean of some parameter lies more than ``chain_mean_sd`` posterior sds from the
    median of the other chains' means, and further than 5 Monte Carlo standard errors of the
    difference (so that short, noisy chains are not flagged for noise); the worst parameter named."""
    from arrcoc.bayes.diagnostics import ess
    C = x.shape[0]
    means = x.mean(1)                                                  # (C, P)
    sd = x.var(1).mean(0).sqrt()                                       # (P,) pooled within-chain
    per_chain_ess = torch.stack([ess(x[c:c + 1], method="mean") for c in range(C)])   # (C, P)
    se = x.std(1) / torch.nan_to_num(per_chain_ess, nan=1.0).clamp(min=1.0).sqrt()     # (C, P)
    out = []
    for c in range(C):
        others = torch.cat([means[:c], means[c + 1:]]).median(0).values  # (P,)
        se_others = torch.cat([se[:c], se[c + 1:]]).median(0).values
        gap = (means[c] - others).abs()
        z = torch.where(sd > 0, gap / sd.clamp(min=1e-300), torch.zeros_like(gap))
        far = (z > cfg.chain_mean_sd) & (gap > 5 * (se[c] ** 2 + se_others ** 2).sqrt())
        if bool(far.any()):
            i = int(torch.where(far, z, torch.zeros_like(z)).argmax())
            out.append(MCMCWarning("chain_mean", f"chain {c}'s mean of {names[i]} is {float(means[c, i]):.4g}, "
                                   f"the other chains' {float(others[i]):.4g} ({float(z[i]):.1f} posterior sd "
                                   "apart): the chain explores another region", (c,)))
    return out


def _runaway(unconstrained: torch.Tensor, cfg: DiagnosticsConfig) -> tuple[list[int], str | None]:
    """Coordinates whose draws wander like a random walk: the variance ratio
    Var(x[t + k] - x[t]) / (k Var(x[t + 1] - x[t])) at lag k = S // 4, pooled over chains, is ~1 for a
    random walk (nothing pulls the chain back: an improper direction) and ~0 for a stationary chain
    whose autocorrelation dies out within k draws."""
    C, S, d = unconstrained.shape
    x = unconstrained.to(torch.float64)
    k = S // 4
    if S < 100 or not bool(torch.isfinite(x).all()):
        return [], None
    step_var = (x[:, 1:] - x[:, :-1]).var(1).sum(0)                   # (d,)
    lag_var = (x[:, k:] - x[:, :-k]).var(1).sum(0)
    ratio = torch.where(step_var > 0, lag_var / (k * step_var).clamp(min=1e-300), torch.zeros_like(step_var))
    coords = (ratio >= cfg.runaway_variance_ratio).nonzero().flatten().tolist()
    if not coords:
        return [], None
    j = max(coords, key=lambda i: float(x[..., i].abs().max()))
    return coords, (f"unconstrained coordinate(s) {coords[:5]}{' ...' if len(coords) > 5 else ''} wander like a random "
                    f"walk (coordinate {j}: variance ratio {float(ratio[j]):.2f} at lag {k}, ~0 for a stationary "
                    f"chain; draws reach |x| = {float(x[..., j].abs().max()):.3g}): the posterior may be improper "
                    "(a parameter without a proper prior?) or the chains mix far too slowly")
