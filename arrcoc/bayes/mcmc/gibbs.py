"""Gibbs sampling over named blocks: exact conditionals, conjugate conditionals, Metropolis-within-Gibbs.

A ``Gibbs`` kernel sweeps its blocks in order over all chains at once.  It works on a ``Model``
(named constrained parameters); each block updates some of the names:

* ``Conditional(names, fn)``: ``fn(values, generator) -> new values`` draws exactly from the full
  conditional (values: dict name -> (C, *shape), constrained);
* ``ConjugateConditional(names, fn)``: ``fn(values)`` returns a conjugate family object from
  ``arrcoc.bayes.conjugate`` that is already the posterior, or a tuple ``(prior, *data)`` which is
  updated with ``prior.update(*data)``; the draw is from ``.dist()`` (two names split the last axis,
  e.g. NormalInverseGamma's (mu, sigma2));
* ``MetropolisBlock(names)``: a random-walk Metropolis move on the block's unconstrained
  coordinates, accepted with the model's full log density; its scale adapts during warmup
  (Robbins-Monro on the log scale towards ``target_accept``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch

from .base import Kernel, Model, safe_logdensity, sample_distribution

__all__ = ["Conditional", "ConjugateConditional", "MetropolisBlock", "Gibbs", "GibbsState", "GibbsInfo",
           "GibbsParams"]


def _names(names) -> tuple[str, ...]:
    if isinstance(names, str):
        return (names,)
    names = tuple(names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"names must be a parameter name or a non-empty sequence of names, got {names!r}")
    return names


@dataclass(frozen=True)
class Conditional:
    """Exact draw from a full conditional: fn(values, generator) -> tensor (one name) or dict."""
    names: str | Sequence[str]
    fn: Callable

    def draw(self, values, generator):
        out = self.fn(values, generator)
        names = _names(self.names)
        if isinstance(out, torch.Tensor):
            if len(names) != 1:
                raise ValueError(f"conditional for {names} must return a dict name -> value")
            return {names[0]: out}
        return {n: out[n] for n in names}


@dataclass(frozen=True)
class ConjugateConditional:
    """Draw from a conjugate posterior: fn(values) -> posterior family, or (prior, *data) to update."""
    names: str | Sequence[str]
    fn: Callable

    def draw(self, values, generator):
        post = self.fn(values)
        if isinstance(post, tuple):
            prior, *data = post
            post = prior.update(*data)
        x = sample_distribution(post.dist(), generator)
        names = _names(self.names)
        if len(names) == 1:
            return {names[0]: x}
        if x.shape[-1] != len(names):
            raise ValueError(f"conjugate draw has last axis {x.shape[-1]}, cannot split into {names}")
        return {n: x[..., i] for i, n in enumerate(names)}


@dataclass(frozen=True)
class MetropolisBlock:
    """Random-walk Metropolis on the unconstrained coordinates of ``names``."""
    names: str | Sequence[str]
    step_size: float | None = None      # None: 2.38 / sqrt(block size), the Gaussian-optimal scale
    target_accept: float = 0.3          # between the 0.44 (1-D) and 0.234 (high-D) optima
    adapt_rate: float = 0.6             # Robbins-Monro decay t^-0.6 (in (0.5, 1]: diminishing adaptation)


class GibbsState(NamedTuple):
    position: torch.Tensor      # (C, d) flat unconstrained
    logdensity: torch.Tensor    # (C,) model log density (NaN-free); refreshed after each sweep


class GibbsInfo(NamedTuple):
    accept_prob: torch.Tensor   # (C,) mean acceptance probability of the Metropolis blocks (1.0 if none)
    block_accept: torch.Tensor  # (C, M) acceptance probability per Metropolis block


class GibbsParams(NamedTuple):
    log_scale: torch.Tensor     # (C, M) log proposal scale per Metropolis block


class Gibbs(Kernel):
    """Gibbs kernel over the blocks of a ``Model``; the driver's log density must be that model."""

    def __init__(self, model: Model, blocks: Sequence):
        if not isinstance(model, Model):
            raise TypeError(f"Gibbs needs an arrcoc.bayes.mcmc.Model, got {type(model).__name__}")
        if len(blocks) == 0:
            raise ValueError("Gibbs needs at least one block")
        for b in blocks:
            if not isinstance(b, (Conditional, ConjugateConditional, MetropolisBlock)):
                raise TypeError(f"blocks must be Conditional, ConjugateConditional or MetropolisBlock, got {b!r}")
            for n in _names(b.names):
                model.site(n)  # raises for unknown names
        self.model = model
        self.blocks = list(blocks)
        self.mh_blocks = [b for b in self.blocks if isinstance(b, MetropolisBlock)]

    def _mh_index(self, block):
        idx = []
        for n in _names(block.names):
            s = self.model.site(n)
            idx.extend(range(s.start, s.stop))
        return torch.tensor(idx)

    def init(self, position, logdensity_fn):
        if position.dim() != 2 or position.shape[1] != self.model.dim:
            raise ValueError(f"position must be (num_chains, {self.model.dim}), got {tuple(position.shape)}")
        return GibbsState(position, safe_logdensity(logdensity_fn, position))

    def init_params(self, state, logdensity_fn, generator) -> GibbsParams:
        C = state.position.shape[0]
        scales = []
        for b in self.mh_blocks:
            k = len(self._mh_index(b))
            scales.append(math.log(b.step_size if b.step_size is not None else 2.38 / math.sqrt(k)))
        t = torch.tensor(scales, dtype=state.position.dtype, device=state.position.device)
        return GibbsParams(t.expand(C, len(scales)).clone())

    def step(self, state, generator, logdensity_fn, params):
        x = state.position
        C = x.shape[0]
        accs = []
        m = 0
        for b in self.blocks:
            if isinstance(b, MetropolisBlock):
                idx = self._mh_index(b).to(x.device)
                logp_x = safe_logdensity(logdensity_fn, x)
                z = torch.randn((C, idx.numel()), generator=generator, dtype=x.dtype, device=x.device)
                y = x.clone()
                y[:, idx] = x[:, idx] + params.log_scale[:, m:m + 1].exp() * z
                logp_y = safe_logdensity(logdensity_fn, y)
                log_r = torch.nan_to_num(logp_y - logp_x, nan=-math.inf)
                u = torch.rand(C, generator=generator, dtype=x.dtype, device=x.device)
                acc = u.log() < log_r
                x = torch.where(acc.unsqueeze(-1), y, x)
                accs.append(log_r.exp().clamp(max=1.0))
                m += 1
            else:
                values = self.model.constrain(x)
                new = b.draw(values, generator)
                for n, v in new.items():
                    x = self.model.with_value(x, n, v)
        if accs:
            block_acc = torch.stack(accs, -1)                                   # (C, M)
        else:
            block_acc = torch.ones(C, 0, dtype=x.dtype, device=x.device)
        mean_acc = block_acc.mean(-1) if accs else torch.ones(C, dtype=x.dtype, device=x.device)
        return GibbsState(x, safe_logdensity(logdensity_fn, x)), GibbsInfo(mean_acc, block_acc)

    def warmup(self, num_warmup, logdensity_fn):
        return _GibbsAdapt(self) if self.mh_blocks else None


class _GibbsAdapt:
    """Robbins-Monro adaptation of each Metropolis block's log scale, per chain."""

    def __init__(self, kernel: Gibbs):
        self.kernel = kernel

    def init(self, state, params):
        return 0

    def update(self, t, state, info, params, generator):
        t = t + 1
        rates = torch.tensor([b.adapt_rate for b in self.kernel.mh_blocks], dtype=params.log_scale.dtype)
        targets = torch.tensor([b.target_accept for b in self.kernel.mh_blocks], dtype=params.log_scale.dtype)
        gain = t ** (-rates.to(params.log_scale.device))
        log_scale = params.log_scale + gain * (info.block_accept - targets.to(params.log_scale.device))
        return t, GibbsParams(log_scale)

    def final(self, t, params):
        return params
