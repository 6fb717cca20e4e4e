"""The on-disk cache of traced step graphs (arrcoc.bayes.mcmc.graph_cache): the key follows the log
density's operations and data, a second CompiledLogDensity reuses the stored graph with the same
results, and a corrupt or stale entry is dropped and traced again; the dense metric's L^{-T}."""
import shutil

import pytest
import torch

from arrcoc.bayes.mcmc import CompiledLogDensity, make_metric
from arrcoc.bayes.mcmc import graph_cache
from arrcoc.bayes.mcmc.compiled import autograd_value_and_grad
from arrcoc.bayes.mcmc.metrics import Metric, momentum_from_normal

needs_cxx = pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                               reason="compiling on CPU needs a C++ compiler")
F64 = torch.float64


def test_fingerprint_follows_operations_and_data():
    x = torch.zeros(3, 2, dtype=F64)
    a, b = torch.tensor([1.0, 2.0], dtype=F64), torch.tensor([1.0, 2.5], dtype=F64)

    def f(d):
        return lambda q: -0.5 * ((q - d) ** 2).sum(-1)
    same = [graph_cache.logdensity_fingerprint(f(a), x), graph_cache.logdensity_fingerprint(f(a.clone()), x)]
    assert same[0] is not None and same[0] == same[1]                        # same ops, same data
    assert graph_cache.logdensity_fingerprint(f(b), x) != same[0]            # other data
    assert graph_cache.logdensity_fingerprint(lambda q: -((q - a) ** 2).sum(-1), x) != same[0]   # other ops
    # the layouts are the step key's part: another batch shape, dtype or option is another key
    from arrcoc.bayes.mcmc import CompileConfig
    key = graph_cache.step_graph_key("s", (1,), (x,), CompileConfig(), same[0])
    assert key == graph_cache.step_graph_key("s", (1,), (x.clone(),), CompileConfig(), same[0])
    for other in [graph_cache.step_graph_key("s", (1,), (torch.zeros(4, 2, dtype=F64),), CompileConfig(), same[0]),
                  graph_cache.step_graph_key("s", (1,), (x.float(),), CompileConfig(), same[0]),
                  graph_cache.step_graph_key("s", (2,), (x,), CompileConfig(), same[0]),
                  graph_cache.step_graph_key("s", (1,), (x,), CompileConfig(vectorize=True), same[0])]:
        assert other != key

    from arrcoc.bayes.mcmc import Model                    # a Model's flat log density (extra parameters)
    model = Model(lambda v: -0.5 * (v["z"] ** 2).sum(-1), {"z": (2, None)})
    assert graph_cache.logdensity_fingerprint(model.logdensity, x) is not None

    def untraceable(q):
        return -q.sum(-1) if bool(q.sum() > 0) else q.sum(-1)
    assert graph_cache.logdensity_fingerprint(untraceable, x) is None


def _step(value_and_grad_fn):
    def step(q, eps):                                    # one gradient-ascent step and its log density
        lp, g = value_and_grad_fn(q)
        return q + eps * g, lp
    return step


def _case():
    """A log density closing over data, a batch of 2 points, a step size and the step's eager result."""
    data = torch.tensor([0.5, -1.0, 2.0], dtype=F64)

    def logp(q):
        return -0.5 * ((q - data) ** 2).sum(-1) - torch.log1p(q * q).sum(-1)
    q = torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]], dtype=F64)
    eps = torch.tensor(0.1, dtype=F64)
    return logp, q, eps, _step(lambda x: autograd_value_and_grad(logp, x))(q, eps)      # eager autograd


@needs_cxx
def test_step_graph_is_stored_reused_and_replaced_when_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    logp, q, eps, want = _case()
    first = CompiledLogDensity(logp, vectorize=False)
    got1 = first.run_step("test step", (), _step, (q, eps))
    key = first._graph_key("test step", (), (q, eps))
    path = graph_cache.graph_cache_dir() / f"{key}.pkl"
    assert path.is_file() and graph_cache.load_graph(key) is not None
    second = CompiledLogDensity(logp, vectorize=False)              # a new object (as in a new process)
    got2 = second.run_step("test step", (), _step, (q, eps))
    for a, b, c in zip(got1, got2, want):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, c)
    path.write_bytes(b"not a pickle")                               # a corrupt entry: dropped, traced again
    got3 = CompiledLogDensity(logp, vectorize=False).run_step("test step", (), _step, (q, eps))
    torch.testing.assert_close(got3[0], want[0])
    assert graph_cache.load_graph(key) is not None
    # a stale entry (another function's graph under this key) fails the check and is replaced
    from torch.fx.experimental.proxy_tensor import make_fx

    from arrcoc.bayes.mcmc.compiled import functional_value_and_grad
    wrong = make_fx(_step(functional_value_and_grad(lambda x: -(x * x).sum(-1))), tracing_mode="fake")(q, eps)
    graph_cache.save_graph(key, wrong, 6)
    got4 = CompiledLogDensity(logp, vectorize=False).run_step("test step", (), _step, (q, eps))
    torch.testing.assert_close(got4[0], want[0])
    torch.testing.assert_close(got4[1], want[1])


def test_graph_spec_round_trip_keeps_a_while_loop_and_its_data():
    """A traced graph with a while_loop (whose body closes over data) survives the on-disk form:
    same outputs, and the loop's constants stay inputs of the loop after lifting."""
    import pickle

    from torch._higher_order_ops.while_loop import while_loop_op
    from torch.fx.experimental.proxy_tensor import make_fx

    from arrcoc.bayes.mcmc.compiled import _lift_loop_constants
    data = torch.tensor([0.5, -1.0, 2.0], dtype=F64)

    def f(x, n):
        def cond(x, i, n):
            return i < n

        def body(x, i, n):
            return 0.5 * x + torch.sin(x[..., 1:]).sum(-1, keepdim=True) + data, i + 1
        return while_loop_op(cond, body, (x, torch.zeros((), dtype=torch.long)), (n,))
    x, n = torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]], dtype=F64), torch.tensor(4)
    gm = make_fx(f, tracing_mode="fake", _allow_non_fake_inputs=True)(x, n)
    assert _lift_loop_constants(gm) == 1
    body = next(m for name, m in gm.named_children() if "body" in name)
    assert not [nd for nd in body.graph.nodes if nd.op == "get_attr"]      # the data is an input now
    again = graph_cache._graph_from_spec(pickle.loads(pickle.dumps(graph_cache._graph_spec(gm))))
    want = x
    for _ in range(4):
        want = 0.5 * want + torch.sin(want[..., 1:]).sum(-1, keepdim=True) + data
    for g in (gm, again):
        out, count = g(x, n)
        torch.testing.assert_close(out, want)
        assert int(count) == 4


@needs_cxx
@pytest.mark.slow          # ~40 s: two AOTInductor builds
def test_packaged_step_is_built_loaded_and_rebuilt_when_broken(tmp_path, monkeypatch):
    """CompileConfig(package=True): the first object builds its package, a second (as in a new process)
    loads it and gives the same numbers; a truncated package is dropped and built again."""
    from arrcoc.bayes.mcmc import CompileConfig
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    logp, q, eps, want = _case()
    config = CompileConfig(package=True, vectorize=False, strict=True)
    first = CompiledLogDensity(logp, config)
    got1 = first.run_step("test step", (), _step, (q, eps))
    key = first._graph_key("test step", (), (q, eps))
    package = graph_cache.package_path(key)
    assert package.is_file()
    loaded = []
    real_load = torch._inductor.aoti_load_package
    monkeypatch.setattr(torch._inductor, "aoti_load_package", lambda p: loaded.append(p) or real_load(p))
    got2 = CompiledLogDensity(logp, config).run_step("test step", (), _step, (q, eps))
    assert loaded == [str(package)]
    for a, b, c in zip(got1, got2, want):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, c)
    package.write_bytes(package.read_bytes()[:100])                 # truncated: dropped and built again
    got3 = CompiledLogDensity(logp, config).run_step("test step", (), _step, (q, eps))
    torch.testing.assert_close(got3[0], want[0])
    assert package.is_file() and package.stat().st_size > 100


def test_dense_metric_momentum_factor_is_the_inverse_transpose():
    g = torch.Generator().manual_seed(3)
    A = torch.randn(2, 4, 4, generator=g, dtype=F64)
    inverse_mass = A @ A.transpose(-1, -2) + 0.5 * torch.eye(4, dtype=F64)      # (C, d, d)
    metric = make_metric(inverse_mass)
    U = metric.momentum_factor                                                  # (C, d, d) L^{-T}
    torch.testing.assert_close(U @ U.transpose(-1, -2), torch.linalg.inv(inverse_mass))   # covariance M
    assert torch.equal(U, U.triu())
    z = torch.randn(2, 4, generator=g, dtype=F64)
    torch.testing.assert_close(momentum_from_normal(metric, z),
                               momentum_from_normal(Metric(metric.inverse_mass, metric.chol), z))  # the solve
