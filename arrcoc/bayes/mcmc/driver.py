"""One driver for every kernel: initialise, warm up (adapt), draw, collect (chain, draw, ...) results, check.

``sample`` validates its arguments, picks the initial positions (``initialization.py``), builds one
``RunSpec`` and hands it to the run loop the kernel needs (lock-step: one transition of every chain per
step; asynchronous: every chain advances a slice of its own transition per step), then runs the
post-run checks (``checks.py``) and warns about what they find.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from ._validate import check_generator, check_int, check_kernel
from .base import Kernel, as_model, safe_logdensity
from .checks import DiagnosticsConfig, MCMCDiagnosticWarning, MCMCWarning, RunDiagnostics, diagnose
from .compiled import CompileConfig, CompiledLogDensity, compile_logdensity
from .initialization import OptimizeInit, UniformInit, as_init_strategy

__all__ = ["MCMCResult", "RunSpec", "sample", "torch_threads", "distribution_validation"]


@dataclass
class MCMCResult:
    """Draws and per-draw sampler information.

    draws: name -> (chain, draw, *shape) in constrained space.  info: name -> (chain, draw) per-draw
    statistics (accept_prob, is_divergent, energy, step_size, tree_depth, num_steps, ...).
    unconstrained: the flat unconstrained draws (chain, draw, d).  params: the kernel parameters
    after warmup (step size, metric, ...).  warmup_info: the info of the warmup iterations.
    warnings: the post-run checks' findings (``MCMCWarning``: kind, message, chains), issued as
    ``MCMCDiagnosticWarning`` unless ``sample(..., warn=False)``.  diagnostics: the numbers behind
    them (``RunDiagnostics``: divergences, max tree depth hits, max R-hat, min bulk / tail ESS,
    warmup-end log density per chain, stuck chains, runaway coordinates).
    """
    draws: dict[str, torch.Tensor]
    info: dict[str, torch.Tensor]
    unconstrained: torch.Tensor
    params: Any = None
    warmup_info: dict[str, torch.Tensor] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[MCMCWarning] = field(default_factory=list)
    diagnostics: RunDiagnostics | None = None

    @property
    def num_chains(self) -> int:
        return self.unconstrained.shape[0]

    @property
    def num_draws(self) -> int:
        return self.unconstrained.shape[1]

    @property
    def num_divergent(self) -> int:
        """Divergent transitions after warmup (0 if the kernel does not report them)."""
        d = self.info.get("is_divergent")
        return 0 if d is None else int(d.sum())

    def summary(self, prob: float | None = None, var_names=None):
        """Posterior summary table (mean, sd, interval, MCSE, ESS, R-hat) via arrcoc.bayes.diagnostics
        (its defaults: 89 % HDI)."""
        from arrcoc.bayes.diagnostics import summary
        return summary(self.draws, prob=prob, var_names=var_names)

    def to_inference_data(self, **kwargs):
        """ArviZ InferenceData with the draws as posterior and the info as sample_stats."""
        from arrcoc.bayes.arviz_io import to_inference_data
        rename = {"accept_prob": "acceptance_rate", "is_divergent": "diverging", "num_steps": "n_steps"}
        stats = {rename.get(k, k): v for k, v in self.info.items() if v.dim() == 2}
        return to_inference_data(self.draws, sample_stats=stats, **kwargs)

    def plot_trace(self, var_names=None, **kwargs):
        """Trace plot per scalar parameter (one line per chain); returns the matplotlib Figure."""
        from .plots import plot_trace
        return plot_trace(self.draws, var_names=var_names, **kwargs)

    def plot_rank(self, var_names=None, **kwargs):
        """Rank histograms per chain; returns the Figure."""
        from .plots import plot_rank
        return plot_rank(self.draws, var_names=var_names, **kwargs)

    def plot_autocorr(self, var_names=None, **kwargs):
        """Autocorrelation per chain; returns the Figure."""
        from .plots import plot_autocorr
        return plot_autocorr(self.draws, var_names=var_names, **kwargs)


@dataclass(frozen=True)
class RunSpec:
    """Everything a run loop needs, fixed before it starts."""
    kernel: Kernel
    logdensity_fn: Callable            # flat (C, d) -> (C,), compiled or not
    generator: torch.Generator
    num_warmup: int
    num_samples: int
    thin: int
    keep_warmup_info: bool
    progress: Any = None               # a tqdm bar or None

    @property
    def num_transitions(self) -> int:
        return self.num_warmup + self.num_samples * self.thin


@dataclass
class _RunOutput:
    unconstrained: torch.Tensor        # (C, S, d)
    info: dict[str, torch.Tensor]
    warmup_info: dict[str, torch.Tensor]
    params: Any
    warmup_logdensity: torch.Tensor    # (C, num_warmup) the log density of every warmup draw
    warmup_end: float                  # perf_counter at the end of warmup
    end: float


@contextlib.contextmanager
def torch_threads(num_threads: int | None):
    """torch's intra-op thread count set for the block and restored after it (None: left alone)."""
    if num_threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def distribution_validation(enabled: bool):
    """torch.distributions' default argument checking set for the block and restored after it."""
    old = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(enabled)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(old)


def _explicit_positions(model, init, num_chains, dim, generator, dtype, device):
    """Flat unconstrained (C, d) positions from a tensor, a dict of constrained values, or a callable."""
    if callable(init) and not isinstance(init, torch.Tensor):
        init = init(generator)
    if isinstance(init, Mapping):
        x = model.unconstrain({k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in init.items()})
    else:
        x = torch.as_tensor(init, dtype=dtype, device=device)
    x = x.to(dtype=dtype, device=device)
    if x.dim() == 1:
        x = x.expand(num_chains, -1).clone()
    if x.dim() != 2 or x.shape[0] != num_chains or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"init must give positions of shape (num_chains, dim) = ({num_chains}, {dim}) or (dim,), "
                         f"got {tuple(x.shape)}")
    return x


def _initial_positions(kernel, model, fn, init, num_chains, dim, generator, dtype, device, max_init_tries):
    """Flat unconstrained (C, d) starts with a finite log density: explicit positions (a tensor, dict,
    or callable; a callable is retried like a random strategy) or a strategy (``initialization.py``)."""
    if init is None:
        init = kernel.default_init
    strategy = as_init_strategy(init) if isinstance(init, (str, UniformInit, OptimizeInit)) else None
    if strategy is None:
        def draw():
            return _explicit_positions(model, init, num_chains, dim, generator, dtype, device)
        retry = callable(init) and not isinstance(init, (torch.Tensor, Mapping))
        per_chain = 1
    else:
        if dim is None:
            raise ValueError("cannot infer the dimension: pass dim=... or init=... for a plain log density")
        per_chain = strategy.candidates_per_chain()
        rows = num_chains * per_chain

        def draw():
            return strategy.draw((rows, dim), generator, dtype, device)
        retry = True
    x = draw()
    logp = safe_logdensity(fn, x)
    for tries in range(1, max_init_tries + 1):
        bad = ~torch.isfinite(logp)
        if not bool(bad.any()):
            break
        if not retry:
            raise ValueError(f"log density is not finite at the given init for chains {bad.nonzero().flatten().tolist()}")
        if tries == max_init_tries:
            chains = sorted(set((bad.nonzero().flatten() // per_chain).tolist()))
            raise ValueError(f"could not find an initial point with finite log density in {max_init_tries} tries "
                             f"(chains {chains}); pass init=... explicitly")
        x = torch.where(bad.unsqueeze(-1), draw(), x)
        logp = safe_logdensity(fn, x)
    if strategy is not None:
        x = strategy.positions(fn, x, logp, num_chains).to(dtype)
    return x


def _logdensity_fn(model, compile):
    """The flat log density the kernels evaluate, compiled as ``compile`` asks."""
    fn = model.logdensity if hasattr(model, "logdensity") and callable(model.logdensity) else model
    if isinstance(compile, CompiledLogDensity):           # reuse the graphs an earlier run compiled
        if isinstance(fn, CompiledLogDensity):
            raise ValueError("logdensity_fn is already a CompiledLogDensity; pass compile=False")
        if compile.fn != fn:
            raise ValueError("compile is a CompiledLogDensity of another function; build it from this "
                             "model's logdensity (compile_logdensity(model)) or pass compile=True")
        return compile
    if not isinstance(compile, (bool, CompileConfig)):
        raise TypeError(f"compile must be True, False, a CompileConfig or a CompiledLogDensity, got {compile!r}")
    if compile is not False:
        return compile_logdensity(fn, None if compile is True else compile)
    return fn


def sample(kernel, logdensity_fn, *, num_chains: int, num_warmup: int, num_samples: int,
           generator: torch.Generator, init=None, dim: int | None = None, thin: int = 1,
           progress: bool = True, dtype: torch.dtype | None = None, device=None,
           max_init_tries: int = 100, keep_warmup_info: bool = True,
           num_threads: int | None = None,
           compile: bool | CompileConfig | CompiledLogDensity = False,
           warn: bool | DiagnosticsConfig = True) -> MCMCResult:
    """Run ``kernel`` on ``num_chains`` chains at once: warmup (adaptation), then draws, then checks.

    kernel: a ``Kernel`` (NUTS(), HMC(), RWMH(), Gibbs(...), ParallelTempering(...),
        DelayedAcceptance(...), or a subclass of ``Kernel``).
    logdensity_fn: a callable (C, d) -> (C,) over flat unconstrained positions (pass ``dim`` or
        ``init``), a ``Model`` (named constrained parameters) or a ``PyroModel``.
    init: a strategy, "optimize" (``OptimizeInit``: several uniform candidates per chain refined by a
        short gradient ascent, each chain starting at its best; the default of NUTS and HMC) or
        "uniform" (``UniformInit``: uniform(-2, 2) in unconstrained space, Stan's; the default of the
        other kernels), or a strategy object with its own settings; None: the kernel's default.
        Random draws are retried up to ``max_init_tries`` times while the log density is not finite.
        Or explicit positions: a tensor (d,) or (C, d) of unconstrained positions, a dict name ->
        constrained values (for a Model), or a callable(generator) returning either (retried).
    thin: keep every thin-th draw.  progress: tqdm progress bar.  dtype: default float64.
    num_threads: torch intra-op threads during the run (restored afterwards); None leaves the
        setting alone.  MCMC on small models runs many tiny ops, where 1 thread is usually fastest.
    compile: True or a ``CompileConfig``: evaluate the log density and its gradient as one
        compiled graph (``CompiledLogDensity``; with NUTS, the whole leapfrog step): a one-off
        compile of seconds, then steps several times faster on small and medium models.  Needs
        a C++ compiler on CPU; if the function cannot be traced as one graph it falls back (with a
        warning) to a compiled forward + autograd.  A ``CompiledLogDensity`` of this model
        (``compile_logdensity(model)``) reuses the graphs an earlier run with it compiled, so a
        second run on the same model, chains and tree depth compiles nothing.
    warn: after the run, issue the checks' findings (divergences, max tree depth, R-hat, ESS, far
        chain means, stuck chains at the end of warmup, runaway draws; ``checks.py``) as
        ``MCMCDiagnosticWarning``, one line each.  False keeps them in the result silently; a
        ``DiagnosticsConfig`` sets the thresholds (and warns).
    Returns an MCMCResult with draws (chain, draw, ...) in constrained space, ``warnings`` and
    ``diagnostics``.
    """
    check_generator(generator)
    check_kernel(kernel)
    num_chains = check_int(num_chains, "num_chains", minimum=1)
    num_warmup = check_int(num_warmup, "num_warmup", minimum=0)
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    thin = check_int(thin, "thin", minimum=1)
    max_init_tries = check_int(max_init_tries, "max_init_tries", minimum=1)
    if num_threads is not None:
        num_threads = check_int(num_threads, "num_threads", minimum=1)
    if not isinstance(warn, (bool, DiagnosticsConfig)):
        raise TypeError(f"warn must be True, False or a DiagnosticsConfig, got {warn!r}")
    for name, flag in (("progress", progress), ("keep_warmup_info", keep_warmup_info)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    model = as_model(logdensity_fn, dim)
    dim = model.dim if model.dim is not None else dim
    if dim is not None:
        dim = check_int(dim, "dim", minimum=1)
    if dtype is None:
        dtype = init.dtype if isinstance(init, torch.Tensor) and init.is_floating_point() else torch.float64
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    if device is None:
        device = init.device if isinstance(init, torch.Tensor) else generator.device
    device = torch.device(device)
    if device.type != generator.device.type:
        raise ValueError(f"generator lives on {generator.device} but the chains on {device}")
    fn = _logdensity_fn(model, compile)
    config = warn if isinstance(warn, DiagnosticsConfig) else DiagnosticsConfig()

    with torch_threads(num_threads):
        x = _initial_positions(kernel, model, fn, init, num_chains, dim, generator, dtype, device, max_init_tries)
        pbar = None
        if progress:
            from tqdm.auto import tqdm
            pbar = tqdm(total=num_warmup + num_samples * thin, desc="warmup", leave=False)
        spec = RunSpec(kernel, fn, generator, num_warmup, num_samples, thin, keep_warmup_info, pbar)
        # The log density was validated at the initial points; during the run, torch.distributions'
        # argument checks are switched off (as NumPyro does) so that a trajectory that leaves the
        # support (a scale underflowing to 0) gives a NaN / -inf log density, counted as divergent.
        try:
            with distribution_validation(False):
                result, warmup_logdensity = _run(spec, model, x)
        finally:
            if pbar is not None:
                pbar.close()
    result.diagnostics, result.warnings = diagnose(result.draws, result.unconstrained, result.info,
                                                   kernel.max_depth_hits(result.info), warmup_logdensity, config)
    if warn is not False:
        for finding in result.warnings:
            warnings.warn(finding.message, MCMCDiagnosticWarning, stacklevel=2)
    return result


def _run(spec: RunSpec, model, x: torch.Tensor) -> tuple[MCMCResult, torch.Tensor]:
    """Initialise the kernel, run the loop, constrain the draws; also returns the warmup log densities."""
    t0 = time.perf_counter()
    fn, kernel = spec.logdensity_fn, spec.kernel
    # a reused CompiledLogDensity carries an earlier run's compile time: report this run's only
    compiled_before = fn.compile_seconds if isinstance(fn, CompiledLogDensity) else 0.0
    with torch.no_grad():
        state = kernel.init(x, fn)
        params = kernel.init_params(state, fn, spec.generator)
        adapter = kernel.warmup(spec.num_warmup, fn) if spec.num_warmup > 0 else None
        adaptation_state = adapter.init(state, params) if adapter is not None else None
        loop = _run_async if kernel.is_asynchronous(fn) else _run_lockstep
        out = loop(spec, state, params, adapter, adaptation_state)
        unc = out.unconstrained
        flat = unc.reshape(-1, unc.shape[-1])
        draws = {k: v.reshape(unc.shape[:2] + v.shape[1:]) for k, v in model.constrain(flat).items()}
    timings = {"warmup_s": out.warmup_end - t0, "sampling_s": out.end - out.warmup_end}
    if isinstance(fn, CompiledLogDensity):
        timings["compile_s"] = fn.compile_seconds - compiled_before    # this run's; included in warmup_s
    return MCMCResult(draws, out.info, unc, out.params, out.warmup_info, timings), out.warmup_logdensity


def _run_lockstep(spec: RunSpec, state, params, adapter, adaptation_state) -> _RunOutput:
    """Drive a kernel whose ``step`` is one transition of every chain."""
    kernel, fn, generator, pbar = spec.kernel, spec.logdensity_fn, spec.generator, spec.progress
    warm_infos, warm_logdensity = [], []
    for _ in range(spec.num_warmup):
        state, info = kernel.step(state, generator, fn, params)
        if adapter is not None:
            adaptation_state, params = adapter.update(adaptation_state, state, info, params, generator)
        if spec.keep_warmup_info:
            warm_infos.append(info)
        warm_logdensity.append(kernel.draw_logdensity(state))
        if pbar is not None:
            pbar.update(1)
    if adapter is not None:
        params = adapter.final(adaptation_state, params)
    warmup_end = time.perf_counter()
    if pbar is not None:
        pbar.set_description("sampling")
    positions, infos = [], []
    thin = spec.thin
    for i in range(spec.num_samples * thin):
        state, info = kernel.step(state, generator, fn, params)
        if (i + 1) % thin == 0:
            positions.append(kernel.draw_position(state))
            infos.append(info)
        if pbar is not None:
            pbar.update(1)
            if (i + 1) % 100 == 0 and "is_divergent" in info._fields:
                pbar.set_postfix(divergent=int(sum(int(f.is_divergent.sum()) for f in infos)))
    end = time.perf_counter()
    unc = torch.stack(positions, 1)                                    # (C, S, d)
    C = unc.shape[0]
    warm_lp = torch.stack(warm_logdensity, 1) if warm_logdensity else unc.new_empty(C, 0)   # (C, W)
    return _RunOutput(unc, _stack(infos), _stack(warm_infos) if warm_infos else {}, params, warm_lp, warmup_end, end)


def _run_async(spec: RunSpec, state, params, adapter, adaptation_state) -> _RunOutput:
    """Drive an asynchronous kernel: each ``step`` advances every chain a little and ``info.finished``
    marks the chains whose transition ended.  A chain adapts after each of its own warmup transitions,
    switches to sampling after its num_warmup-th, and is recorded until it has its num_samples draws;
    chains that are done keep stepping (their extra transitions are discarded) until all are.
    Bookkeeping runs on Python ints (one host sync per step) so that it costs little next to a step."""
    kernel, fn, generator, pbar = spec.kernel, spec.logdensity_fn, spec.generator, spec.progress
    num_warmup, num_samples, thin = spec.num_warmup, spec.num_samples, spec.thin
    C, d = state.position.shape
    dev, dt = state.position.device, state.position.dtype
    total = spec.num_transitions
    counts = [0] * C                                                   # transitions completed per chain
    unc = state.position.new_empty(C, num_samples, d)                 # (C, S, d)
    names = [n for n in kernel.info_fields if n != "finished"]   # per-draw info, packed as (C, F)
    info_buf = torch.zeros(C, num_samples, len(names), dtype=dt, device=dev)   # (C, S, F)
    warm_buf = torch.zeros(C, num_warmup if spec.keep_warmup_info else 0, len(names), dtype=dt, device=dev)
    warm_lp = torch.zeros(C, num_warmup, dtype=dt, device=dev)         # (C, W)
    warmup_end = time.perf_counter() if num_warmup == 0 else None
    dtypes = {}
    while True:
        state, info = kernel.step(state, generator, fn, params)
        fin = info.finished.tolist()
        chains = [c for c in range(C) if fin[c] and counts[c] < total]
        if not chains:
            continue
        warm = [c for c in chains if counts[c] < num_warmup]
        if warm and adapter is not None:
            mask = torch.zeros(C, dtype=torch.bool, device=dev)
            mask[warm] = True
            adaptation_state, params = adapter.update(adaptation_state, state, info, params, generator, mask=mask)
            last = [c for c in warm if counts[c] == num_warmup - 1]
            if last:
                mask = torch.zeros(C, dtype=torch.bool, device=dev)
                mask[last] = True
                params = adapter.final(adaptation_state, params, mask=mask)
        if not dtypes:
            dtypes = {n: getattr(info, n).dtype for n in names}
        packed = torch.stack([getattr(info, n).to(dt) for n in names], -1)   # (C, F)
        if warm:
            draw_lp = kernel.draw_logdensity(state)
        for c in chains:
            i = counts[c]
            if i < num_warmup:
                warm_lp[c, i] = draw_lp[c]
                if spec.keep_warmup_info:
                    warm_buf[c, i] = packed[c]
            elif (i - num_warmup + 1) % thin == 0:
                col = (i - num_warmup + 1) // thin - 1
                unc[c, col] = kernel.draw_position(state)[c]
                info_buf[c, col] = packed[c]
            counts[c] = i + 1
        low = min(counts)
        if pbar is not None and low > pbar.n:
            pbar.update(low - pbar.n)
            if low >= num_warmup:
                pbar.set_description("sampling")
        if warmup_end is None and low >= num_warmup:
            warmup_end = time.perf_counter()
        if low >= total:
            break
    end = time.perf_counter()

    def unpack(buf):
        return {n: buf[..., k].to(dtypes.get(n, dt)) for k, n in enumerate(names)} if buf.shape[1] else {}
    return _RunOutput(unc, unpack(info_buf), unpack(warm_buf), params, warm_lp, warmup_end, end)


def _stack(infos) -> dict[str, torch.Tensor]:
    out = {}
    if not infos:
        return out
    for name in infos[0]._fields:
        vals = [getattr(i, name) for i in infos]
        if all(isinstance(v, torch.Tensor) and v.dim() >= 1 for v in vals):
            out[name] = torch.stack(vals, 1)                           # (C, S, ...)
    return out
