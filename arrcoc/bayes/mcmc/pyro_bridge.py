"""Run this package's kernels on a Pyro model through Pyro's own potential-function utilities.

``pyro.infer.mcmc.util.initialize_model`` gives the unconstrained sites, their bijections and the
potential energy U(z) = -log p(z) (log-Jacobian included) for ONE chain.  Pyro's potential works on
one chain at a time (its tracing is not batch- or vmap-aware: poutine handlers and the site sample
statements assume unbatched values), so ``PyroModel.logdensity`` loops over the rows of the batch
(C, d); gradients still come from a single backward pass over the summed rows.  This is a
convenience bridge: writing the log density as a batched tensor function is much faster.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import torch

__all__ = ["PyroModel"]


class PyroModel:
    """A Pyro model seen as a flat unconstrained log density (C, d) -> (C,).

    Sites are laid out in sorted name order; ``constrain`` maps flat draws to the model's
    constrained sample sites.
    """

    def __init__(self, model: Callable, model_args: tuple = (), model_kwargs: Mapping | None = None,
                 max_plate_nesting: int | None = None):
        from pyro.infer.mcmc.util import initialize_model
        if not callable(model):
            raise TypeError(f"model must be a Pyro model (callable), got {type(model).__name__}")
        init_params, potential_fn, transforms, _ = initialize_model(
            model, model_args, dict(model_kwargs or {}), max_plate_nesting=max_plate_nesting)
        self.potential_fn = potential_fn
        self.transforms = transforms
        self.init_params = init_params
        self.names = sorted(init_params)
        self.shapes = {n: tuple(init_params[n].shape) for n in self.names}
        self.slices = {}
        start = 0
        for n in self.names:
            size = math.prod(self.shapes[n])
            self.slices[n] = (start, start + size)
            start += size
        self.dim = start
        self.dtype = next(iter(init_params.values())).dtype

    def _unflatten_row(self, row):
        return {n: row[a:b].reshape(self.shapes[n]) for n, (a, b) in self.slices.items()}

    def logdensity(self, x: torch.Tensor) -> torch.Tensor:
        """-U(x) per row of x (C, d), looping over the rows (Pyro's potential is single-chain)."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"position must be (C, {self.dim}), got {tuple(x.shape)}")
        rows = [-self.potential_fn(self._unflatten_row(x[c])) for c in range(x.shape[0])]
        return torch.stack(rows).to(x.dtype)

    __call__ = logdensity

    def initial_position(self) -> torch.Tensor:
        """Pyro's own initial point (init_to_uniform) as a flat unconstrained vector (d,)."""
        return torch.cat([self.init_params[n].reshape(-1) for n in self.names])

    def constrain(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat unconstrained (*batch, d) -> dict site -> constrained (*batch, *shape)."""
        batch = x.shape[:-1]
        out = {}
        for n, (a, b) in self.slices.items():
            u = x[..., a:b].reshape(batch + self.shapes[n])
            t = self.transforms.get(n)
            out[n] = t(u) if t is not None else u
        return out

    def unconstrain(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Dict site -> constrained (*batch, *shape) -> flat unconstrained (*batch, d)."""
        parts = []
        for n in self.names:
            if n not in values:
                raise ValueError(f"init values missing site {n!r}; expected {self.names}")
            v = torch.as_tensor(values[n])
            t = self.transforms.get(n)
            u = t.inv(v) if t is not None else v
            nb = u.dim() - len(self.shapes[n])
            parts.append(u.reshape(u.shape[:nb] + (-1,)))
        batch = torch.broadcast_shapes(*[p.shape[:-1] for p in parts])
        return torch.cat([p.expand(batch + p.shape[-1:]) for p in parts], -1)
