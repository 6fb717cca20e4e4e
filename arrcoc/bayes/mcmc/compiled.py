"""Compiled log densities: value and gradient as one ``torch.compile`` graph.

On small and medium models the cost of a gradient is mostly framework overhead: the eager forward
launches a few dozen tiny ops and ``torch.autograd`` walks them back one node at a time (on
posteriordb's diamonds, 1.27 ms per batched gradient of which the matrix products are 0.1 ms).
``CompiledLogDensity`` traces ``x -> (log p(x), d log p / dx)`` with ``torch.func.grad_and_value``
and hands the whole forward-plus-backward graph to ``torch.compile``, which fuses the elementwise
work into a few loops and removes the autograd engine from the loop (0.28 ms on diamonds).

The graph is specialised to the batch shape it first sees, so kernels evaluate every chain at once
(``subset_ok = False``: no gathering of the still-moving chains, which would change the shape).  If
the function cannot be traced as one graph (data-dependent Python control flow, ``.item()``,
in-place updates of the input), it falls back to compiling the forward alone and differentiating
with autograd, and if that cannot compile either (no C++ compiler on a CPU machine) to eager
autograd, each time with a warning that says why; ``strict=True`` raises instead.

On CPU inductor writes C++; with SIMD (``vectorize``) each loop comes out as templated vector code
plus a scalar tail, which g++ takes several times longer to build (the NUTS step of eight schools:
10.7 s of g++ vectorised, 1.8 s scalar) and which gains nothing on loops of a few dozen elements,
where a call costs microseconds of arithmetic and hundreds of framework overhead.  ``CompileConfig``
therefore asks for SIMD only when the traced graph holds a tensor of at least
``vectorize_min_numel`` elements (a data set, a (chains, rows) residual), unless told otherwise.
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, fields
from typing import Callable

import torch

__all__ = ["CompileConfig", "CompiledGraph", "CompiledLogDensity", "compile_logdensity", "compile_graph",
           "largest_numel", "functional_value_and_grad", "autograd_value_and_grad", "failure_reason"]


@dataclass(frozen=True)
class CompileConfig:
    """How ``sample(..., compile=...)`` / ``CompiledLogDensity`` compile.

    mode: ``torch.compile`` / inductor mode.  None (inductor's default) compiles fastest;
        "max-autotune" searches kernel configurations, which rarely pays on CPU-sized models.
    strict: raise when the one-graph form cannot be traced.  Default False: a long run should
        fall back (with a warning saying why) rather than fail over a tracing limitation.
    vectorize: SIMD C++ kernels on CPU.  None decides per graph: on iff some tensor in it has at
        least ``vectorize_min_numel`` elements.  True / False force it.
    vectorize_min_numel: 16384 elements = 128 KiB of float64, where a scalar loop costs ~10 us,
        comparable to the per-call overhead.  Below it the SIMD build (several times the g++
        time: 10.7 s vs 1.8 s for eight schools' NUTS step) never pays back over a run; above it
        (diamonds: (chains, 5000) residuals, a 5000 x 24 design) the vector loops are ~10 % faster.
    cpp_wrapper: inductor's C++ wrapper (``torch._inductor.config.cpp_wrapper``): the code that
        allocates a graph's buffers and calls its kernels is C++ instead of Python.  NUTS's step
        allocates and aliases ~120 small buffers per leapfrog step, which in Python cost more than
        the fused kernel itself (eight schools: 250 us a call against 120 us with the C++ wrapper;
        benchmarks/mcmc.py, 2 processes x 2 chains x 600 iterations, warm cache: wall 27.9 s ->
        6.7 s).  Default False all the same: building the wrapper (g++ against torch's headers)
        adds ~30-40 s to every cold compile on this busy 2-core box (a short run, a test suite),
        while a warm cache (inductor's on-disk cache, a second process) keeps the built wrapper:
        pass True for long or repeated runs.  If the wrapper cannot be built, ``compile_graph``
        retries without it (with a warning).
    package: keep each compiled sampler step as an AOTInductor package (``{key}.pt2`` next to the
        traced graph, ``graph_cache``) and load that in later processes.  A warm start through
        inductor's own caches still hashes the graph and torch's sources and reloads the module:
        0.4-1.5 s per process, most of a short run's wall on a small model (eight schools, 4 x 500
        iterations: 0.4 s of 0.8 s); the package loads in ~0.07 s.  A package is C++ throughout (like
        ``cpp_wrapper``) and takes longer to build than ``compile_fx`` (eight schools' NUTS run:
        ~13 s against ~9 s), so it is off by default, like ``cpp_wrapper``: pass True for repeated
        runs of one model.  If it cannot be built, the step compiles as without it (with a warning).
    """
    mode: str | None = None
    strict: bool = False
    vectorize: bool | None = None
    vectorize_min_numel: int = 16384
    cpp_wrapper: bool = False
    package: bool = False

    def __post_init__(self):
        if self.mode is not None:
            if not isinstance(self.mode, str):
                raise TypeError(f"mode must be None or a torch.compile mode string, got {self.mode!r}")
            import torch._inductor
            modes = list(torch._inductor.list_mode_options())
            if self.mode not in modes:
                raise ValueError(f"mode must be None or one of {modes}, got {self.mode!r}")
        if not isinstance(self.strict, bool):
            raise TypeError(f"strict must be True or False, got {self.strict!r}")
        if not isinstance(self.cpp_wrapper, bool):
            raise TypeError(f"cpp_wrapper must be True or False, got {self.cpp_wrapper!r}")
        if not isinstance(self.package, bool):
            raise TypeError(f"package must be True or False, got {self.package!r}")
        if self.vectorize is not None and not isinstance(self.vectorize, bool):
            raise TypeError(f"vectorize must be None, True or False, got {self.vectorize!r}")
        if isinstance(self.vectorize_min_numel, bool) or not isinstance(self.vectorize_min_numel, int) \
                or self.vectorize_min_numel < 0:
            raise ValueError(f"vectorize_min_numel must be a non-negative int, got {self.vectorize_min_numel!r}")

    def wants_simd(self, numel: int) -> bool:
        """Whether a graph whose largest tensor has ``numel`` elements gets SIMD kernels."""
        return self.vectorize if self.vectorize is not None else numel >= self.vectorize_min_numel


def functional_value_and_grad(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """q (C, d) -> (log p (C,), gradient (C, d)) with ``torch.func`` (traceable into one graph; the
    sum's gradient is each chain's because rows are independent), non-finite values sanitised as
    ``value_and_grad`` does (log p -> -inf, gradient entries -> 0)."""
    def vg(q):
        def total(x):
            lp = fn(x)                                                # (C,)
            return lp.sum(), lp
        g, (_, lp) = torch.func.grad_and_value(total, has_aux=True)(q)
        lp = torch.nan_to_num(lp, nan=-math.inf, posinf=-math.inf, neginf=-math.inf)
        return lp, torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
    return vg


def autograd_value_and_grad(forward: Callable[[torch.Tensor], torch.Tensor],
                            x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log density and its per-chain gradient at x (C, d) by autograd on the batch sum (rows are
    independent); a constant log density has gradient 0.  Not sanitised, shape not checked."""
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        lp = forward(xr)
        if not isinstance(lp, torch.Tensor) or not lp.requires_grad:
            return lp, torch.zeros_like(x)
        (g,) = torch.autograd.grad(lp.sum(), xr, allow_unused=True)
    return lp.detach(), torch.zeros_like(x) if g is None else g


def failure_reason(err: BaseException) -> str:
    """One line naming an exception, for fallback warnings."""
    text = str(err)
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


class CompiledLogDensity:
    """Wrap a batched log density (C, d) -> (C,) so that ``value_and_grad`` runs compiled.

    fn: the log density (a plain callable, a ``Model`` or ``PyroModel``'s ``logdensity``).
    config: a ``CompileConfig``; keyword arguments (mode=, strict=, vectorize=, ...) override its
        fields, e.g. ``CompiledLogDensity(fn, strict=True)``.
    The value-and-gradient graph is built by ``compile_graph`` (no per-call guards), once per input
    shape / stride / dtype / device.  Calling the object evaluates the log density eagerly (no
    gradient needed: cheap already).  Tensors the function closes over are baked into the graph
    as constants: changing them in place afterwards is not seen (build a new object instead).
    """

    subset_ok = False   # the compiled graph is specialised to the full (C, d) batch

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], config: CompileConfig | None = None, **overrides):
        if not callable(fn):
            raise TypeError(f"fn must be callable (C, d) -> (C,), got {type(fn).__name__}")
        if config is not None and not isinstance(config, CompileConfig):
            raise TypeError(f"config must be a CompileConfig, got {type(config).__name__}")
        names = {f.name for f in fields(CompileConfig)}
        if bad := sorted(set(overrides) - names):
            raise TypeError(f"unknown compile option(s) {bad}; CompileConfig has {sorted(names)}")
        base = config or CompileConfig()
        self.config = CompileConfig(**{n: overrides.get(n, getattr(base, n)) for n in sorted(names)})
        self.fn = fn
        self.fallback_reason: str | None = None
        self.compile_seconds = 0.0       # time spent compiling graphs for this log density (wall clock)
        self.graphs: dict[tuple, "CompiledGraph"] = {}   # value-and-gradient graph per input layout
        self._kernels: dict[tuple, object] = {}          # sampler steps compiled on it (run_step), per layout
        self._fingerprints: dict[tuple, str | None] = {}  # the log density's graph_cache fingerprint, per layout
        self._forward = None

    @property
    def mode(self) -> str | None:
        return self.config.mode

    @property
    def strict(self) -> bool:
        return self.config.strict

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log density (C,) and its gradient (C, d) at x (C, d), not yet sanitised."""
        if self._forward is None:
            x = x.detach()
            key = (tuple(x.shape), x.stride(), x.dtype, x.device)
            graph = self.graphs.get(key)
            if graph is not None:
                return tuple(graph(x))
            try:                                     # the first call per layout traces and compiles
                t = time.perf_counter()
                graph = compile_graph(functional_value_and_grad(self.fn), (x,), config=self.config)
                self.compile_seconds += time.perf_counter() - t
                self.graphs[key] = graph
                return tuple(graph(x))
            except Exception as err:  # noqa: BLE001 - any tracing failure: report and fall back
                self._fail(err, "the value-and-gradient graph could not be traced", "compiling the forward only "
                           "and differentiating with autograd")
                self._forward = torch.compile(self.fn, dynamic=False, mode=self.mode)
        try:
            return autograd_value_and_grad(self._forward, x)
        except Exception as err:  # noqa: BLE001 - no compiler, or the forward cannot compile either
            if self._forward is self.fn:
                raise
            self._fail(err, "the forward could not be compiled", "running eagerly")
            self._forward = self.fn
            return autograd_value_and_grad(self.fn, x)

    def run_step(self, name: str, options: tuple, build: Callable[[Callable], Callable], args: tuple):
        """Run a sampler step compiled together with this log density, or return None.

        ``build(value_and_grad_fn)`` gives the step as a function of the tensors ``args`` returning a
        tuple of tensors, where ``value_and_grad_fn(q) -> (log p, gradient)`` is this log density's
        traceable, sanitised value and gradient (``functional_value_and_grad``).  The step is compiled
        on first use per (name, options, layout of ``args``: shapes, strides, dtypes, devices) by
        ``compile_graph`` (no per-call guards) and kept in ``_kernels``, so later runs on this object
        compile nothing; if that build fails, by ``torch.compile`` (with a warning saying why).  If
        the step cannot be traced at all, ``fallback_reason`` says why (with a warning) and None is
        returned, as on every later call: the caller then runs its step eagerly.  ``strict`` raises."""
        if self.fallback_reason is not None:
            return None
        try:
            return self._step_callable(name, options, build, args)(*args)
        except Exception as err:  # noqa: BLE001 - tracing failure: the caller falls back to its eager step
            if self.strict:
                raise
            self.fallback_reason = failure_reason(err)
            warnings.warn(f"compiled {name} could not be traced as one graph ({self.fallback_reason}); "
                          "running it eagerly", RuntimeWarning, stacklevel=3)
            return None

    def _step_callable(self, name: str, options: tuple, build: Callable, args: tuple) -> Callable:
        # inductor checks no layout: the key holds every argument's (a sampler calls this at every
        # leapfrog step, so the key is built from the cheapest accessors: Size, stride tuple, dtype, device)
        key = (name, options, tuple((t.shape, t.stride(), t.dtype, t.device) for t in args))
        graph = self._kernels.get(key, _MISSING)
        if graph is not None and graph is not _MISSING:
            return graph
        if graph is _MISSING:
            t = time.perf_counter()
            try:
                self._kernels[key] = compile_graph(build(functional_value_and_grad(self.fn)), args, config=self.config,
                                                   cache_key=self._graph_key(name, options, args))
                self.compile_seconds += time.perf_counter() - t
            except Exception as err:  # noqa: BLE001 - make_fx / inductor failure: try torch.compile next
                if self.strict:
                    raise
                self._kernels[key] = None
                warnings.warn(f"{name}: guard-free compilation failed ({failure_reason(err)}); using torch.compile",
                              RuntimeWarning, stacklevel=5)
            graph = self._kernels[key]
            if graph is not None:
                return graph
        dynamo_key = (name, options, "torch.compile")
        if dynamo_key not in self._kernels:
            self._kernels[dynamo_key] = torch.compile(build(functional_value_and_grad(self.fn)), fullgraph=True,
                                                      dynamic=False, mode=self.mode)
        return self._kernels[dynamo_key]

    def _graph_key(self, name: str, options: tuple, args: tuple) -> str | None:
        """The on-disk key of a step graph (``graph_cache``): args[0] is the (C, d) batch of positions
        at which the log density is fingerprinted.  None (no caching) when it cannot be traced."""
        from . import graph_cache
        x = args[0] if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 2 else None
        if x is None:
            return None
        layout = (tuple(x.shape), x.stride(), x.dtype, x.device)
        if layout not in self._fingerprints:
            self._fingerprints[layout] = graph_cache.logdensity_fingerprint(self.fn, x)
        fingerprint = self._fingerprints[layout]
        return None if fingerprint is None else graph_cache.step_graph_key(name, options, args, self.config,
                                                                           fingerprint)

    def _fail(self, err, what, then):
        if self.strict:
            raise RuntimeError(f"torch.compile failed: {what}: {err}") from err
        self.fallback_reason = failure_reason(err)
        warnings.warn(f"compiled log density: {what} ({self.fallback_reason}); {then}", RuntimeWarning, stacklevel=4)


def compile_logdensity(fn, config: CompileConfig | None = None, **overrides) -> CompiledLogDensity:
    """``CompiledLogDensity`` for a callable, or for a Model / PyroModel's flat log density (an
    existing ``CompiledLogDensity`` is returned as it is)."""
    if isinstance(fn, CompiledLogDensity):
        return fn
    inner = fn.logdensity if hasattr(fn, "logdensity") and callable(fn.logdensity) else fn
    return CompiledLogDensity(inner, config, **overrides)


def largest_numel(gm: torch.fx.GraphModule, args: tuple = ()) -> int:
    """Elements of the largest tensor in a traced graph: inputs, intermediates, constants."""
    sizes = [a.numel() for a in args if isinstance(a, torch.Tensor)]
    for node in gm.graph.nodes:
        vals = node.meta.get("val")
        if node.op == "get_attr":
            vals = getattr(gm, node.target, None)
        for v in vals if isinstance(vals, (tuple, list)) else (vals,):
            if isinstance(v, torch.Tensor):
                sizes.append(v.numel())
    return max(sizes, default=0)


_MISSING = object()
_CHECK_TOL = {torch.float64: 1e-6, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}


class CompiledGraph:
    """A guard-free compiled graph (see ``compile_graph``): call it with tensors laid out like the
    example ones; ``vectorized`` (SIMD C++ kernels on CPU) and ``largest_numel`` say what was built."""

    __slots__ = ("fn", "vectorized", "largest_numel")

    def __init__(self, fn: Callable[..., list], vectorized: bool, largest_numel: int):
        self.fn, self.vectorized, self.largest_numel = fn, vectorized, largest_numel

    def __call__(self, *args):
        return self.fn(*args)

    def __repr__(self):
        return f"CompiledGraph(vectorized={self.vectorized}, largest_numel={self.largest_numel})"


def _inductor_patches(config: CompileConfig, simd: bool, on_cpu: bool) -> dict:
    import torch._inductor
    patches = dict(torch._inductor.list_mode_options(config.mode)) if config.mode else {}
    if on_cpu and not simd:
        patches["cpp.vec_isa_ok"] = False
    if config.cpp_wrapper:
        patches["cpp_wrapper"] = True
    # inductor's FX graph cache refuses graphs with a while_loop unless the op is marked cacheable;
    # its key hashes the loop's cond and body graphs (a changed body misses), the data constants are
    # inputs, and compile_graph checks the first call against eager: a NUTS run (nuts_async.tree_run)
    # is then found on disk by later processes instead of being lowered again (~4 s on eight schools)
    patches["unsafe_marked_cacheable_functions"] = {
        **torch._inductor.config.unsafe_marked_cacheable_functions, "torch.ops.higher_order.while_loop": "arrcoc-1"}
    return patches


def _nan_for_linalg_errors(gm: torch.fx.GraphModule) -> int:
    """Replace each ``aten._linalg_check_errors`` of a traced graph (``torch.linalg.cholesky`` and kin
    raise through it when a factorisation fails) by NaN in that factorisation's results, in place;
    returns how many were replaced.

    The check is a side effect, which inductor wraps as ``with_effects`` and its FX graph cache then
    refuses ("Can't cache HigherOrderOperator"), so any log density with a Cholesky factor compiled
    afresh in every process.  In a sampler a failed factorisation (a kernel matrix not positive
    definite in floating point) should reject the point, not stop the run: NaN makes the log density
    -inf and its gradient 0 (``functional_value_and_grad``), a divergence, as JAX's ``cholesky`` does.
    Only the pattern ``results = op_ex(...); check(results[k], ...)`` with results whose leading
    dimensions are info's is rewritten; anything else keeps its check (and its uncached compile)."""
    import operator
    aten = torch.ops.aten
    replaced = 0
    checks = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is aten._linalg_check_errors.default]
    for check in checks:
        info = check.args[0]
        if not (isinstance(info, torch.fx.Node) and info.target is operator.getitem):
            continue
        producer = info.args[0]
        outs = [u for u in producer.users if u.target is operator.getitem and u is not info]
        info_val = info.meta.get("val")
        vals = [u.meta.get("val") for u in outs]
        if info_val is None or not outs or not all(
                isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() >= info_val.dim()
                and tuple(v.shape[:info_val.dim()]) == tuple(info_val.shape) for v in vals):
            continue
        order = {n: i for i, n in enumerate(gm.graph.nodes)}
        for out, val in zip(outs, vals):
            users = [u for u in out.users]
            with gm.graph.inserting_after(max(out, info, key=order.__getitem__)):
                ok = gm.graph.call_function(aten.eq.Scalar, (info, 0))
                with gm.graph.inserting_after(ok):
                    trailing = [1] * (val.dim() - info_val.dim())           # info (...) -> (..., 1, 1)
                    shaped = gm.graph.call_function(aten.view.default, (ok, list(info_val.shape) + trailing))
                with gm.graph.inserting_after(shaped):
                    poisoned = gm.graph.call_function(aten.where.ScalarOther, (shaped, out, math.nan))
            for u in users:
                u.replace_input_with(out, poisoned)
        gm.graph.erase_node(check)
        replaced += 1
    if replaced:
        gm.graph.lint()
        gm.recompile()
    return replaced


def _lift_loop_constants(gm: torch.fx.GraphModule) -> int:
    """Make the tensor constants of each ``while_loop``'s cond and body graphs (a log density's data,
    captured when the loop body was traced) inputs of the loop, in place; returns how many.

    make_fx records the data a traced function closes over as constants (``get_attr``).  At the top
    level inductor lifts them as graph inputs, but inside a loop's sub-graph they reach its
    functionalisation as bare tensors, which it refuses ("Attempting to use FunctionalTensor on its
    own").  Here each one becomes a placeholder of the sub-graph, appended to the loop's additional
    inputs (which both cond and body receive), fed by a constant of the root graph."""
    lifted = 0
    loops = [n for n in gm.graph.nodes if n.op == "call_function"
             and n.target is torch.ops.higher_order.while_loop]
    for loop in loops:
        cond_node, body_node, carried, additional = loop.args[:4]
        subs = [getattr(gm, cond_node.target), getattr(gm, body_node.target)]
        values = {}                                  # sub-graph attribute -> tensor, in order of appearance
        for sub in subs:
            for node in sub.graph.nodes:
                if node.op == "get_attr" and isinstance(getattr(sub, node.target, None), torch.Tensor):
                    values.setdefault(node.target, getattr(sub, node.target))
        if not values:
            continue
        names = list(values)
        for sub in subs:
            placeholders = [n for n in sub.graph.nodes if n.op == "placeholder"]
            new = {}
            with sub.graph.inserting_after(placeholders[-1]):
                for name in reversed(names):          # inserted after the last placeholder: reverse keeps order
                    new[name] = sub.graph.placeholder(f"lifted_{name}")
            for node in [n for n in sub.graph.nodes if n.op == "get_attr" and n.target in values]:
                if "val" in node.meta:
                    new[node.target].meta["val"] = node.meta["val"]
                node.replace_all_uses_with(new[node.target])
                sub.graph.erase_node(node)
            for name in names:
                if hasattr(sub, name):
                    delattr(sub, name)
            sub.graph.lint()
            sub.recompile()
        root_nodes = []
        with gm.graph.inserting_before(loop):
            for name in names:
                root_name = f"_loop_constant_{lifted}"
                gm.register_buffer(root_name, values[name])
                root_nodes.append(gm.graph.get_attr(root_name))
                lifted += 1
        loop.args = (cond_node, body_node, carried, tuple(additional) + tuple(root_nodes)) + tuple(loop.args[4:])
    if lifted:
        gm.graph.lint()
        gm.recompile()
    return lifted


@contextlib.contextmanager
def _cacheable():
    """A tracing context whose fake mode has a shape environment, for ``compile_fx``.

    Inductor's on-disk FX graph cache (``TORCHINDUCTOR_CACHE_DIR``, on by default) files a graph's
    guards in the shape environment of the active tracing context and bypasses the cache when there
    is none ("No shape env"), which is the case for a graph from ``make_fx`` handed straight to
    ``compile_fx``: every new process then compiled every graph again (eight schools' NUTS step:
    ~10 s of g++ on this 2-core box, each run).  With the context a later process finds the compiled
    module on disk.  The shapes stay static (nothing is symbolic), so the only guards are none."""
    from torch._guards import TracingContext, tracing
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv
    if TracingContext.try_get() is not None:      # inside someone else's compile: theirs applies
        yield
        return
    with tracing(TracingContext(FakeTensorMode(shape_env=ShapeEnv()))):
        yield


def compile_graph(fn: Callable[..., tuple], args: tuple, check: bool = True,
                  config: CompileConfig | None = None, cache_key: str | None = None) -> CompiledGraph:
    """Compile ``fn(*tensors) -> tuple of tensors`` into one inductor graph with no guards.

    ``torch.compile`` re-checks its guards and patches its config on every call (~0.2 ms on CPU,
    as much as a whole compiled NUTS step on a small model).  Here the function is traced once with
    ``make_fx`` (fake tensors: a Python branch on a tensor's value fails the trace instead of being
    baked in) and handed to inductor's ``compile_fx``; the result is a plain callable specialised to
    the shapes, strides, dtypes and devices of ``args``, which the caller must keep (key its cache on
    them).  ``config`` (default ``CompileConfig()``) picks the mode and whether CPU kernels use SIMD.
    ``check`` runs both on ``args`` once and raises if they disagree.  ``cache_key``
    (``graph_cache.step_graph_key``): keep the traced graph on disk under it and reuse it in later
    processes instead of tracing again (a cached graph that disagrees with ``fn`` is dropped and
    traced afresh).
    """
    from . import graph_cache
    config = config or CompileConfig()
    on_cpu = all(a.device.type == "cpu" for a in args if isinstance(a, torch.Tensor))
    if config.package and cache_key is not None and on_cpu:
        packaged = _packaged_graph(fn, args, check, config, cache_key)
        if packaged is not None:
            return packaged
    loaded = graph_cache.load_graph(cache_key) if cache_key is not None else None
    try:
        return _compile_graph(fn, args, check, config, cache_key, loaded)
    except Exception:  # noqa: BLE001 - a stale or broken cached graph: drop it and trace afresh
        if loaded is None:
            raise
        graph_cache.drop_graph(cache_key)
        return _compile_graph(fn, args, check, config, cache_key, None)


def _traced_step(fn, args, cache_key, loaded) -> tuple[torch.fx.GraphModule, int]:
    """The step's graph (``loaded`` from ``graph_cache``, else traced and saved under ``cache_key``)
    with its inputs' static fake values, and its largest tensor's element count."""
    from torch.fx.experimental.proxy_tensor import make_fx
    from . import graph_cache
    if loaded is not None:
        gm, numel = loaded
        return graph_cache.restore_meta(gm, args), numel
    gm = make_fx(fn, tracing_mode="fake", _allow_non_fake_inputs=True)(*args)   # closure data: constants
    for sub in [m for m in gm.modules() if isinstance(m, torch.fx.GraphModule)]:
        _nan_for_linalg_errors(sub)                                   # a loop body's factorisations too
    _lift_loop_constants(gm)
    numel = largest_numel(gm, args)
    if cache_key is not None:
        gm = graph_cache.restore_meta(graph_cache.save_graph(cache_key, gm, numel), args)
    return gm, numel


def _compile_graph(fn, args, check, config, cache_key, loaded) -> CompiledGraph:
    from torch._inductor import cpu_vec_isa
    from torch._inductor.compile_fx import compile_fx
    gm, numel = _traced_step(fn, args, cache_key, loaded)
    simd = config.wants_simd(numel)
    on_cpu = all(a.device.type == "cpu" for a in args if isinstance(a, torch.Tensor))
    patches = _inductor_patches(config, simd, on_cpu)
    # inductor caches the list of usable SIMD ISAs per process, filtered under the config of its first
    # use: a first compile with SIMD off would leave it empty for every later compile, so forget it
    isa_cache = getattr(getattr(cpu_vec_isa, "valid_vec_isa_list", None), "cache_info", None)
    fresh = "cpp.vec_isa_ok" in patches and isa_cache is not None and isa_cache().currsize == 0
    try:
        with _cacheable():
            try:
                compiled = compile_fx(gm, list(args), config_patches=patches or None)
            except Exception as err:  # noqa: BLE001 - the C++ wrapper failed to build: the Python one
                if not patches.get("cpp_wrapper"):
                    raise
                warnings.warn(f"inductor's C++ wrapper could not be built ({failure_reason(err)}); "
                              "compiling with the Python wrapper", RuntimeWarning, stacklevel=3)
                patches.pop("cpp_wrapper")
                compiled = compile_fx(gm, list(args), config_patches=patches or None)
    finally:
        if fresh:
            cpu_vec_isa.valid_vec_isa_list.cache_clear()
    if check:
        _check_against_eager(compiled, fn, args)
    return CompiledGraph(compiled, simd and on_cpu, numel)


def _check_against_eager(compiled: Callable, fn: Callable, args: tuple) -> None:
    """Raise RuntimeError unless ``compiled(*args)`` agrees with ``fn(*args)`` output by output."""
    got, want = compiled(*args), fn(*args)
    try:
        if len(got) != len(want):
            raise RuntimeError(f"compiled graph returned {len(got)} outputs, eager {len(want)}")
        for i, (a, b) in enumerate(zip(got, want)):
            tol = _CHECK_TOL.get(a.dtype, 1e-6)          # fused loops reorder sums: a few ulps per op
            torch.testing.assert_close(a, b, rtol=tol, atol=tol, equal_nan=True,
                                       msg=lambda m, i=i: f"compiled graph output {i} differs from eager: {m}")
    except AssertionError as err:
        raise RuntimeError(str(err)) from err


def _packaged_graph(fn, args, check, config: CompileConfig, cache_key: str) -> CompiledGraph | None:
    """``compile_graph`` through an AOTInductor package under ``cache_key`` (``CompileConfig.package``):
    load it if a process built it before, else trace (or load the traced graph), export, build and
    keep it.  None (with a warning; ``strict`` raises) when it cannot be built or does not agree
    with eager, and the caller compiles the usual way."""
    import torch._inductor
    from . import graph_cache
    path = graph_cache.package_path(cache_key)

    def load():
        try:
            numel = graph_cache.package_numel(cache_key)
            runner = _load_package(path, config.wants_simd(numel))
            if check:
                _check_against_eager(runner, fn, args)
            return CompiledGraph(runner, config.wants_simd(numel), numel)
        except Exception:  # noqa: BLE001 - stale, truncated or foreign package: build it again
            graph_cache.drop_package(cache_key)
            return None
    if path.exists() and (done := load()) is not None:
        return done
    try:
        # one process builds a key at a time (two processes sampling the same model at once would
        # otherwise write the same inductor build files together); a waiting one loads the result
        with graph_cache.package_lock(cache_key):
            if path.exists() and (done := load()) is not None:
                return done
            gm, numel = _traced_step(fn, args, cache_key, graph_cache.load_graph(cache_key))
            simd = config.wants_simd(numel)
            patches = {k: v for k, v in _inductor_patches(config, simd, True).items() if k != "cpp_wrapper"}
            exported = torch.export.export(gm, tuple(args), strict=False)
            graph_cache.save_package(cache_key, exported, patches)
        runner = _load_package(path, simd)
        if check:
            _check_against_eager(runner, fn, args)
        return CompiledGraph(runner, simd, numel)
    except Exception as err:  # noqa: BLE001 - no AOTInductor here: inductor's own path
        graph_cache.drop_package(cache_key)
        if config.strict:
            raise
        warnings.warn(f"compiled step could not be packaged ({failure_reason(err)}); compiling it without "
                      "a package", RuntimeWarning, stacklevel=4)
        return None


def _load_package(path, simd: bool):
    """``torch._inductor.aoti_load_package`` with the SIMD choice the package was built with.

    Loading checks the package's CPU ISA against this machine's, which inductor finds by building
    and dlopen-ing a probe per ISA in child processes: ~1.1 s of every fresh process, twice what
    the rest of a warm start costs.  Stating the choice (``cpp.vec_isa_ok``) skips the probes: a
    scalar package needs no ISA, a SIMD one the ISA this machine's CPU flags name (the probes only
    confirm that the compiler builds it, which building the package here already did).  The ISA
    list inductor caches under that setting is forgotten afterwards, as ``_compile_graph`` does."""
    import torch._inductor
    from torch._inductor import cpu_vec_isa
    isa_cache = getattr(cpu_vec_isa.valid_vec_isa_list, "cache_clear", None)
    try:
        if isa_cache is not None:
            isa_cache()
        with torch._inductor.config.patch({"cpp.vec_isa_ok": simd}):
            model = torch._inductor.aoti_load_package(str(path))
    finally:
        if isa_cache is not None:
            isa_cache()
    # the model's __call__ parses its input / output tree specs from JSON and flattens both at every
    # call (~20 us, half a small model's leapfrog step); a step's inputs and outputs are flat tuples
    # of tensors already, so the loader's boxed entry point takes them as they are
    boxed = getattr(getattr(model, "loader", None), "boxed_run", None)
    if boxed is None:
        return model
    return lambda *args: boxed(list(args))

