"""One driver for every kernel: initialise, warm up (adapt), draw, and collect (chain, draw, ...) results."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from .base import as_model, check_generator, safe_logdensity, uniform_like
from .compiled import CompileConfig, CompiledLogDensity, compile_logdensity

__all__ = ["MCMCResult", "sample"]


@dataclass
class MCMCResult:
    """Draws and per-draw sampler information.

    draws: name -> (chain, draw, *shape) in constrained space.  info: name -> (chain, draw) per-draw
    statistics (accept_prob, is_divergent, energy, step_size, tree_depth, num_steps, ...).
    unconstrained: the flat unconstrained draws (chain, draw, d).  params: the kernel parameters
    after warmup (step size, metric, ...).  warmup_info: the info of the warmup iterations.
    """
    draws: dict[str, torch.Tensor]
    info: dict[str, torch.Tensor]
    unconstrained: torch.Tensor
    params: Any = None
    warmup_info: dict[str, torch.Tensor] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

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


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _initial_positions(model, init, num_chains, dim, generator, dtype, device):
    """Flat unconstrained (C, d) initial positions."""
    if init is None:
        if dim is None:
            raise ValueError("cannot infer the dimension: pass dim=... or init=... for a plain log density")
        return uniform_like((num_chains, dim), generator, dtype, device)
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


def sample(kernel, logdensity_fn, *, num_chains: int, num_warmup: int, num_samples: int,
           generator: torch.Generator, init=None, dim: int | None = None, thin: int = 1,
           progress: bool = True, dtype: torch.dtype | None = None, device=None,
           max_init_tries: int = 100, keep_warmup_info: bool = True,
           num_threads: int | None = None,
           compile: bool | CompileConfig | CompiledLogDensity = False) -> MCMCResult:
    """Run ``kernel`` on ``num_chains`` chains at once: warmup (adaptation), then draws.

    kernel: a kernel object (NUTS(), HMC(), RWMH(), Gibbs(...), ParallelTempering(...),
        DelayedAcceptance(...)) with init / init_params / step / warmup.
    logdensity_fn: a callable (C, d) -> (C,) over flat unconstrained positions (pass ``dim`` or
        ``init``), a ``Model`` (named constrained parameters) or a ``PyroModel``.
    init: None (uniform(-2, 2) in unconstrained space, retried up to ``max_init_tries`` times per
        chain while the log density is not finite), a tensor (d,) or (C, d) of unconstrained
        positions, a dict name -> constrained values (for a Model), or a callable(generator)
        returning either (retried like the default).
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
    Returns an MCMCResult with draws (chain, draw, ...) in constrained space.
    """
    if num_threads is not None:
        _check_int("num_threads", num_threads, 1)
        old = torch.get_num_threads()
        torch.set_num_threads(num_threads)
        try:
            return sample(kernel, logdensity_fn, num_chains=num_chains, num_warmup=num_warmup,
                          num_samples=num_samples, generator=generator, init=init, dim=dim, thin=thin,
                          progress=progress, dtype=dtype, device=device, max_init_tries=max_init_tries,
                          keep_warmup_info=keep_warmup_info, num_threads=None, compile=compile)
        finally:
            torch.set_num_threads(old)
    check_generator(generator)
    for name in ("init", "init_params", "step"):
        if not callable(getattr(kernel, name, None)):
            raise TypeError(f"kernel must provide {name}(...); got {type(kernel).__name__}")
    _check_int("num_chains", num_chains, 1)
    _check_int("num_warmup", num_warmup, 0)
    _check_int("num_samples", num_samples, 1)
    _check_int("thin", thin, 1)
    _check_int("max_init_tries", max_init_tries, 1)
    model = as_model(logdensity_fn, dim)
    dim = model.dim if model.dim is not None else dim
    if dim is not None:
        _check_int("dim", dim, 1)
    if dtype is None:
        dtype = init.dtype if isinstance(init, torch.Tensor) and init.is_floating_point() else torch.float64
    if device is None:
        device = init.device if isinstance(init, torch.Tensor) else generator.device
    device = torch.device(device)
    if device.type != generator.device.type:
        raise ValueError(f"generator lives on {generator.device} but the chains on {device}")
    fn = model.logdensity if hasattr(model, "logdensity") and callable(model.logdensity) else model
    if isinstance(compile, CompiledLogDensity):           # reuse the graphs an earlier run compiled
        if isinstance(fn, CompiledLogDensity):
            raise ValueError("logdensity_fn is already a CompiledLogDensity; pass compile=False")
        if compile.fn != fn:
            raise ValueError("compile is a CompiledLogDensity of another function; build it from this "
                             "model's logdensity (compile_logdensity(model)) or pass compile=True")
        fn = compile
    elif not isinstance(compile, (bool, CompileConfig)):
        raise TypeError(f"compile must be True, False, a CompileConfig or a CompiledLogDensity, "
                        f"got {compile!r}")
    elif compile is not False:
        fn = compile_logdensity(fn, None if compile is True else compile)

    # ---- initial positions with finite log density
    random_init = init is None or (callable(init) and not isinstance(init, (torch.Tensor, Mapping)))
    x = _initial_positions(model, init, num_chains, dim, generator, dtype, device)
    dim = x.shape[1]
    logp = safe_logdensity(fn, x)
    tries = 1
    while not bool(torch.isfinite(logp).all()):
        bad = ~torch.isfinite(logp)
        if not random_init:
            raise ValueError(f"log density is not finite at the given init for chains {bad.nonzero().flatten().tolist()}")
        if tries >= max_init_tries:
            raise ValueError(f"could not find an initial point with finite log density in {max_init_tries} tries "
                             f"(chains {bad.nonzero().flatten().tolist()}); pass init=... explicitly")
        fresh = _initial_positions(model, init, num_chains, dim, generator, dtype, device)
        x = torch.where(bad.unsqueeze(-1), fresh, x)
        logp = safe_logdensity(fn, x)
        tries += 1

    draw_position = getattr(kernel, "draw_position", None) or (lambda s: s.position)
    pbar = None
    if progress:
        from tqdm.auto import tqdm
        pbar = tqdm(total=num_warmup + num_samples * thin, desc="warmup", leave=False)

    # The log density was validated at the initial points; during the run, torch.distributions'
    # argument checks are switched off (as NumPyro does) so that a trajectory that leaves the support
    # (a scale underflowing to 0) gives a NaN / -inf log density, counted as divergent, not a crash.
    validate = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        return _run(kernel, model, fn, x, generator, num_warmup, num_samples, thin, keep_warmup_info, pbar,
                    draw_position)
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)
        if pbar is not None:
            pbar.close()


def _run(kernel, model, fn, x, generator, num_warmup, num_samples, thin, keep_warmup_info, pbar, draw_position):
    t0 = time.perf_counter()
    # a reused CompiledLogDensity carries an earlier run's compile time: report this run's only
    compiled_before = fn.compile_seconds if isinstance(fn, CompiledLogDensity) else 0.0
    with torch.no_grad():
        state = kernel.init(x, fn)
        params = kernel.init_params(state, fn, generator)
        adapter = kernel.warmup(num_warmup, fn) if num_warmup > 0 else None
        astate = adapter.init(state, params) if adapter is not None else None
        run = _run_async if getattr(kernel, "is_asynchronous", lambda fn: False)(fn) else _run_lockstep
        unc, info, winfo, params, t1, t2 = run(kernel, state, params, adapter, astate, fn, generator, num_warmup,
                                               num_samples, thin, keep_warmup_info, pbar, draw_position)
        flat = unc.reshape(-1, unc.shape[-1])
        draws = {k: v.reshape(unc.shape[:2] + v.shape[1:]) for k, v in model.constrain(flat).items()}
    timings = {"warmup_s": t1 - t0, "sampling_s": t2 - t1}
    if isinstance(fn, CompiledLogDensity):
        timings["compile_s"] = fn.compile_seconds - compiled_before    # this run's; included in warmup_s
    return MCMCResult(draws, info, unc, params, winfo, timings)


def _run_lockstep(kernel, state, params, adapter, astate, fn, generator, num_warmup, num_samples, thin,
                  keep_warmup_info, pbar, draw_position):
    """Drive a kernel whose ``step`` is one transition of every chain."""
    warm_infos = []
    for i in range(num_warmup):
        state, info = kernel.step(state, generator, fn, params)
        if adapter is not None:
            astate, params = adapter.update(astate, state, info, params, generator)
        if keep_warmup_info:
            warm_infos.append(info)
        if pbar is not None:
            pbar.update(1)
    if adapter is not None:
        params = adapter.final(astate, params)
    t1 = time.perf_counter()
    if pbar is not None:
        pbar.set_description("sampling")
    positions, infos = [], []
    for i in range(num_samples * thin):
        state, info = kernel.step(state, generator, fn, params)
        if (i + 1) % thin == 0:
            positions.append(draw_position(state))
            infos.append(info)
        if pbar is not None:
            pbar.update(1)
            if (i + 1) % 100 == 0 and "is_divergent" in info._fields:
                pbar.set_postfix(divergent=int(sum(int(f.is_divergent.sum()) for f in infos)))
    t2 = time.perf_counter()
    unc = torch.stack(positions, 1)                                    # (C, S, d)
    return unc, _stack(infos), _stack(warm_infos) if warm_infos else {}, params, t1, t2


def _run_async(kernel, state, params, adapter, astate, fn, generator, num_warmup, num_samples, thin,
               keep_warmup_info, pbar, draw_position=None):
    """Drive an asynchronous kernel: each ``step`` advances every chain a little and ``info.finished``
    marks the chains whose transition ended.  A chain adapts after each of its own warmup transitions,
    switches to sampling after its num_warmup-th, and is recorded until it has its num_samples draws;
    chains that are done keep stepping (their extra transitions are discarded) until all are.
    Bookkeeping runs on Python ints (one host sync per step) so that it costs little next to a step."""
    C, d = state.position.shape
    dev, dt = state.position.device, state.position.dtype
    total = num_warmup + num_samples * thin
    counts = [0] * C                                                   # transitions completed per chain
    unc = state.position.new_empty(C, num_samples, d)                 # (C, S, d)
    names = [n for n in kernel.info_fields if n != "finished"]   # per-draw info, packed as (C, F)
    info_buf = torch.zeros(C, num_samples, len(names), dtype=dt, device=dev)   # (C, S, F)
    warm_buf = torch.zeros(C, num_warmup if keep_warmup_info else 0, len(names), dtype=dt, device=dev)
    t1 = time.perf_counter() if num_warmup == 0 else None
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
            astate, params = adapter.update(astate, state, info, params, generator, mask=mask)
            last = [c for c in warm if counts[c] == num_warmup - 1]
            if last:
                mask = torch.zeros(C, dtype=torch.bool, device=dev)
                mask[last] = True
                params = adapter.final(astate, params, mask=mask)
        if not dtypes:
            dtypes = {n: getattr(info, n).dtype for n in names}
        packed = torch.stack([getattr(info, n).to(dt) for n in names], -1)   # (C, F)
        for c in chains:
            i = counts[c]
            if i < num_warmup:
                if keep_warmup_info:
                    warm_buf[c, i] = packed[c]
            elif (i - num_warmup + 1) % thin == 0:
                col = (i - num_warmup + 1) // thin - 1
                unc[c, col] = state.position[c]
                info_buf[c, col] = packed[c]
            counts[c] = i + 1
        low = min(counts)
        if pbar is not None and low > pbar.n:
            pbar.update(low - pbar.n)
            if low >= num_warmup:
                pbar.set_description("sampling")
        if t1 is None and low >= num_warmup:
            t1 = time.perf_counter()
        if low >= total:
            break
    t2 = time.perf_counter()

    def unpack(buf):
        return {n: buf[..., k].to(dtypes.get(n, dt)) for k, n in enumerate(names)} if buf.shape[1] else {}
    return unc, unpack(info_buf), unpack(warm_buf), params, t1, t2


def _stack(infos) -> dict[str, torch.Tensor]:
    out = {}
    if not infos:
        return out
    for name in infos[0]._fields:
        vals = [getattr(i, name) for i in infos]
        if all(isinstance(v, torch.Tensor) and v.dim() >= 1 for v in vals):
            out[name] = torch.stack(vals, 1)                           # (C, S, ...)
    return out
