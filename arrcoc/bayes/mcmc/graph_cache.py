"""On-disk cache of traced sampler-step graphs, so that a warm start does not trace the step again.

Inductor's FX graph and AOT autograd caches keep the compiled kernels between processes, but finding
them needs the graph: ``compile_graph`` traces the step with ``make_fx`` first, and for a NUTS step
(~450 ops, each through fake-tensor dispatch) that took 0.6-1 s of every warm start on this 2-core
box, about half of a short run on a small model.  Here the traced step (an FX ``GraphModule``, its
closure constants included) is pickled under a key computed without tracing the step:

* the log density's fingerprint: its forward traced alone at the batch layout (a few dozen ops,
  ~0.05-0.1 s; the gradient is derived from it by torch, whose version is in the key), hashed with
  the graph's code and every constant tensor's bytes, so any change of the model's operations or
  data changes the key;
* the step's name, options, argument layouts and ``CompileConfig``;
* the sources of this package (the step's code: tree, integrator, metric) and the torch version.

A cached graph is still checked against the eager step on the real arguments (``compile_graph``'s
``check``); a mismatch drops the entry and traces afresh.  The entries live next to inductor's own
(``TORCHINDUCTOR_CACHE_DIR`` or its default, subfolder ``arrcoc_graphs``), are written atomically
(two processes sampling the same model at once) and, like inductor's, are unpickled: the directory
must be as trusted as inductor's cache.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import warnings
from pathlib import Path

import torch

__all__ = ["graph_cache_dir", "logdensity_fingerprint", "step_graph_key", "load_graph", "save_graph", "drop_graph",
           "restore_meta", "package_path", "package_numel", "package_lock", "save_package", "drop_package"]

_SOURCES: list[str] = []      # this package's source hash, computed once per process


def graph_cache_dir() -> Path:
    """Where traced step graphs are kept: inductor's cache directory / arrcoc_graphs."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    return Path(cache_dir()) / "arrcoc_graphs"


def _source_hash() -> str:
    if not _SOURCES:
        h = hashlib.sha256()
        for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
        _SOURCES.append(h.hexdigest())
    return _SOURCES[0]


def _hash_graph(gm: torch.fx.GraphModule, h) -> None:
    h.update(gm.code.encode())
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value = getattr(gm, node.target, None)
            if isinstance(value, torch.Tensor):
                t = value.detach().cpu().contiguous()
                h.update(f"{node.target}:{t.dtype}:{tuple(t.shape)}".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            else:
                h.update(f"{node.target}:{value!r}".encode())


def logdensity_fingerprint(logdensity_fn, x: torch.Tensor) -> str | None:
    """Hash of ``logdensity_fn`` (C, d) -> (C,) traced alone at x's layout (code + constants), or None
    when it cannot be traced (the step then cannot be either, and nothing is cached)."""
    from torch.fx.experimental.proxy_tensor import make_fx
    try:
        def forward(q):                         # one positional argument, whatever fn's signature
            return logdensity_fn(q)
        gm = make_fx(forward, tracing_mode="fake", _allow_non_fake_inputs=True)(x)
    except Exception:  # noqa: BLE001 - untraceable: the caller compiles another way
        return None
    h = hashlib.sha256()
    _hash_graph(gm, h)
    return h.hexdigest()


def step_graph_key(name: str, options: tuple, args: tuple, config, fingerprint: str) -> str:
    """The cache key of a step graph (see the module docstring)."""
    layouts = [(tuple(a.shape), a.stride(), str(a.dtype), str(a.device)) if isinstance(a, torch.Tensor) else repr(a)
               for a in args]
    text = repr((name, options, layouts, config, fingerprint, _source_hash(), torch.__version__))
    return hashlib.sha256(text.encode()).hexdigest()


def load_graph(key: str) -> tuple[torch.fx.GraphModule, int] | None:
    """The traced graph and its largest tensor's element count stored under ``key``, or None."""
    import torch._inductor.compile_fx  # noqa: F401 - the graph's ops (higher-order ops) must be importable
    path = graph_cache_dir() / f"{key}.pkl"
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f)
        if isinstance(entry, dict) and isinstance(entry.get("graph"), dict) and isinstance(entry.get("numel"), int):
            return _canonical(_graph_from_spec(entry["graph"])), entry["numel"]
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a truncated or foreign file: forget it
        drop_graph(key)
    return None


def save_graph(key: str, gm: torch.fx.GraphModule, numel: int) -> torch.fx.GraphModule:
    """Store ``gm`` under ``key`` (atomically) and return it as a later process will load it (the
    pickled round trip, so that the first and later processes hand inductor the same graph and its
    caches' keys agree).  A graph that cannot be pickled is returned as it is, uncached."""
    try:
        blob = pickle.dumps({"graph": _graph_spec(gm), "numel": int(numel)})
        gm = _canonical(_graph_from_spec(pickle.loads(blob)["graph"]))
    except Exception:  # noqa: BLE001 - not picklable: traced again by every process
        return gm
    try:
        folder = graph_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.")
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, folder / f"{key}.pkl")
    except OSError:                # no writable cache directory: traced again by every process
        pass
    return gm


# ---------------------------------------------------------------- graph <-> picklable spec
# A GraphModule pickles as its Python code and re-traces that code symbolically when loaded, which
# fails for higher-order ops (a ``while_loop`` refuses proxies: ``nuts_async.tree_run``), and an FX
# Graph does not pickle (operator objects hold C++ handles).  The spec is the node list with every
# target by name: aten operators as "namespace::name.overload", higher-order ops as "higher_order.NAME",
# plain Python callables (operator.getitem) by reference; sub-graphs (a loop's cond and body) and
# constants as attributes, recursively.

def _graph_spec(gm: torch.fx.GraphModule) -> dict:
    attrs, nodes = {}, []
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value = getattr(gm, node.target)
            attrs[node.target] = _graph_spec(value) if isinstance(value, torch.fx.GraphModule) else value
        nodes.append((node.op, node.name, _target_spec(node.target), _arg_spec(node.args), _arg_spec(node.kwargs)))
    return {"nodes": nodes, "attrs": attrs}


def _target_spec(target):
    if isinstance(target, str):
        return ("str", target)
    if isinstance(target, torch._ops.OpOverload):
        return ("op", target._schema.name, target._overloadname)
    if isinstance(target, torch._ops.HigherOrderOperator):
        return ("hop", target.name())
    return ("py", target)                      # picklable by reference (operator.getitem, ...), or it raises


def _map_leaves(arg, leaf):
    """``arg`` (a node's args / kwargs: nested tuples, lists, dicts, slices) with ``leaf`` applied to
    everything else in it."""
    if isinstance(arg, (tuple, list)):
        return type(arg)(_map_leaves(a, leaf) for a in arg)
    if isinstance(arg, dict):
        return {k: _map_leaves(v, leaf) for k, v in arg.items()}
    if isinstance(arg, slice):
        return slice(_map_leaves(arg.start, leaf), _map_leaves(arg.stop, leaf), _map_leaves(arg.step, leaf))
    return leaf(arg)


def _arg_spec(arg):
    return _map_leaves(arg, lambda a: _NodeRef(a.name) if isinstance(a, torch.fx.Node) else a)


class _NodeRef:
    """A node argument, by the node's name."""
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __getstate__(self):
        return self.name

    def __setstate__(self, name):
        self.name = name


def _resolve_target(spec):
    kind = spec[0]
    if kind in ("str", "py"):
        return spec[1]
    if kind == "hop":
        return getattr(torch.ops.higher_order, spec[1])
    namespace, name = spec[1].split("::")
    packet = getattr(getattr(torch.ops, namespace), name)
    return getattr(packet, spec[2] or "default")


def _graph_from_spec(spec: dict) -> torch.fx.GraphModule:
    graph, env = torch.fx.Graph(), {}
    attrs = {k: _graph_from_spec(v) if isinstance(v, dict) and "nodes" in v else v for k, v in spec["attrs"].items()}

    def resolve(arg):
        return _map_leaves(arg, lambda a: env[a.name] if isinstance(a, _NodeRef) else a)
    for op, name, target, args, kwargs in spec["nodes"]:
        node = graph.create_node(op, _resolve_target(target), resolve(args), resolve(kwargs), name=name)
        env[name] = node
    return torch.fx.GraphModule(attrs, graph)


def restore_meta(gm: torch.fx.GraphModule, args: tuple) -> torch.fx.GraphModule:
    """Give a loaded graph's inputs the static fake values (``node.meta["val"]``) that tracing leaves
    on them, from ``args``: inductor takes its fake mode from them, and without them would compile
    the graph for symbolic shapes (and key its caches on the symbols' process-dependent names)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(args):
        raise ValueError(f"cached graph takes {len(placeholders)} inputs, the step {len(args)}")
    for node, a in zip(placeholders, args):
        if isinstance(a, torch.Tensor):
            node.meta["val"] = mode.from_tensor(a, static_shapes=True)
    return gm


def _canonical(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``gm`` without the stack traces its unpickling recorded (they name the process's n-th
    generated code object, which would make inductor's cache keys differ between processes)."""
    for node in gm.graph.nodes:
        node.meta.pop("stack_trace", None)
    gm.recompile()
    return gm


def drop_graph(key: str) -> None:
    """Remove the entry under ``key`` if there is one."""
    try:
        (graph_cache_dir() / f"{key}.pkl").unlink()
    except OSError:
        pass


# ---------------------------------------------------------------- AOTInductor packages
def package_path(key: str) -> Path:
    """Where the AOTInductor package of the step graph under ``key`` is kept (``CompileConfig.package``).

    The name carries this machine's architecture and the SIMD instruction sets its CPU reports: a
    package is native code and is loaded without inductor's ISA probes (``compiled._load_package``),
    so a cache directory shared with another kind of CPU must not hand it this one's."""
    return graph_cache_dir() / f"{key}-{_machine_tag()}.pt2"


_MACHINE: list[str] = []


def _machine_tag() -> str:
    if not _MACHINE:
        import platform
        tag = platform.machine() or "unknown"
        try:
            from torch._inductor.cpu_vec_isa import x86_isa_checker     # reads /proc/cpuinfo, no probe
            flags = sorted(x86_isa_checker()) if tag in ("x86_64", "AMD64") else []
            if flags:
                tag += "-" + "-".join(flags)
        except Exception:  # noqa: BLE001 - no inductor / another platform: the architecture alone
            pass
        _MACHINE.append(tag)
    return _MACHINE[0]


def package_numel(key: str) -> int:
    """The largest tensor's element count recorded with the traced graph under ``key`` (0 if none)."""
    try:
        with open(graph_cache_dir() / f"{key}.pkl", "rb") as f:
            entry = pickle.load(f)
        return int(entry.get("numel", 0)) if isinstance(entry, dict) else 0
    except Exception:  # noqa: BLE001 - missing or foreign: unknown size
        return 0


def package_lock(key: str, timeout: float = 600.0):
    """An inter-process lock for building the package under ``key`` (``filelock``, which torch
    depends on); it gives up after ``timeout`` seconds with ``filelock.Timeout``."""
    from filelock import FileLock
    folder = graph_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / f".{key}.lock"), timeout=timeout)


def save_package(key: str, exported, inductor_configs: dict) -> Path:
    """Build the AOTInductor package of ``exported`` (a ``torch.export.ExportedProgram``) under ``key``
    (written to a temporary name and moved into place: two processes may build it at once); returns
    its path (``package_path``).  OSError when the cache directory is not writable."""
    import torch._inductor
    folder = graph_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".pt2")
    os.close(fd)
    try:
        with warnings.catch_warnings():     # torch's own pickling of tree specs, not the caller's business
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)
            built = torch._inductor.aoti_compile_and_package(exported, package_path=tmp,
                                                             inductor_configs=dict(inductor_configs))
        os.replace(built, package_path(key))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return package_path(key)


def drop_package(key: str) -> None:
    """Remove the package under ``key`` if there is one."""
    try:
        package_path(key).unlink()
    except OSError:
        pass
