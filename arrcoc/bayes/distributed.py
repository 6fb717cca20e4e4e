"""Distributed inference over data shards with torch.distributed (gloo on CPU, NCCL on GPU).

Every rank holds one shard of the data and the same parameters; the log likelihood of the full data
is the all-reduced SUM of the shards' log likelihoods.

* ``distributed_logdensity(log_prior, local_log_lik)``: θ (C, d) -> (C,) log posterior of the full data,
  differentiable (the gradient is all-reduced with the value in one collective), so it can be handed to
  any ``arrcoc.bayes.mcmc`` kernel, HMC and NUTS included.
* ``distributed_mh``: random-walk Metropolis (``arrcoc.bayes.mcmc`` kernels ``rwmh_init`` / ``rwmh_step``)
  on that log density. Every rank seeds its generator identically, so proposals and accept decisions
  agree on all ranks and the draws equal a single-process run on the full data.
* ``data_parallel_vi``: Gaussian VI whose ELBO gradients are averaged by all-reduce (each rank scales
  its shard's log likelihood by the world size, so the average is the full-data gradient).

Launch: ``spawn(fn, world_size, *args)`` (torch.multiprocessing, free localhost port, for tests and
notebooks), or ``torchrun_command(script, n)`` / ``accelerate_command(script, n)`` and call ``setup()``
at the top of the script (it reads RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set by the launcher).
Without an initialised process group everything runs as a single process (world size 1).
"""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.distributed as dist

from ._validate import check_finite_tensor, check_generator, check_int
from .vi.svi import VIConfig, VIResult, fit_vi

__all__ = [
    "setup", "cleanup", "rank_and_world", "shard", "allreduce_sum", "distributed_logdensity", "DistributedMHResult",
    "distributed_mh", "data_parallel_vi", "find_free_port", "spawn", "torchrun_command", "accelerate_command",
]


def rank_and_world(group=None) -> tuple[int, int]:
    """(rank, world size); (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(group), dist.get_world_size(group)
    return 0, 1


def setup(backend: str | None = None, *, rank: int | None = None, world_size: int | None = None,
          init_method: str | None = None) -> tuple[int, int]:
    """Initialise the default process group (no-op if already initialised). ``backend`` defaults to
    "nccl" when CUDA is available, else "gloo"; rank and world size default to the launcher's
    environment (torchrun / accelerate). With NCCL the local CUDA device is selected."""
    if dist.is_initialized():
        return rank_and_world()
    if backend is not None and backend not in ("gloo", "nccl", "mpi", "ucc"):
        raise ValueError(f"backend must be 'gloo', 'nccl', 'mpi', 'ucc' or None, got {backend!r}")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    world_size = check_int(world_size, "world_size", minimum=1)
    rank = check_int(rank, "rank", minimum=0, maximum=world_size - 1)
    if init_method is None:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
        init_method = "env://"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
    return rank, world_size


def cleanup() -> None:
    """Destroy the default process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(data: torch.Tensor | Sequence[torch.Tensor], rank: int | None = None, world_size: int | None = None):
    """Contiguous shard of the rows (dim 0) of a tensor or tuple of tensors for ``rank``; shard sizes
    differ by at most one (``torch.tensor_split``)."""
    if rank is None or world_size is None:
        rank, world_size = rank_and_world()
    rank, world_size = check_int(rank, "rank", minimum=0), check_int(world_size, "world_size", minimum=1)
    if not isinstance(data, (torch.Tensor, list, tuple)) or (not isinstance(data, torch.Tensor) and (
            not data or not all(isinstance(t, torch.Tensor) and t.ndim >= 1 for t in data))):
        raise TypeError(f"data must be a tensor or a non-empty sequence of tensors with rows, got {type(data).__name__}")
    if isinstance(data, torch.Tensor) and data.ndim < 1:
        raise ValueError("data must have a row dimension (dim 0), got a 0-d tensor")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    single = isinstance(data, torch.Tensor)
    items = (data,) if single else tuple(data)
    n = items[0].shape[0]
    if any(t.shape[0] != n for t in items):
        raise ValueError("all data tensors need the same number of rows")
    if n < world_size:
        raise ValueError(f"cannot shard {n} rows over {world_size} ranks")
    out = tuple(torch.tensor_split(t, world_size, dim=0)[rank] for t in items)
    return out[0] if single else out


def allreduce_sum(t: torch.Tensor, group=None) -> torch.Tensor:
    """Sum of ``t`` over ranks (a new tensor; no gradient); ``t`` itself without a process group."""
    check_finite_tensor(t, "t", floating=False)
    if not (dist.is_available() and dist.is_initialized()):
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out


class _AllReducedSum(torch.autograd.Function):
    """value(θ) = Σ_ranks f_r(θ) for θ replicated on every rank; backward uses the all-reduced gradient."""

    @staticmethod
    def forward(ctx, x, fn, group):
        need_grad = ctx.needs_input_grad[0]
        with torch.enable_grad():
            xr = x.detach().requires_grad_(need_grad)
            val = fn(xr)
            if val.shape != x.shape[:1]:
                raise ValueError(f"local_log_lik must map (C, d) to (C,), got {tuple(val.shape)}")
            grad = torch.autograd.grad(val.sum(), xr)[0] if need_grad else None
        c = x.shape[0]
        buf = val.detach().reshape(-1) if grad is None else torch.cat([val.detach().reshape(-1), grad.reshape(-1)])
        buf = allreduce_sum(buf, group)
        if grad is not None:
            ctx.save_for_backward(buf[c:].reshape(x.shape))
        return buf[:c].clone()

    @staticmethod
    def backward(ctx, grad_out):
        (g,) = ctx.saved_tensors
        return grad_out.unsqueeze(-1) * g, None, None


def distributed_logdensity(log_prior: Callable[[torch.Tensor], torch.Tensor],
                           local_log_lik: Callable[[torch.Tensor], torch.Tensor], group=None) -> Callable:
    """θ (C, d) -> log_prior(θ) + Σ_ranks local_log_lik_r(θ), (C,). Every rank must call it with the
    same θ at the same time (it is a collective)."""
    def logdensity(theta: torch.Tensor) -> torch.Tensor:
        return log_prior(theta) + _AllReducedSum.apply(theta, local_log_lik, group)
    logdensity.subset_ok = False  # a collective: every rank must evaluate all chains together
    return logdensity


@dataclass
class DistributedMHResult:
    """Draws (C, S, d) of random-walk Metropolis, the acceptance rate per chain, and the world size."""
    draws: torch.Tensor
    accept_rate: torch.Tensor
    world_size: int

    def __str__(self) -> str:
        return (f"DistributedMHResult(draws {tuple(self.draws.shape)} (chain, draw, dim), world size {self.world_size}, "
                f"acceptance {[round(float(a), 3) for a in self.accept_rate]})")


def distributed_mh(log_prior: Callable, local_log_lik: Callable, init: torch.Tensor, *, num_samples: int,
                   step_size: float | torch.Tensor, generator: torch.Generator, thin: int = 1,
                   group=None) -> DistributedMHResult:
    """Random-walk Metropolis over C chains, init (C, d), with the full-data log likelihood summed by
    all-reduce. ``generator`` must be seeded identically on every rank (it drives proposals and accept
    draws, so every rank takes the same decision). Uses ``arrcoc.bayes.mcmc`` kernels."""
    from .mcmc.metrics import identity_metric
    from .mcmc.mh import rwmh_init, rwmh_step
    for name, fn in (("log_prior", log_prior), ("local_log_lik", local_log_lik)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    check_finite_tensor(init, "init")
    if init.ndim != 2 or init.shape[0] < 1 or init.shape[1] < 1:
        raise ValueError(f"init must have shape (num_chains, dim), got {tuple(init.shape)}")
    num_samples, thin = check_int(num_samples, "num_samples", minimum=1), check_int(thin, "thin", minimum=1)
    generator = check_generator(generator)
    c, d = init.shape
    logdensity = distributed_logdensity(log_prior, local_log_lik, group)
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float, torch.Tensor)):
        raise TypeError(f"step_size must be a number or a tensor, got {type(step_size).__name__}")
    step = torch.as_tensor(step_size, dtype=init.dtype, device=init.device)
    if step.numel() not in (1, c):
        raise ValueError(f"step_size must be a scalar or have {c} entries (one per chain), got shape {tuple(step.shape)}")
    step = step.reshape(-1).expand(c).clone()
    if not (torch.isfinite(step) & (step > 0)).all():
        raise ValueError(f"step_size must be finite and > 0, got {step.tolist()[:5]}")
    metric = identity_metric(c, d, False, init.dtype, init.device)
    state = rwmh_init(init, logdensity)
    if not torch.isfinite(state.logdensity).all():
        raise ValueError("the log density is not finite at init")
    draws = torch.empty(c, num_samples, d, dtype=init.dtype, device=init.device)
    acc = torch.zeros(c, dtype=init.dtype, device=init.device)
    for i in range(num_samples * thin):
        state, info = rwmh_step(state, generator, logdensity, step, metric)
        acc += info.is_accepted.to(acc.dtype)
        if (i + 1) % thin == 0:
            draws[:, (i + 1) // thin - 1] = state.position
    return DistributedMHResult(draws, acc / (num_samples * thin), rank_and_world(group)[1])


def data_parallel_vi(log_likelihood: Callable, prior, dim: int, local_data, *, generator: torch.Generator,
                     config: VIConfig | None = None, group=None, **overrides) -> VIResult:
    """Gaussian VI on data sharded over ranks. ``log_likelihood(z, *batch)`` (S, d) -> (S,) or (S, n) on
    a data batch; ``local_data`` is this rank's shard (tensor or tuple of tensors). Each rank optimises
    W * E_q[log p(shard | z)] - KL, the gradients are averaged by all-reduce (= the full-data ELBO
    gradient), and the per-step ELBO values are averaged too so that every rank stops at the same step.
    The generator must be seeded identically on all ranks. Minibatching (``batch_size``) is per shard."""
    _, world = rank_and_world(group)
    if not callable(log_likelihood):
        raise TypeError(f"log_likelihood must be callable, got {type(log_likelihood).__name__}")
    generator = check_generator(generator)
    if not isinstance(local_data, (torch.Tensor, list, tuple)):
        raise TypeError(f"local_data must be a tensor or a sequence of tensors, got {type(local_data).__name__}")
    data = (local_data,) if isinstance(local_data, torch.Tensor) else tuple(local_data)

    def scaled(z, *batch):
        out = log_likelihood(z, *batch)
        return world * (out.sum(-1) if out.ndim == 2 else out)

    def full(z):  # full-data log likelihood: all-reduced sum of the shards (same z on every rank)
        out = log_likelihood(z, *data)
        return allreduce_sum(out.sum(-1) if out.ndim == 2 else out, group)

    def grad_hook(q):
        if world == 1:
            return
        grads = [p.grad for p in q.parameters()]
        flat = allreduce_sum(torch.cat([g.reshape(-1) for g in grads]), group) / world
        i = 0
        for g in grads:
            g.copy_(flat[i:i + g.numel()].reshape(g.shape))
            i += g.numel()

    def value_hook(v):
        return allreduce_sum(v.reshape(1), group)[0] / world

    res = fit_vi(scaled, prior, dim, generator=generator, data=data, config=config, grad_hook=grad_hook,
                 value_hook=value_hook, final_log_likelihood=full, **overrides)
    res.method = f"data-parallel {res.method} (world size {world})"
    return res


# ------------------------------------------------------------------------------------------ launch
def find_free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_entry(rank, fn, world_size, port, backend, args):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)  # one thread per rank: ranks share the machine's cores
    setup(backend, rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
    finally:
        cleanup()


def spawn(fn: Callable, world_size: int, *args, backend: str = "gloo") -> None:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` fresh processes with an initialised
    process group on a free localhost port (``fn`` must be importable: a module-level function)."""
    import torch.multiprocessing as mp
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    world_size = check_int(world_size, "world_size", minimum=1)
    mp.spawn(_spawn_entry, args=(fn, world_size, find_free_port(), backend, args), nprocs=world_size, join=True)


def _check_launch(script, nprocs) -> tuple[str, int]:
    if not isinstance(script, (str, os.PathLike)) or not str(script):
        raise TypeError(f"script must be a non-empty path, got {script!r}")
    return str(script), check_int(nprocs, "nprocs", minimum=1)


def torchrun_command(script: str, nprocs: int, *script_args: str) -> list[str]:
    """argv for ``torchrun --standalone --nproc_per_node=N script ...`` (call ``setup()`` in the script)."""
    script, nprocs = _check_launch(script, nprocs)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nprocs}", script,
            *map(str, script_args)]


def accelerate_command(script: str, nprocs: int, *script_args: str, cpu: bool = True) -> list[str]:
    """argv for ``accelerate launch --num_processes N [--cpu] script ...`` (call ``setup()`` in the script)."""
    script, nprocs = _check_launch(script, nprocs)
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(nprocs),
            *(["--cpu"] if cpu else []), script, *map(str, script_args)]
