"""Fit a Pyro model and guide with ``pyro.infer.SVI`` and return the toolkit's ``VIResult``.

Pyro draws from the global torch RNG; here it is seeded from the explicit ``torch.Generator`` inside
``torch.random.fork_rng`` so a fit is reproducible and the caller's global RNG state is left untouched.
"""
from __future__ import annotations

import math
import random
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .._validate import check_generator, check_int, check_real
from .svi import VIResult, window_converged

__all__ = ["PyroGuideApprox", "fit_pyro"]


@contextmanager
def _seeded(generator: torch.Generator):
    """Fork the global torch / numpy / random RNGs and seed them from ``generator``."""
    generator = check_generator(generator)
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator, device=generator.device))
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        import pyro
        pyro.set_rng_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@dataclass
class PyroGuideApprox:
    """A fitted Pyro guide; ``sample(n, generator)`` -> dict site name -> (n, ...)."""
    guide: object
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        from pyro.infer import Predictive
        n = check_int(n, "n", minimum=1)
        with _seeded(generator), torch.no_grad():
            return Predictive(self.guide, num_samples=n)(*self.args, **self.kwargs)

    @property
    def mean(self) -> dict[str, torch.Tensor]:
        """Posterior medians from AutoGuides (= means of Gaussian guides on unconstrained sites)."""
        if hasattr(self.guide, "median"):
            return {k: v.detach() for k, v in self.guide.median(*self.args, **self.kwargs).items()}
        raise AttributeError("this guide has no median(); use sample() and average")


def _final_elbo_terms(model, guide, args, kwargs, n: int) -> torch.Tensor:
    """n single-particle ELBO values; one vectorised pass when the model allows it."""
    from pyro.infer import Trace_ELBO
    try:
        est = Trace_ELBO(num_particles=n, vectorize_particles=True)
        vals = []
        for model_trace, guide_trace in est._get_traces(model, guide, args, kwargs):
            elbo = 0.0
            for site in model_trace.nodes.values():
                if site["type"] == "sample":
                    elbo = elbo + site["log_prob"].reshape(n, -1).sum(-1)
            for site in guide_trace.nodes.values():
                if site["type"] == "sample":
                    elbo = elbo - site["log_prob"].reshape(n, -1).sum(-1)
            vals.append(elbo)
        return torch.cat([torch.as_tensor(v, dtype=torch.float64).detach().reshape(-1) for v in vals])
    except Exception:  # noqa: BLE001 - models that cannot be vectorised fall back to a loop
        est = Trace_ELBO(num_particles=1)
        return torch.tensor([-est.loss(model, guide, *args, **kwargs) for _ in range(n)], dtype=torch.float64)


def fit_pyro(model, guide, *args, generator: torch.Generator, num_steps: int = 2000, lr: float = 0.02,
             num_particles: int = 4, tol: float = 1e-5, window: int = 100, min_steps: int = 500,
             final_particles: int = 1000, progress: bool = False, clear_param_store: bool = True,
             **kwargs) -> VIResult:
    """Run ``pyro.infer.SVI`` (Trace_ELBO, Adam) on ``model(*args, **kwargs)`` with ``guide``.

    Stops when the relative change of the windowed mean ELBO falls below ``tol``; the reported ELBO
    is a ``final_particles`` Monte Carlo estimate with its standard error. Returns ``VIResult`` with
    ``approx`` a ``PyroGuideApprox``.
    """
    for name, fn in (("model", model), ("guide", guide)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    generator = check_generator(generator)
    num_steps, num_particles = check_int(num_steps, "num_steps", minimum=1), check_int(num_particles, "num_particles", minimum=1)
    window, min_steps = check_int(window, "window", minimum=1), check_int(min_steps, "min_steps", minimum=0)
    final_particles = check_int(final_particles, "final_particles", minimum=2)
    lr, tol = check_real(lr, "lr", low=0.0, low_open=True), check_real(tol, "tol", low=0.0)
    import pyro
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    if clear_param_store:
        pyro.clear_param_store()
    trace, converged, step = [], False, 0
    with _seeded(generator):
        svi = SVI(model, guide, Adam({"lr": lr}), loss=Trace_ELBO(num_particles=num_particles))
        bar = tqdm(range(num_steps), disable=not progress, desc="Pyro SVI")
        for step in bar:
            loss = svi.step(*args, **kwargs)
            if not math.isfinite(loss):
                raise FloatingPointError(f"Pyro ELBO became non-finite at step {step}")
            trace.append(-loss)
            if step + 1 >= min_steps and (step + 1) % window == 0 and window_converged(trace, window, tol):
                converged = True
                break
        bar.close()
        with torch.no_grad():
            vals = _final_elbo_terms(model, guide, args, kwargs, final_particles)
    if not converged:
        warnings.warn(f"Pyro SVI did not meet the convergence check in {num_steps} steps", RuntimeWarning)
    return VIResult(PyroGuideApprox(guide, args, kwargs), float(vals.mean()), float(vals.std() / math.sqrt(final_particles)),
                    torch.tensor(trace, dtype=torch.float64), step + 1, converged, "pyro-svi")
