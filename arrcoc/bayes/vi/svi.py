"""Stochastic variational inference with the reparameterised ELBO.

ELBO(q) = E_q[log p(y | z)] - KL(q || p)   (analytic KL when the prior is Gaussian), or
ELBO(q) = E_q[log p(y | z) + log p(z) - log q(z)]   (Monte Carlo; "stl" detaches q's parameters in
log q, the "sticking the landing" estimator of Roeder et al. 2017, whose gradient vanishes at an exact
fit). With minibatches of size b out of N observations the log likelihood is scaled by N / b, an
unbiased estimate of the full-data term.

``log_likelihood(z)`` (or ``log_likelihood(z, batch)`` when ``data`` is given) maps draws z (S, d) to
(S,) or to per-observation values (S, n) which are summed. ``prior`` is a ``torch.distributions``
distribution over R^d (event shape (d,) or batch shape (d,)) or a callable z (S, d) -> (S,).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .._validate import check_finite_tensor, check_generator, check_int, check_real
from .families import FullRankNormal, GaussianFamily, MeanFieldNormal, gaussian_prior_params

__all__ = ["VIConfig", "VIResult", "elbo", "fit_vi", "make_family", "prior_log_prob", "minibatch", "relative_change", "window_converged"]


@dataclass(frozen=True)
class VIConfig:
    family: str = "meanfield"      # cheapest; "fullrank" captures posterior correlations (d^2 params)
    num_steps: int = 2000          # upper bound; the convergence check usually stops earlier
    lr: float = 0.05               # Adam step on (loc, log scale): scale-free and robust for O(1) params
    final_lr_fraction: float = 0.05  # exponential decay to this fraction: damps gradient noise at the end
    num_samples: int = 16          # MC draws per step: low-variance gradients at small cost
    batch_size: int | None = None  # None = full data; else minibatch of this size, lik scaled by N / b
    kl: str = "auto"               # "analytic" (Gaussian prior), "mc", "stl" or "auto" (analytic if possible else stl)
    init_scale: float = 0.1        # small initial scale: avoids huge early gradients from tail draws
    tol: float = 1e-5              # relative change of the windowed mean ELBO: ~1e-3 nats for ELBO ~ -100
    window: int = 100              # window (steps) for the convergence check
    min_steps: int = 500           # never stop before this many steps
    final_samples: int = 4096      # MC draws for the reported final ELBO and its standard error
    progress: bool = False         # tqdm bar (off by default: tests and library calls stay quiet)

    def __post_init__(self):  # the boundary for fit_vi too: replace(config, **overrides) runs this
        if self.family not in _FAMILIES:
            raise ValueError(f"family must be 'meanfield' or 'fullrank', got {self.family!r}")
        if self.kl not in ("auto", "analytic", "mc", "stl"):
            raise ValueError(f"kl must be 'auto', 'analytic', 'mc' or 'stl', got {self.kl!r}")
        ints = {"num_steps": 1, "num_samples": 1, "window": 1, "min_steps": 0, "final_samples": 2}
        for name, low in ints.items():
            object.__setattr__(self, name, check_int(getattr(self, name), name, minimum=low))
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size", check_int(self.batch_size, "batch_size", minimum=1))
        for name in ("lr", "init_scale"):
            object.__setattr__(self, name, check_real(getattr(self, name), name, low=0.0, low_open=True))
        object.__setattr__(self, "final_lr_fraction", check_real(self.final_lr_fraction, "final_lr_fraction",
                                                                 low=0.0, high=1.0, low_open=True))
        object.__setattr__(self, "tol", check_real(self.tol, "tol", low=0.0))
        if not isinstance(self.progress, bool):
            raise TypeError(f"progress must be a bool, got {type(self.progress).__name__}")


_FAMILIES = {"meanfield": "meanfield", "mean_field": "meanfield", "diag": "meanfield",
             "fullrank": "fullrank", "full_rank": "fullrank", "full": "fullrank"}


def make_family(name: str, dim: int, *, loc=None, scale: float = 0.1, dtype=torch.float64, device=None) -> GaussianFamily:
    """Build a variational family by name: "meanfield" or "fullrank"."""
    if not isinstance(name, str) or name not in _FAMILIES:
        raise ValueError(f"name (the family) must be 'meanfield' or 'fullrank', got {name!r}")
    cls = MeanFieldNormal if _FAMILIES[name] == "meanfield" else FullRankNormal
    return cls(dim, loc=loc, scale=scale, dtype=dtype, device=device)


def prior_log_prob(prior, z: torch.Tensor) -> torch.Tensor:
    """log p(z) summed over the d coordinates: (S, d) -> (S,)."""
    check_finite_tensor(z, "z")
    if z.ndim != 2:
        raise ValueError(f"z must have shape (S, d), got {tuple(z.shape)}")
    if not (callable(prior) or isinstance(prior, torch.distributions.Distribution)):
        raise TypeError(f"prior must be a torch.distributions.Distribution or a callable, got {type(prior).__name__}")
    if callable(prior) and not isinstance(prior, torch.distributions.Distribution):
        out = prior(z)
    else:
        out = prior.log_prob(z)
        if out.shape == z.shape:  # a batch of d scalar distributions
            out = out.sum(-1)
    if out.shape != z.shape[:-1]:
        raise ValueError(f"prior log density must have shape {tuple(z.shape[:-1])}, got {tuple(out.shape)}")
    return out


def _as_data(data) -> tuple[torch.Tensor, ...] | None:
    if data is None:
        return None
    if not isinstance(data, (torch.Tensor, list, tuple)):
        raise TypeError(f"data must be a tensor or a sequence of tensors, got {type(data).__name__}")
    data = (data,) if isinstance(data, torch.Tensor) else tuple(data)
    if not data:
        raise ValueError("data must hold at least one tensor, got an empty sequence")
    for i, t in enumerate(data):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"data[{i}] must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim < 1 or t.shape[0] < 1:
            raise ValueError(f"data[{i}] must have at least one observation along dim 0, got shape {tuple(t.shape)}")
    n = data[0].shape[0]
    for i, t in enumerate(data):
        if t.shape[0] != n:
            raise ValueError(f"all data tensors need the same first dimension N = {n}; data[{i}] has {t.shape[0]}")
    return data


def minibatch(data: Sequence[torch.Tensor], batch_size: int | None, generator: torch.Generator | None):
    """Random minibatch (without replacement) and the likelihood scale N / b. ``generator`` may be None
    only when no subsampling happens (``batch_size`` None or >= N)."""
    data = _as_data(data)
    if data is None:
        raise TypeError("data must be a tensor or a sequence of tensors, got None")
    n = data[0].shape[0]
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", minimum=1)
    if generator is not None:
        check_generator(generator)
    if batch_size is None or batch_size >= n:
        return tuple(data), 1.0
    check_generator(generator)
    idx = torch.randperm(n, generator=generator, device=generator.device if generator is not None else "cpu")[:batch_size]
    idx = idx.to(data[0].device)
    return tuple(t[idx] for t in data), n / batch_size


def _loglik(log_likelihood, z, batch):
    out = log_likelihood(z) if batch is None else log_likelihood(z, *batch)
    if out.ndim == 2:
        out = out.sum(-1)
    if out.shape != z.shape[:1]:
        raise ValueError(f"log_likelihood must return ({z.shape[0]},) or ({z.shape[0]}, n), got {tuple(out.shape)}")
    return out


def elbo(q: GaussianFamily, log_likelihood: Callable, prior, *, num_samples: int, generator: torch.Generator | None,
         batch=None, scale: float = 1.0, kl: str = "auto", return_monitor: bool = False):
    """Reparameterised ELBO estimate (differentiable scalar); ``scale`` multiplies the log likelihood.
    ``return_monitor``: also return the Monte Carlo form of the same estimate (no gradient), whose
    variance vanishes as q approaches the posterior; ``fit_vi`` traces it for the convergence check."""
    if not isinstance(q, GaussianFamily):
        raise TypeError(f"q must be a GaussianFamily (MeanFieldNormal / FullRankNormal), got {type(q).__name__}")
    if not callable(log_likelihood):
        raise TypeError(f"log_likelihood must be callable, got {type(log_likelihood).__name__}")
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    generator = check_generator(generator)
    scale = check_real(scale, "scale", low=0.0, low_open=True)
    z = q.rsample(num_samples, generator)  # (S, d)
    ll = scale * _loglik(log_likelihood, z, batch)  # (S,)
    gp = gaussian_prior_params(prior, q.dim) if isinstance(prior, torch.distributions.Distribution) else None
    if kl == "auto":
        kl = "analytic" if gp is not None else "stl"
    if kl == "analytic":
        if gp is None:
            raise ValueError("kl='analytic' needs a Gaussian prior (Normal, Independent(Normal) or MultivariateNormal)")
        value = ll.mean() - q.kl_to(*gp)
    elif kl in ("mc", "stl"):
        value = (ll + prior_log_prob(prior, z) - q.log_prob(z, detach_params=(kl == "stl"))).mean()
    else:
        raise ValueError(f"kl must be 'auto', 'analytic', 'mc' or 'stl', got {kl!r}")
    if return_monitor:  # the MC form: same expectation, far less noise near the optimum (monitoring only)
        with torch.no_grad():
            monitor = (ll + prior_log_prob(prior, z) - q.log_prob(z)).mean() if kl == "analytic" else value.detach()
        return value, monitor
    return value


def relative_change(trace: Sequence[float], window: int) -> float:
    """|mean(last window) - mean(previous window)| / max(|mean(last window)|, 1); inf if too short."""
    window = check_int(window, "window", minimum=1)
    if len(trace) < 2 * window:
        return math.inf
    t = torch.as_tensor(trace[-2 * window:], dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"trace must be finite; its last {2 * window} values contain NaN or inf")
    a, b = t[:window].mean(), t[window:].mean()
    return float((b - a).abs() / b.abs().clamp_min(1.0))


def window_converged(trace: Sequence[float], window: int, tol: float) -> bool:
    """Convergence check on the ELBO trace: the relative change of the windowed mean is below ``tol``."""
    return relative_change(trace, window) < check_real(tol, "tol", low=0.0)


@dataclass
class VIResult:
    """A fitted variational approximation. ``approx`` has ``sample(n, generator)``; Gaussian families
    give tensors (n, d), Pyro guides give dicts site -> (n, ...)."""
    approx: object
    elbo: float            # final ELBO estimate (analytic KL or many MC draws on the full data)
    elbo_se: float         # Monte Carlo standard error of ``elbo``
    elbo_trace: torch.Tensor  # (steps,) per-step (possibly minibatch) ELBO estimates
    num_steps: int
    converged: bool
    method: str

    def sample(self, n: int, generator: torch.Generator):
        """n draws from the fitted approximation."""
        return self.approx.sample(check_int(n, "n", minimum=1), check_generator(generator))

    @property
    def mean(self):
        return self.approx.mean

    def covariance(self) -> torch.Tensor:
        return self.approx.covariance().detach()

    def __str__(self) -> str:
        head = (f"VIResult({self.method}: ELBO = {self.elbo:.4f} ± {self.elbo_se:.4f}, steps = {self.num_steps}, "
                f"converged = {self.converged})")
        if isinstance(self.approx, GaussianFamily):
            sd = torch.diagonal(self.covariance()).sqrt()
            rows = [f"  z[{i}]  mean {float(m):10.4f}  sd {float(s):10.4f}" for i, (m, s) in enumerate(zip(self.mean, sd))][:20]
            return "\n".join([head] + rows)
        return head


def final_elbo(q, log_likelihood, prior, data, *, num_samples: int, generator, kl: str):
    """Full-data ELBO with its Monte Carlo standard error (no gradients)."""
    with torch.no_grad():
        z = q.rsample(num_samples, generator)
        ll = _loglik(log_likelihood, z, data)
        gp = gaussian_prior_params(prior, q.dim) if isinstance(prior, torch.distributions.Distribution) else None
        # both estimators are unbiased; report the one with the smaller standard error (the MC form has
        # zero variance when q equals the posterior, the analytic-KL form is better far from it)
        candidates = [ll + prior_log_prob(prior, z) - q.log_prob(z)]
        if gp is not None and kl in ("auto", "analytic"):
            candidates.append(ll - q.kl_to(*gp))
        terms = min(candidates, key=lambda t: float(t.std()))
    return float(terms.mean()), float(terms.std() / math.sqrt(num_samples))


def fit_vi(log_likelihood: Callable, prior, dim: int | None = None, *, generator: torch.Generator,
           data=None, config: VIConfig | None = None, init=None, grad_hook: Callable | None = None,
           value_hook: Callable | None = None, final_log_likelihood: Callable | None = None,
           **overrides) -> VIResult:
    """Fit a Gaussian q(z) by maximising the reparameterised ELBO with Adam.

    ``data``: tensor or tuple of tensors with observations along dim 0 (needed for minibatching);
    then ``log_likelihood(z, *batch)``. ``init``: initial mean (d,). ``grad_hook(q)`` is called after
    each backward pass and ``value_hook(elbo)`` maps each step's ELBO before it enters the trace and
    the convergence check (``arrcoc.bayes.distributed`` all-reduces there); ``final_log_likelihood``
    (full-data, no ``data`` argument) replaces ``log_likelihood`` for the final ELBO. Keyword overrides
    replace ``config`` fields, e.g. ``fit_vi(..., family="fullrank", num_steps=3000)``.
    """
    if not callable(log_likelihood):
        raise TypeError(f"log_likelihood must be callable, got {type(log_likelihood).__name__}")
    if not (callable(prior) or isinstance(prior, torch.distributions.Distribution)):
        raise TypeError(f"prior must be a torch.distributions.Distribution or a callable, got {type(prior).__name__}")
    generator = check_generator(generator)
    if config is not None and not isinstance(config, VIConfig):
        raise TypeError(f"config must be a VIConfig, got {type(config).__name__}")
    cfg = replace(config or VIConfig(), **overrides)
    dim = None if dim is None else check_int(dim, "dim", minimum=1)
    for name, hook in (("grad_hook", grad_hook), ("value_hook", value_hook), ("final_log_likelihood", final_log_likelihood)):
        if hook is not None and not callable(hook):
            raise TypeError(f"{name} must be callable or None, got {type(hook).__name__}")
    data = _as_data(data)
    if dim is None:
        gp = gaussian_prior_params(prior) if isinstance(prior, torch.distributions.Distribution) else None
        if gp is None:
            raise ValueError("dim must be given when the prior is not a Gaussian with a known dimension")
        dim = gp[0].shape[-1]
    gp = gaussian_prior_params(prior, dim) if isinstance(prior, torch.distributions.Distribution) else None
    like = data[0] if data is not None else (gp[0] if gp is not None else None)  # dtype / device source
    dtype = like.dtype if like is not None and like.is_floating_point() else torch.float64
    q = make_family(cfg.family, dim, loc=init, scale=cfg.init_scale, dtype=dtype,
                    device=like.device if like is not None else None)
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    gamma = cfg.final_lr_fraction ** (1.0 / max(cfg.num_steps, 1))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    trace, converged = [], False
    bar = tqdm(range(cfg.num_steps), disable=not cfg.progress, desc="VI")
    step = 0
    for step in bar:
        batch, scale = (None, 1.0) if data is None else minibatch(data, cfg.batch_size, generator)
        opt.zero_grad(set_to_none=True)
        value, monitor = elbo(q, log_likelihood, prior, num_samples=cfg.num_samples, generator=generator,
                              batch=batch, scale=scale, kl=cfg.kl, return_monitor=True)
        if not torch.isfinite(value):
            raise FloatingPointError(f"ELBO became non-finite at step {step}; lower lr or check log_likelihood")
        (-value).backward()
        if grad_hook is not None:
            grad_hook(q)
        opt.step()
        sched.step()
        trace.append(float(monitor if value_hook is None else value_hook(monitor)))
        if cfg.progress and step % 50 == 0:
            bar.set_postfix(elbo=f"{trace[-1]:.3f}")
        if step + 1 >= cfg.min_steps and (step + 1) % cfg.window == 0 and window_converged(trace, cfg.window, cfg.tol):
            converged = True
            break
    bar.close()
    if not converged:
        warnings.warn(f"VI did not meet the convergence check (relative ELBO change < {cfg.tol} over "
                      f"{cfg.window} steps) in {cfg.num_steps} steps", RuntimeWarning)
    value, se = final_elbo(q, final_log_likelihood or log_likelihood, prior, None if final_log_likelihood else data, num_samples=cfg.final_samples, generator=generator, kl=cfg.kl)
    return VIResult(q, value, se, torch.tensor(trace, dtype=torch.float64), step + 1, converged, f"{cfg.family}-svi")
