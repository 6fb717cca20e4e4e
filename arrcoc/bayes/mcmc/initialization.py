"""Initialisation strategies: where in unconstrained space the chains start (``sample(..., init=...)``).

``UniformInit`` is Stan's default: every coordinate uniform in (-2, 2).  On a multi-modal posterior a
chain started there can settle in a minor mode and stay (posteriordb's low_dim_gauss_mix: one chain of
four at mu = (-2.3, -2.3), sigma = (4.1, 0.8), log density far below the others').

``OptimizeInit`` draws several uniform candidates per chain, refines them all at once by a short
gradient ascent of the log density (Adam steps, per coordinate and per candidate, so the candidates
stay independent), and starts each chain at its own best candidate by log density: a cheap form of
the multi-start, optimisation-based initialisation that Stan's Pathfinder initialisation (Zhang,
Carpenter, Gelman and Vehtari 2022) makes principled.  The ascent is short on purpose: it moves the
candidates into the basin of a major mode, not onto the mode, so that warmup still starts from a
spread of points and R-hat keeps its power.  Each chain's candidates are its own, so chains still
start apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._validate import check_int, check_positive, check_real
from .base import value_and_grad
from .compiled import CompiledLogDensity

__all__ = ["UniformInit", "OptimizeInit", "INIT_STRATEGIES", "as_init_strategy"]


@dataclass(frozen=True)
class UniformInit:
    """Every unconstrained coordinate uniform in (low, high) (Stan's default, (-2, 2))."""
    low: float = -2.0      # Stan's range: wide enough to be over-dispersed for unit-scale parameters
    high: float = 2.0

    def __post_init__(self):
        low = check_real(self.low, "low")
        check_real(self.high, "high", low=low, low_open=True)

    def draw(self, shape, generator: torch.Generator, dtype, device) -> torch.Tensor:
        u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
        return self.low + (self.high - self.low) * u

    def positions(self, logdensity_fn, candidates: torch.Tensor, logdensity: torch.Tensor,
                  num_chains: int) -> torch.Tensor:
        """Chains' starts from their candidates (here: one candidate per chain, taken as it is)."""
        return candidates

    def candidates_per_chain(self) -> int:
        return 1


@dataclass(frozen=True)
class OptimizeInit:
    """Several uniform candidates per chain, a short Adam ascent of the log density, best per chain."""
    num_candidates: int = 8        # per chain: one of 8 from a minor basin is rare unless it is wide
    num_steps: int = 40            # Adam steps; with learning_rate 0.1 a coordinate moves at most ~4 units
    learning_rate: float = 0.1     # Adam's step per coordinate, in unconstrained units
    uniform: UniformInit = UniformInit()   # where the candidates are drawn

    def __post_init__(self):
        object.__setattr__(self, "num_candidates", check_int(self.num_candidates, "num_candidates", minimum=1))
        object.__setattr__(self, "num_steps", check_int(self.num_steps, "num_steps", minimum=0))
        check_positive(self.learning_rate, "learning_rate")
        if not isinstance(self.uniform, UniformInit):
            raise TypeError(f"uniform must be a UniformInit, got {type(self.uniform).__name__}")

    def draw(self, shape, generator: torch.Generator, dtype, device) -> torch.Tensor:
        return self.uniform.draw(shape, generator, dtype, device)

    def candidates_per_chain(self) -> int:
        return self.num_candidates

    def positions(self, logdensity_fn, candidates: torch.Tensor, logdensity: torch.Tensor,
                  num_chains: int) -> torch.Tensor:
        """candidates (C * K, d) with finite log density (C * K,), chain-major -> starts (C, d)."""
        if isinstance(logdensity_fn, CompiledLogDensity):
            logdensity_fn = logdensity_fn.fn      # a compiled graph is specialised to (C, d): not this batch
        x, lp = adam_ascent(logdensity_fn, candidates, self.num_steps, self.learning_rate)
        K, d = self.num_candidates, x.shape[-1]
        best = lp.reshape(num_chains, K).argmax(-1)                   # (C,)
        return x.reshape(num_chains, K, d)[torch.arange(num_chains, device=x.device), best]   # (C, d)


def adam_ascent(logdensity_fn, x: torch.Tensor, num_steps: int, learning_rate: float,
                betas: tuple[float, float] = (0.9, 0.999)):
    """Adam ascent of the log density from every row of x (R, d) at once; a step to a non-finite log
    density is refused and halves that row's learning rate.  Returns the best point of each row's path
    and its log density."""
    lp, grad = value_and_grad(logdensity_fn, x)                       # (R,), (R, d)
    best_x, best_lp = x, lp
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    rate = torch.full((x.shape[0], 1), learning_rate, dtype=x.dtype, device=x.device)   # (R, 1)
    b1, b2 = betas
    for t in range(1, num_steps + 1):
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        step = rate * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + 1e-8)
        x_new = (x + step).to(x.dtype)                                # a float64 log density keeps x's dtype
        lp_new, grad_new = value_and_grad(logdensity_fn, x_new)
        ok = torch.isfinite(lp_new)
        ok1 = ok.unsqueeze(-1)
        x = torch.where(ok1, x_new, x)
        lp = torch.where(ok, lp_new, lp)
        grad = torch.where(ok1, grad_new, grad)
        rate = torch.where(ok1, rate, 0.5 * rate)
        better = lp > best_lp
        best_x = torch.where(better.unsqueeze(-1), x, best_x)
        best_lp = torch.where(better, lp, best_lp)
    return best_x, best_lp


INIT_STRATEGIES = {"uniform": UniformInit, "optimize": OptimizeInit}


def as_init_strategy(init):
    """A strategy object from a name ("uniform", "optimize") or a strategy instance."""
    if isinstance(init, (UniformInit, OptimizeInit)):
        return init
    if isinstance(init, str):
        if init not in INIT_STRATEGIES:
            raise ValueError(f"init strategy must be one of {sorted(INIT_STRATEGIES)}, got {init!r}")
        return INIT_STRATEGIES[init]()
    raise TypeError(f"not an init strategy: {type(init).__name__}")

