"""Distributed inference: 2 CPU processes (gloo) vs a single process on the same data and seed."""
import subprocess

import pytest
import torch
from torch.distributions import Normal

from arrcoc.bayes import distributed as D

N, DIM, SIG = 37, 2, 0.8  # odd N: unequal shards


def _data():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(N, DIM, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([0.7, -1.2], dtype=torch.float64) + SIG * torch.randn(N, generator=g, dtype=torch.float64)
    return x, y


def _log_prior(theta):
    return Normal(0.0, 2.0).log_prob(theta).sum(-1)


def _local_log_lik(x, y):
    return lambda theta: Normal(theta @ x.T, SIG).log_prob(y).sum(-1)  # (C, n) -> (C,)


def _vi_loglik(z, x, y):
    return Normal(z @ x.T, SIG).log_prob(y)  # (S, n)



_PRIOR = Normal(torch.zeros(DIM, dtype=torch.float64), 2.0)
_VI = dict(family="fullrank", num_steps=300, min_steps=300, tol=1e-2, final_samples=512, num_samples=8)


def run_all(rank, world, x, y):
    """MH draws and VI on this rank's shard (or the full data when world == 1)."""
    xs, ys = D.shard((x, y), rank, world)
    g = torch.Generator().manual_seed(11)
    init = torch.zeros(3, DIM, dtype=torch.float64)
    mh = D.distributed_mh(_log_prior, _local_log_lik(xs, ys), init, num_samples=200, step_size=0.3, generator=g)
    g = torch.Generator().manual_seed(12)
    vi = D.data_parallel_vi(_vi_loglik, _PRIOR, DIM, (xs, ys), generator=g, **_VI)
    # a gradient through the all-reduced log density (what HMC / NUTS would use)
    theta = torch.tensor([[0.3, -0.4]], dtype=torch.float64, requires_grad=True)
    lp = D.distributed_logdensity(_log_prior, _local_log_lik(xs, ys))(theta)
    (grad,) = torch.autograd.grad(lp.sum(), theta)
    return mh.draws, torch.tensor([vi.elbo]), vi.mean, lp.detach(), grad


def _worker(rank, world, path):
    x, y = _data()
    out = run_all(rank, world, x, y)
    if rank == 0:
        torch.save(out, path)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "out.pt"
    D.spawn(_worker, 2, str(path))
    x, y = _data()
    single = run_all(0, 1, x, y)
    return torch.load(path), single


def test_allreduce_mh_draws_identical_to_single_process(results):
    (draws2, *_), (draws1, *_) = results
    assert draws1.shape == (3, 200, DIM)
    assert torch.equal(draws2, draws1)
    assert draws1.std(1).min() > 0.01  # the chains moved


def test_allreduced_logdensity_and_gradient_match(results):
    (*_, lp2, g2), (*_, lp1, g1) = results
    torch.testing.assert_close(lp2, lp1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g2, g1, rtol=1e-10, atol=1e-10)


def test_data_parallel_vi_same_elbo(results):
    (_, e2, m2, *_), (_, e1, m1, *_) = results
    assert abs(float(e2) - float(e1)) < 1e-4
    torch.testing.assert_close(m2, m1, rtol=1e-6, atol=1e-6)


def test_single_process_vi_matches_exact_evidence():
    x, y = _data()
    logz = torch.distributions.MultivariateNormal(torch.zeros(N, dtype=torch.float64),
                                                  4.0 * x @ x.T + SIG ** 2 * torch.eye(N, dtype=torch.float64)).log_prob(y)
    res = D.data_parallel_vi(_vi_loglik, _PRIOR, DIM, (x, y), generator=torch.Generator().manual_seed(3),
                             family="fullrank", kl="stl", num_steps=800)
    assert res.elbo <= float(logz) + 3 * res.elbo_se + 1e-9
    assert float(logz) - res.elbo < 1e-2


def test_shard_and_commands():
    x = torch.arange(10.0)
    parts = [D.shard(x, r, 3) for r in range(3)]
    assert torch.equal(torch.cat(parts), x) and [len(p) for p in parts] == [4, 3, 3]
    with pytest.raises(ValueError, match="rank"):
        D.shard(x, 3, 3)
    with pytest.raises(ValueError, match="same number of rows"):
        D.shard((x, x[:5]), 0, 2)
    cmd = D.torchrun_command("script.py", 2, "--flag")
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"] and cmd[-2:] == ["script.py", "--flag"]
    out = subprocess.run(cmd[:4] + ["--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "nproc" in out.stdout
    assert "--num_processes" in D.accelerate_command("s.py", 2)
    with pytest.raises(ValueError, match="init"):
        D.distributed_mh(_log_prior, _local_log_lik(*_data()), torch.zeros(DIM), num_samples=5, step_size=0.1,
                         generator=torch.Generator())


def test_distributed_boundary_checks(gen):
    lp = lambda t: Normal(0.0, 1.0).log_prob(t).sum(-1)  # noqa: E731
    init = torch.zeros(2, 1, dtype=torch.float64)
    for kw, err, msg in (({"step_size": float("inf")}, ValueError, "step_size"), ({"step_size": float("nan")}, ValueError, "step_size"),
                         ({"num_samples": 2.5}, TypeError, "num_samples"), ({"thin": 0}, ValueError, "thin"),
                         ({"generator": "seed"}, TypeError, "generator")):
        args = {"num_samples": 5, "step_size": 0.5, "generator": gen, **kw}
        with pytest.raises(err, match=msg):
            D.distributed_mh(lp, lp, init, **args)
    with pytest.raises(ValueError, match="init must be finite"):
        D.distributed_mh(lp, lp, init.fill_(float("nan")), num_samples=5, step_size=0.5, generator=gen)
    with pytest.raises(TypeError, match="rank"):
        D.shard(torch.zeros(4), rank=0.5, world_size=2)
    with pytest.raises(ValueError, match="nprocs"):
        D.torchrun_command("train.py", 0)
    with pytest.raises(TypeError, match="generator"):
        D.data_parallel_vi(lambda z, x: -(z ** 2).sum(-1), Normal(torch.zeros(1), torch.ones(1)), 1, torch.zeros(4, 1),
                           generator=None)
