"""The pieces of a NUTS trajectory, shared by both batchings (lock-step ``nuts.py``, asynchronous
``nuts_async.py``), split the way BlackJAX splits them:

* leaf: one leapfrog step (``integrators.leapfrog_step``), its energy (``hmc.hamiltonian``) and the
  energy error that counts as a divergence (``energy_error``);
* proposal: multinomial sampling of the returned state: uniform progressive sampling of the leaves
  inside a subtree (``sample_leaf``), biased progressive sampling when a subtree merges into the
  trajectory (``merge_subtree``); the sampled state is packed as [q | grad | logp | H]
  (``pack_proposal`` / ``unpack_proposal``);
* termination: the generalised no-U-turn criterion (``no_uturn``) on every completed sub-subtree
  through checkpoints (``subtree_no_uturn``, and ``halves_no_uturn`` for Stan's extra checks across
  the two halves: left half + first state of the right half, last state of the left half + right
  half), and at each merge of a subtree into the trajectory (``merge_no_uturn``).

Checkpoints (the iterative form of the tree recursion): a leaf's record is
``[p, v, S, p_prev, v_prev]`` stacked on dim -2, (..., 5, d), with p its momentum, v = M^{-1} p, S the
subtree's momentum sum up to and including it, and the previous leaf's p and v.  Leaf n of a subtree
(0-based) stores its record, when n is even, in slot ``popcount(n >> 1)``; when n is odd it completes
the sub-subtrees of 2^j leaves for j = 1 .. trailing_ones(n), the one of 2^j leaves starting at the
record in slot ``popcount(n >> 1) - j + 1`` and its right half at slot ``popcount(n >> 1) - j + 2``.

Every function is straight-line tensor code over leading batch dimensions (chains, and sub-subtrees
when stacked), so the asynchronous step that calls them still traces into one graph.
"""
from __future__ import annotations

import torch

from .hmc import hamiltonian
from .metrics import Metric

__all__ = ["energy_error", "leaf_energy", "pack_proposal", "unpack_proposal", "sample_leaf", "merge_subtree",
           "no_uturn", "checkpoint_record", "subtree_no_uturn", "halves_no_uturn", "merge_no_uturn"]

# record layout along dim -2
_P, _V, _S, _P_PREV, _V_PREV = range(5)


def leaf_energy(logdensity: torch.Tensor, momentum: torch.Tensor, velocity: torch.Tensor,
                metric: Metric) -> torch.Tensor:
    """H at a leaf (C,), with the leaf's velocity M^{-1} p already at hand."""
    return hamiltonian(logdensity, momentum, metric, velocity=velocity)


def energy_error(energy: torch.Tensor, initial_energy: torch.Tensor, max_delta_energy: float):
    """delta = H - H0 (C,), the acceptance statistic min(1, exp(-delta)) and divergence
    (delta > max_delta_energy or NaN)."""
    delta = energy - initial_energy
    return delta, torch.exp(-delta).clamp(max=1.0), ~(delta <= max_delta_energy)


def pack_proposal(position: torch.Tensor, grad: torch.Tensor, logdensity: torch.Tensor,
                  energy: torch.Tensor) -> torch.Tensor:
    """The sampled state as one tensor [q | grad | logp | H], (C, 2d + 2)."""
    return torch.cat([position, grad, logdensity.unsqueeze(-1), energy.unsqueeze(-1)], -1)


def unpack_proposal(proposal: torch.Tensor, dim: int):
    """(position (C, d), logdensity (C,), grad (C, d), energy (C,)) from ``pack_proposal``'s layout."""
    return (proposal[:, :dim], proposal[:, 2 * dim], proposal[:, dim:2 * dim], proposal[:, 2 * dim + 1])


def sample_leaf(subtree_log_weight: torch.Tensor, subtree_proposal: torch.Tensor, delta: torch.Tensor,
                ok: torch.Tensor, log_uniform: torch.Tensor, leaf: torch.Tensor):
    """Uniform progressive sampling: a new leaf of weight exp(-delta) joins the subtree (chains with
    ``ok``) and replaces its sampled state with probability weight / new total.  Returns the new
    (log weight (C,), proposal (C, 2d + 2))."""
    new_log_weight = torch.logaddexp(subtree_log_weight, -delta)
    take = ok & (log_uniform < -delta - new_log_weight)
    return (torch.where(ok, new_log_weight, subtree_log_weight),
            torch.where(take.unsqueeze(-1), leaf, subtree_proposal))


def merge_subtree(log_weight: torch.Tensor, proposal: torch.Tensor, subtree_log_weight: torch.Tensor,
                  subtree_proposal: torch.Tensor, valid: torch.Tensor, log_uniform: torch.Tensor):
    """Biased progressive sampling: a valid subtree merges into the trajectory and its sampled state
    replaces the trajectory's with probability min(1, subtree weight / old weight).  Returns the new
    (log weight, proposal)."""
    take = valid & (log_uniform < subtree_log_weight - log_weight)
    return (torch.where(valid, torch.logaddexp(log_weight, subtree_log_weight), log_weight),
            torch.where(take.unsqueeze(-1), subtree_proposal, proposal))


def no_uturn(velocity_a: torch.Tensor, velocity_b: torch.Tensor, momentum_sum: torch.Tensor) -> torch.Tensor:
    """Generalised no-U-turn criterion: both end velocities (p sharp) point along the momentum sum."""
    return ((velocity_a * momentum_sum).sum(-1) > 0) & ((velocity_b * momentum_sum).sum(-1) > 0)


def checkpoint_record(momentum: torch.Tensor, velocity: torch.Tensor, momentum_sum: torch.Tensor,
                      previous_momentum: torch.Tensor, previous_velocity: torch.Tensor) -> torch.Tensor:
    """A leaf's checkpoint record [p, v, S, p_prev, v_prev], (C, 5, d)."""
    return torch.stack([momentum, velocity, momentum_sum, previous_momentum, previous_velocity], -2)


def subtree_no_uturn(start: torch.Tensor, momentum_sum: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """No U-turn across a whole completed sub-subtree: from the leaf recorded in ``start`` (..., 5, d)
    to the current leaf (subtree momentum sum S and velocity v, (..., d)).  Returns (...,) bool."""
    rho = momentum_sum - start[..., _S, :] + start[..., _P, :]
    return no_uturn(start[..., _V, :], velocity, rho)


def halves_no_uturn(start: torch.Tensor, right_start: torch.Tensor, momentum_sum: torch.Tensor,
                    velocity: torch.Tensor) -> torch.Tensor:
    """Stan's checks across the two halves of a completed sub-subtree (``start`` and its right half's
    first leaf ``right_start``, records (..., 5, d)): left half + the right half's first state, and
    the left half's last state + right half.  Returns (...,) bool, True when neither U-turns."""
    left = no_uturn(start[..., _V, :], right_start[..., _V, :],
                    right_start[..., _S, :] - start[..., _S, :] + start[..., _P, :])
    right = no_uturn(right_start[..., _V_PREV, :], velocity,
                     momentum_sum - right_start[..., _S, :] + right_start[..., _P, :] + right_start[..., _P_PREV, :])
    return left & right


def merge_no_uturn(far_velocity: torch.Tensor, near_velocity: torch.Tensor, near_momentum: torch.Tensor,
                   velocity: torch.Tensor, first_momentum: torch.Tensor, first_velocity: torch.Tensor,
                   momentum_sum: torch.Tensor, subtree_momentum_sum: torch.Tensor) -> torch.Tensor:
    """Stan's three checks when a subtree merges into the trajectory (all (C, d)): across the whole new
    trajectory (old far end to the subtree's last leaf), old trajectory + the subtree's first leaf,
    old trajectory's near end + subtree.  ``momentum_sum`` is the old trajectory's.  Returns (C,) bool."""
    total = momentum_sum + subtree_momentum_sum
    return no_uturn(torch.stack([far_velocity, far_velocity, near_velocity], 1),
                    torch.stack([velocity, first_velocity, velocity], 1),
                    torch.stack([total, momentum_sum + first_momentum, subtree_momentum_sum + near_momentum], 1)
                    ).all(-1)
