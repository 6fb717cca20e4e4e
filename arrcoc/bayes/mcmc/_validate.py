"""Boundary checks of the MCMC engine: kernel settings (at construction) and ``sample``'s arguments.

Built on the toolkit's ``arrcoc.bayes._validate``; every check names the argument and says what was
expected.  The algorithms themselves do not re-check what passed here.
"""
from __future__ import annotations

from .._validate import check_generator, check_int, check_probability, check_real

__all__ = ["check_generator", "check_int", "check_step_size", "check_positive", "check_choice", "check_kernel",
           "check_hmc_settings", "check_mh_settings", "check_adaptation"]


def check_step_size(value, name: str = "step_size"):
    """None (the kernel's heuristic) or a positive, finite number."""
    if value is None:
        return None
    return check_real(value, name, low=0.0, low_open=True)


def check_positive(value, name: str) -> float:
    """A positive, finite number (a threshold, a scale)."""
    return check_real(value, name, low=0.0, low_open=True)


def check_choice(value, name: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_kernel(kernel):
    """A kernel of this package (a subclass of ``arrcoc.bayes.mcmc.Kernel``)."""
    from .base import Kernel
    if not isinstance(kernel, Kernel):
        raise TypeError("kernel must be an arrcoc.bayes.mcmc Kernel (NUTS(), HMC(), RWMH(), ... or a subclass of "
                        f"Kernel implementing init, init_params and step), got {type(kernel).__name__}")
    return kernel


def check_hmc_settings(kernel) -> None:
    """The settings HMC and NUTS share."""
    from .integrators import INTEGRATORS
    check_choice(kernel.metric, "metric", ("diag", "dense"))
    check_choice(kernel.integrator, "integrator", INTEGRATORS)
    check_step_size(kernel.step_size)
    check_probability(kernel.target_accept, "target_accept")
    check_positive(kernel.max_delta_energy, "max_delta_energy")
    check_adaptation(kernel.adaptation)


def check_mh_settings(kernel) -> None:
    """The settings of the random-walk kernels (RWMH, delayed acceptance)."""
    check_choice(kernel.metric, "metric", ("diag", "dense"))
    check_step_size(kernel.step_size)
    if kernel.target_accept is not None:
        check_probability(kernel.target_accept, "target_accept")
    check_adaptation(kernel.adaptation)


def check_adaptation(cfg) -> None:
    """An ``AdaptationConfig`` with usable values."""
    from .adaptation import AdaptationConfig
    if not isinstance(cfg, AdaptationConfig):
        raise TypeError(f"adaptation must be an AdaptationConfig, got {type(cfg).__name__}")
