"""Posterior predictive distributions from posterior draws.

A model is given by ``likelihood_fn(draws) -> torch.distributions.Distribution`` whose batch shape
starts with the draw axis S (``draws``: a tensor (S, ...) or a dict of tensors (S, ...)). Then

* ``posterior_predictive`` draws y~ (S * m, *obs) with an explicit ``torch.Generator``;
* ``variance_decomposition`` splits Var[y~] by the law of total variance into aleatoric
  E_θ[Var(y~ | θ)] and epistemic Var_θ(E[y~ | θ]) parts (exact over the given draws);
* ``credible_interval`` gives equal-tailed or highest-density intervals of draws;
* ``predictive_summary`` bundles them in a dataclass with a readable ``__str__``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import (Bernoulli, Categorical, Distribution, Gamma, Independent, MultivariateNormal,
                                 Normal, Poisson)

from ._validate import check_generator, check_int, check_probability

__all__ = ["sample_distribution", "posterior_predictive", "variance_decomposition", "credible_interval",
           "PredictiveSummary", "predictive_summary"]


def _num_draws(draws) -> int:
    if isinstance(draws, dict):
        if not draws:
            raise ValueError("draws is an empty dict; pass at least one tensor (S, ...)")
        for k, v in draws.items():
            if not isinstance(v, torch.Tensor) or v.ndim < 1:
                raise TypeError(f"draws[{k!r}] must be a tensor (S, ...), got {type(v).__name__}")
        sizes = {k: v.shape[0] for k, v in draws.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"all draws need the same number of draws along dim 0, got {sizes}")
        return next(iter(sizes.values()))
    if not isinstance(draws, torch.Tensor) or draws.ndim < 1:
        raise TypeError("draws must be a tensor (S, ...) or a dict of tensors (S, ...)")
    return draws.shape[0]


def _call(likelihood_fn, draws) -> Distribution:
    if not callable(likelihood_fn):
        raise TypeError(f"likelihood_fn must be callable (draws -> Distribution), got {type(likelihood_fn).__name__}")
    _num_draws(draws)
    dist = likelihood_fn(draws)
    if not isinstance(dist, Distribution):
        raise TypeError(f"likelihood_fn must return a torch.distributions.Distribution, got {type(dist).__name__}")
    s = _num_draws(draws)
    if len(dist.batch_shape) < 1 or dist.batch_shape[0] != s:
        raise ValueError(f"the likelihood's batch shape must start with the draw axis S = {s}, got {tuple(dist.batch_shape)}")
    return dist


def sample_distribution(dist: Distribution, sample_shape=(), generator: torch.Generator | None = None) -> torch.Tensor:
    """``dist.sample(sample_shape)`` driven by an explicit generator (required: None raises TypeError,
    the global RNG is never used). Normal, MultivariateNormal, Independent, Bernoulli, Categorical,
    Poisson and Gamma are sampled directly; other distributions under a forked global RNG seeded from
    ``generator`` (reproducible, global state untouched)."""
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be a torch.distributions.Distribution, got {type(dist).__name__}")
    generator = check_generator(generator)
    if isinstance(sample_shape, int) and not isinstance(sample_shape, bool):
        sample_shape = (sample_shape,)
    try:
        sample_shape = torch.Size([check_int(k, "sample_shape", minimum=0) for k in sample_shape])
    except TypeError:
        raise TypeError(f"sample_shape must be a sequence of non-negative ints, got {sample_shape!r}") from None
    return _sample(dist, sample_shape, generator)


def _sample(dist: Distribution, sample_shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    shape = torch.Size(sample_shape) + dist.batch_shape + dist.event_shape
    dev = generator.device

    def randn(sh, like):
        return torch.randn(sh, generator=generator, dtype=like.dtype, device=dev or like.device).to(like.device)
    with torch.no_grad():
        if isinstance(dist, Independent):
            return _sample(dist.base_dist, sample_shape, generator)
        if isinstance(dist, Normal):
            return dist.loc + dist.scale * randn(shape, dist.loc)
        if isinstance(dist, MultivariateNormal):
            eps = randn(shape, dist.loc)
            return dist.loc + (dist.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
        if isinstance(dist, Bernoulli):
            return (torch.rand(shape, generator=generator, dtype=dist.probs.dtype, device=dev or dist.probs.device)
                    .to(dist.probs.device) < dist.probs).to(dist.probs.dtype)
        if isinstance(dist, Categorical):
            p = dist.probs.reshape(-1, dist.probs.shape[-1])
            n = max(1, math.prod(sample_shape))
            idx = torch.multinomial(p.to(dev or p.device), n, replacement=True, generator=generator)  # (B, n)
            return idx.T.reshape(shape).to(dist.probs.device)
        if isinstance(dist, Poisson):
            return torch.poisson(dist.rate.expand(shape).to(dev or dist.rate.device).contiguous(), generator=generator).to(dist.rate.device)
        if isinstance(dist, Gamma):
            conc = dist.concentration.expand(shape).to(dev or dist.rate.device).contiguous()
            return torch._standard_gamma(conc, generator=generator).to(dist.rate.device) / dist.rate
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=dev or "cpu"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return dist.sample(sample_shape)


def posterior_predictive(likelihood_fn, draws, *, generator: torch.Generator | None, num_per_draw: int = 1) -> torch.Tensor:
    """Draws from the posterior predictive: for each posterior draw θ_s, ``num_per_draw`` draws of
    y~ ~ p(y | θ_s). Returns (S * num_per_draw, *obs) (draw-major)."""
    num_per_draw = check_int(num_per_draw, "num_per_draw", minimum=1)
    generator = check_generator(generator)
    dist = _call(likelihood_fn, draws)
    y = sample_distribution(dist, (num_per_draw,), generator)  # (m, S, *obs)
    return y.transpose(0, 1).reshape(-1, *y.shape[2:])


def variance_decomposition(likelihood_fn, draws) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, aleatoric, epistemic) of y~, each (*obs): mean = E_θ[E(y~|θ)], aleatoric =
    E_θ[Var(y~|θ)], epistemic = Var_θ[E(y~|θ)] (ddof 0, so aleatoric + epistemic is the variance of
    the mixture over the given draws exactly). Needs ``mean`` and ``variance`` of the distribution."""
    dist = _call(likelihood_fn, draws)
    try:
        m, v = dist.mean, dist.variance  # (S, *obs)
    except NotImplementedError:
        raise ValueError(f"{type(dist).__name__} has no closed-form mean/variance; use posterior_predictive draws") from None
    if not (torch.isfinite(m).all() and torch.isfinite(v).all()):
        raise ValueError("the likelihood's mean or variance is not finite for some draws (e.g. StudentT with df <= 2)")
    return m.mean(0), v.mean(0), m.var(0, unbiased=False)


def credible_interval(samples: torch.Tensor, prob: float = 0.9, *, dim: int = 0, method: str = "eti") -> torch.Tensor:
    """Central (``"eti"``) or highest-density (``"hdi"``, shortest window of sorted draws; for
    unimodal distributions) interval of mass ``prob`` along ``dim``. Returns (*rest, 2)."""
    prob = check_probability(prob, "prob")
    if type(samples).__module__ == "numpy" and hasattr(samples, "__array__"):
        samples = torch.as_tensor(samples)
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples must be a torch.Tensor, got {type(samples).__name__}")
    dim = check_int(dim, "dim")
    if not -max(samples.ndim, 1) <= dim < max(samples.ndim, 1) or samples.ndim == 0:
        raise ValueError(f"dim = {dim} is out of range for samples of shape {tuple(samples.shape)}")
    x = samples
    if not x.is_floating_point():
        x = x.double()
    if torch.isnan(x).any():
        raise ValueError("samples contain NaN")
    if method not in ("eti", "hdi"):
        raise ValueError(f"method must be 'eti' or 'hdi', got {method!r}")
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    if n < 2:
        raise ValueError("need at least 2 samples")
    if method == "eti":
        q = torch.tensor([(1 - prob) / 2, (1 + prob) / 2], dtype=x.dtype, device=x.device)
        return torch.quantile(x, q, dim=-1).movedim(0, -1)
    if method == "hdi":
        xs = torch.sort(x, -1).values
        k = int(math.floor(prob * n))
        width = xs[..., k:] - xs[..., : n - k]  # (..., n - k)
        i = width.argmin(-1, keepdim=True)
        return torch.cat([xs.gather(-1, i), xs.gather(-1, i + k)], -1)
    raise ValueError(f"method must be 'eti' or 'hdi', got {method!r}")


@dataclass
class PredictiveSummary:
    """Posterior predictive mean, variance split and credible interval per observation (*obs)."""
    mean: torch.Tensor
    aleatoric: torch.Tensor
    epistemic: torch.Tensor
    interval: torch.Tensor  # (*obs, 2)
    prob: float
    samples: torch.Tensor  # (S * m, *obs)

    @property
    def total(self) -> torch.Tensor:
        return self.aleatoric + self.epistemic

    def __str__(self) -> str:
        head = (f"PredictiveSummary({self.samples.shape[0]} draws, {self.prob:.0%} interval)\n"
                f"{'obs':>5} {'mean':>10} {'sd':>9} {'aleatoric':>10} {'epistemic':>10} {'lower':>10} {'upper':>10}")
        m, a, e, it = (t.reshape(-1) for t in (self.mean, self.aleatoric, self.epistemic, self.interval[..., 0]))
        up = self.interval[..., 1].reshape(-1)
        rows = [f"{i:5d} {float(m[i]):10.4f} {float((a[i] + e[i]).sqrt()):9.4f} {float(a[i]):10.4f} {float(e[i]):10.4f} "
                f"{float(it[i]):10.4f} {float(up[i]):10.4f}" for i in range(min(m.numel(), 20))]
        return "\n".join([head] + rows)


def predictive_summary(likelihood_fn, draws, *, generator: torch.Generator | None, prob: float = 0.9,
                       num_per_draw: int = 1, method: str = "eti") -> PredictiveSummary:
    """Posterior predictive draws, their credible interval, and the aleatoric / epistemic split."""
    generator, prob = check_generator(generator), check_probability(prob, "prob")
    if method not in ("eti", "hdi"):
        raise ValueError(f"method must be 'eti' or 'hdi', got {method!r}")
    mean, alea, epi = variance_decomposition(likelihood_fn, draws)
    ys = posterior_predictive(likelihood_fn, draws, generator=generator, num_per_draw=num_per_draw)
    return PredictiveSummary(mean, alea, epi, credible_interval(ys, prob, dim=0, method=method), prob, ys)
