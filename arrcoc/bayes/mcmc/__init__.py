"""MCMC engine: chain-vectorised kernels (RWMH, Gibbs, HMC, NUTS, parallel tempering, delayed
acceptance) as pure init/step functions over NamedTuple states, Stan-style warmup, and one driver.

Layout (imports point down the list): ``_validate`` (boundary checks), ``compiled`` (compiled log
densities and the compiled-step cache), ``metrics``, ``base`` (the ``Kernel`` protocol, ``Model``,
value and gradient), ``integrators``, ``adaptation``, ``hmc``, ``trajectory`` (the NUTS tree pieces),
``nuts_async`` / ``nuts`` (the two NUTS batchings and the kernel), ``mh``, ``gibbs``, ``tempering``,
``delayed_acceptance``, ``initialization`` (init strategies), ``checks`` (post-run diagnostics),
``driver`` (``sample``).

    >>> import torch
    >>> from arrcoc.bayes.mcmc import NUTS, sample
    >>> res = sample(NUTS(), lambda x: -0.5 * (x ** 2).sum(-1), num_chains=4, num_warmup=200,
    ...              num_samples=200, generator=torch.Generator().manual_seed(0), dim=3, progress=False)
    >>> res.draws["x"].shape
    torch.Size([4, 200, 3])
"""
from .adaptation import (AdaptationConfig, DualAveragingState, WelfordState, WindowAdaptation, dual_averaging_final,
                         dual_averaging_init, dual_averaging_update, welford_covariance, welford_init, welford_update,
                         window_schedule)
from .base import Adaptation, Kernel, Model, as_model, safe_logdensity, sample_distribution, value_and_grad
from .checks import DiagnosticsConfig, MCMCDiagnosticWarning, MCMCWarning, RunDiagnostics
from .compiled import CompileConfig, CompiledLogDensity, compile_logdensity
from .delayed_acceptance import DAInfo, DAState, DelayedAcceptance, delayed_acceptance_step
from .driver import MCMCResult, RunSpec, sample
from .gibbs import Conditional, ConjugateConditional, Gibbs, GibbsInfo, GibbsParams, GibbsState, MetropolisBlock
from .hmc import HMC, HMCInfo, HMCParams, HMCState, find_reasonable_step_size, hamiltonian, hmc_init, hmc_step
from .initialization import OptimizeInit, UniformInit
from .integrators import INTEGRATORS, IntegratorState, leapfrog, leapfrog_raw, leapfrog_step, mclachlan
from .metrics import Metric, identity_metric, kinetic_energy, make_metric, sample_momentum, velocity
from .mh import RWMH, MHInfo, MHParams, MHState, proposal_noise, rwmh_init, rwmh_step
from .nuts import NUTS, NUTSInfo, nuts_step
from .pyro_bridge import PyroModel
from .tempering import ParallelTempering, TemperingInfo, TemperingState, geometric_betas

__all__ = [
    "CompileConfig", "CompiledLogDensity", "compile_logdensity",
    "AdaptationConfig", "DualAveragingState", "WelfordState", "WindowAdaptation", "dual_averaging_final",
    "dual_averaging_init", "dual_averaging_update", "welford_covariance", "welford_init", "welford_update",
    "window_schedule",
    "Adaptation", "Kernel", "Model", "as_model", "safe_logdensity", "sample_distribution", "value_and_grad",
    "DiagnosticsConfig", "MCMCDiagnosticWarning", "MCMCWarning", "RunDiagnostics",
    "OptimizeInit", "UniformInit",
    "DAInfo", "DAState", "DelayedAcceptance", "delayed_acceptance_step",
    "MCMCResult", "RunSpec", "sample",
    "Conditional", "ConjugateConditional", "Gibbs", "GibbsInfo", "GibbsParams", "GibbsState", "MetropolisBlock",
    "HMC", "HMCInfo", "HMCParams", "HMCState", "find_reasonable_step_size", "hamiltonian", "hmc_init", "hmc_step",
    "INTEGRATORS", "IntegratorState", "leapfrog", "leapfrog_raw", "leapfrog_step", "mclachlan",
    "Metric", "identity_metric", "kinetic_energy", "make_metric", "sample_momentum", "velocity",
    "RWMH", "MHInfo", "MHParams", "MHState", "proposal_noise", "rwmh_init", "rwmh_step",
    "NUTS", "NUTSInfo", "nuts_step",
    "PyroModel",
    "ParallelTempering", "TemperingInfo", "TemperingState", "geometric_betas",
]
