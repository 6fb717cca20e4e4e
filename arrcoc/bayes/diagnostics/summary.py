"""``summary()``: one table of posterior statistics and convergence diagnostics per scalar parameter."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from . import _array as A
from .convergence import DEFAULT_TAIL_PROB, _ess_core, _max_like_python, _rhat_core, _tail_ess
from .intervals import DEFAULT_PROB, _check_interval_prob

__all__ = ["Summary", "summary", "SummaryConfig"]


@dataclass(frozen=True)
class SummaryConfig:
    """Defaults of :func:`summary` (each overridable per call)."""

    # Credible mass of the interval columns; arviz-stats' default (0.89) so tables read alike.
    prob: float = DEFAULT_PROB
    # "hdi" (narrowest interval, the ArviZ default) or "eti" (equal tails; robust for skewed draws).
    interval: str = "hdi"
    # Significant digits of the plain-text table; enough to judge MCSE without column noise.
    digits: int = 3

    def __post_init__(self):
        from .._validate import check_int, check_probability
        object.__setattr__(self, "prob", check_probability(self.prob, "prob"))
        if self.interval not in ("hdi", "eti"):
            raise ValueError(f"`interval` must be 'hdi' or 'eti', got {self.interval!r}")
        object.__setattr__(self, "digits", check_int(self.digits, "digits", minimum=1))


@dataclass(frozen=True, eq=False)
class Summary:
    """Per-parameter statistics: ``values[i, j]`` is column ``columns[j]`` of parameter ``names[i]``.

    Columns: mean, sd (ddof=1), interval lower/upper bounds (``hdi89_lb``/``hdi89_ub`` style names),
    mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat. ``str(summary)`` is an aligned text table.
    """

    names: tuple[str, ...]
    columns: tuple[str, ...]
    values: torch.Tensor  # (num_params, num_columns) float64
    prob: float
    interval: str
    digits: int = field(default=SummaryConfig.digits)

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{parameter name: {column: value}}`` with plain Python floats."""
        rows = self.values.tolist()
        return {n: dict(zip(self.columns, r)) for n, r in zip(self.names, rows)}

    def column(self, name: str) -> torch.Tensor:
        """One column over all parameters, (num_params,)."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns are {self.columns}")
        return self.values[:, self.columns.index(name)]

    def __getitem__(self, name: str) -> dict[str, float]:
        if name not in self.names:
            raise KeyError(f"no parameter {name!r}")
        return dict(zip(self.columns, self.values[self.names.index(name)].tolist()))

    def __len__(self) -> int:
        return len(self.names)

    def _fmt(self, col: str, v: float) -> str:
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if col.startswith("ess"):
            return f"{v:.0f}"
        if col == "r_hat":
            return f"{v:.3f}"
        a = abs(v)
        if v == 0 or 10 ** -(self.digits - 1) <= a < 10 ** 6:
            return f"{v:.{self.digits}f}"
        return f"{v:.{self.digits - 1}e}"

    def __str__(self) -> str:
        cells = [[self._fmt(c, v) for c, v in zip(self.columns, row)] for row in self.values.tolist()]
        name_w = max([len(n) for n in self.names] + [0])
        widths = [max([len(c)] + [len(r[j]) for r in cells]) for j, c in enumerate(self.columns)]
        head = " " * name_w + "".join(f"  {c:>{w}}" for c, w in zip(self.columns, widths))
        lines = [head]
        for n, r in zip(self.names, cells):
            lines.append(f"{n:<{name_w}}" + "".join(f"  {v:>{w}}" for v, w in zip(r, widths)))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Summary({len(self.names)} parameters, columns={self.columns})\n{self}"


def _param_names(name: str, shape: tuple[int, ...]) -> list[str]:
    if not shape:
        return [name]
    idx = torch.cartesian_prod(*[torch.arange(s) for s in shape]) if len(shape) > 1 else \
        torch.arange(shape[0])[:, None]
    return [f"{name}[{','.join(str(i) for i in row)}]" for row in idx.tolist()]


def _summary_chunk(y: torch.Tensor, prob: float, interval: str) -> torch.Tensor:
    """All summary columns for one chunk y (P, C, N) -> (P, 9) float64, sharing sorts and ranks."""
    p, c, n = y.shape
    yd = y.to(torch.float64)  # (P, C, N)
    sp = A.split_chains(y)  # (P, 2C, N//2)
    z, sorted_sp = A.z_scale(sp, return_sorted=True)  # (P, 2C, N//2), (P, S)
    if c >= 2:
        med = A.median_sorted(sorted_sp)  # (P,)
        tail = _rhat_core(A.z_scale((sp.to(torch.float64) - med[:, None, None]).abs()))
        r_hat = _max_like_python(_rhat_core(z), tail)
    else:  # R-hat compares chains; undefined for one chain
        r_hat = torch.full((p,), torch.nan, dtype=torch.float64, device=y.device)
    ess_bulk = _ess_core(z)
    sorted_all = (sorted_sp if n % 2 == 0 else A.sort_flat(y)).to(torch.float64)  # (P, C*N)
    ess_tail = _tail_ess(yd, sorted_all, *DEFAULT_TAIL_PROB, False)
    ess_mean = _ess_core(A.split_chains(yd))
    flat = yd.reshape(p, -1)  # (P, S)
    mean = flat.mean(dim=-1)
    sd = flat.std(dim=-1, correction=1)
    sims_c2 = (flat - mean[:, None]).square()
    evar = sims_c2.mean(dim=-1)
    mcse_sd = torch.sqrt((sims_c2.square().mean(dim=-1) - evar.square()) / ess_mean / evar / 4)
    mcse_mean = sd / torch.sqrt(ess_mean)
    size = sorted_all.shape[-1]
    if interval == "eti":
        edge = (1 - prob) / 2
        lo = A.quantile_sorted(sorted_all, edge)
        hi = A.quantile_sorted(sorted_all, 1 - edge)
    else:
        inc = int(math.floor(prob * size))
        if inc < 1:
            raise ValueError(f"an HDI with prob={prob} needs at least {math.ceil(1 / prob)} draws, "
                             f"got {size}")
        start = (sorted_all[:, inc:] - sorted_all[:, : size - inc]).argmin(dim=-1, keepdim=True)
        lo = sorted_all.gather(1, start).squeeze(1)
        hi = sorted_all.gather(1, start + inc).squeeze(1)
    return torch.stack((mean, sd, lo, hi, mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat), dim=-1)


def summary(draws: torch.Tensor | Mapping[str, torch.Tensor], prob: float | None = None,
            var_names: Sequence[str] | None = None, interval: str | None = None,
            chain_axis: int = 0, draw_axis: int = 1,
            config: SummaryConfig | None = None) -> Summary:
    """Summarise MCMC draws: mean, sd, credible interval, MCSE, bulk/tail ESS and rank R-hat.

    ``draws`` is a tensor (chain, draw, *param_shape) (named ``x``) or a dict of them; every parameter
    of any shape becomes rows named like ``theta[0,1]``. ``var_names`` selects and orders dict keys.
    ``prob``/``interval`` default to ``config`` (0.89, "hdi"). Values equal those of :func:`rhat`
    ("rank"), :func:`ess` ("bulk", "tail"), :func:`mcse` ("mean", "sd") and :func:`hdi`/:func:`eti`;
    sd uses ddof=1. With a single chain r_hat is NaN (R-hat needs 2+ chains); 4+ draws are required.
    """
    cfg = config or SummaryConfig()
    prob = _check_interval_prob(cfg.prob if prob is None else prob)
    interval = cfg.interval if interval is None else interval
    if interval not in ("hdi", "eti"):
        raise ValueError(f"`interval` must be 'hdi' or 'eti', got {interval!r}")
    if isinstance(draws, Mapping):
        if not draws:
            raise ValueError("`draws` is an empty dict; pass at least one variable")
        items = dict(draws)
    elif isinstance(draws, torch.Tensor):
        items = {"x": draws}
    else:
        raise TypeError(f"`draws` must be a Tensor or a dict of Tensors, got {type(draws).__name__}")
    if var_names is not None:
        if isinstance(var_names, str):
            var_names = [var_names]
        missing = [v for v in var_names if v not in items]
        if missing:
            raise ValueError(f"`var_names` has unknown variables {missing}; known: {list(items)}")
        items = {v: items[v] for v in var_names}
    names, blocks = [], []
    for var, x in items.items():
        y, shape, _ = A.prepare(x, chain_axis, draw_axis, name=f"draws[{var!r}]", min_draws=4,
                             what="summary")
        per = y.shape[1] * y.shape[2]
        parts = [_summary_chunk(y[sl], prob, interval) for sl in A.chunks(y.shape[0], per)]
        blocks.append(torch.cat(parts) if parts else torch.empty(0, 9, dtype=torch.float64))
        names.extend(_param_names(var, shape))
    perc = f"{prob * 100:g}".replace(".", "_")
    columns = ("mean", "sd", f"{interval}{perc}_lb", f"{interval}{perc}_ub", "mcse_mean", "mcse_sd",
               "ess_bulk", "ess_tail", "r_hat")
    values = torch.cat([b.cpu() for b in blocks])
    return Summary(tuple(names), columns, values, prob, interval, cfg.digits)
