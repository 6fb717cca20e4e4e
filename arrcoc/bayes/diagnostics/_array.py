"""Array plumbing shared by the diagnostics: input checks, splitting, ranks, quantiles, FFT autocovariance.

Every internal helper works on a *parameter-major* tensor ``y`` of shape ``(P, K, n)``: ``P`` flattened
parameters, ``K`` chains, ``n`` draws. Public functions reach that layout through :func:`prepare`.
The numerical conventions (Blom rank offset, average ranks for ties, numpy's "linear" quantile, the
split that drops the middle draw of odd-length chains) copy ``arviz_stats.base`` so results agree with
ArviZ to rounding error.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "prepare", "result_dtype", "split_chains", "z_scale", "sort_flat", "quantile_sorted",
    "median_sorted", "autocov", "autocorr", "next_fast_len", "chunks",
]

# ArviZ calls data "constant" when max - min < numpy's float64 resolution (1e-15); we use the same cut
# so constant-input results agree with it exactly.
CONST_RESOLUTION = float(np.finfo(np.float64).resolution)
# Blom (1958) offset used by ArviZ's rank normalisation: z = Phi^-1((r - 3/8) / (S - 2*3/8 + 1)).
BLOM_C = 3.0 / 8.0
# Parameters are processed in chunks of about this many draws (elements): 2^21 float64 = 16 MiB per
# temporary bounds peak memory for 10^4+ parameters, while keeping few parallel regions (2^19 chunks
# ran 2-3x slower on a busy 2-core box, where every region waits for both threads).
CHUNK_ELEMENTS = 1 << 21


def result_dtype(x: torch.Tensor) -> torch.dtype:
    """float32/float64 inputs keep their dtype in the result; half precisions get float32 (an ESS of
    4000 does not fit bfloat16's 3 digits); integer/bool inputs get the default dtype."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def prepare(x, chain_axis: int = 0, draw_axis: int = 1, *, name: str = "x", min_chains: int = 1,
            min_draws: int = 4, what: str = "this diagnostic"):
    """Check ``x`` (chain, draw, *param_shape) and return ``(y (P, C, N), param_shape, out_dtype)``.

    ``y`` keeps ``x``'s floating dtype (integers and booleans become float64) and is contiguous in the
    draw axis. Raises TypeError for non-tensors or complex data and ValueError for a wrong number of
    dimensions, equal/out-of-range axes, too few chains or draws, and NaN or infinite draws.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (chain, draw, *param_shape), "
                        f"got {type(x).__name__}")
    if x.is_complex():
        raise TypeError(f"`{name}` must be real-valued, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"`{name}` must have at least 2 dimensions (chain, draw, *param_shape), "
                         f"got shape {tuple(x.shape)}")
    nd = x.ndim
    for arg, ax in (("chain_axis", chain_axis), ("draw_axis", draw_axis)):
        if not isinstance(ax, int) or not -nd <= ax < nd:
            raise ValueError(f"`{arg}` must be an int in [-{nd}, {nd}) for `{name}` of shape "
                             f"{tuple(x.shape)}, got {ax!r}")
    ca, da = chain_axis % nd, draw_axis % nd
    if ca == da:
        raise ValueError(f"`chain_axis` and `draw_axis` must differ, both are {ca}")
    x = torch.movedim(x.detach(), (ca, da), (0, 1))  # (C, N, *param_shape)
    n_chain, n_draw = x.shape[0], x.shape[1]
    if n_chain < min_chains:
        raise ValueError(f"`{name}` has {n_chain} chain(s) along chain_axis; {what} needs at least "
                         f"{min_chains}")
    if n_draw < min_draws:
        raise ValueError(f"`{name}` has {n_draw} draw(s) along draw_axis; {what} needs at least "
                         f"{min_draws}")
    out_dtype = result_dtype(x)
    if not x.is_floating_point():
        x = x.to(torch.float64)
    if x.numel() and not bool(torch.isfinite(x).all()):
        bad = "NaN" if bool(torch.isnan(x).any()) else "infinite"
        raise ValueError(f"`{name}` contains {bad} draws; diagnostics need finite values")
    param_shape = tuple(x.shape[2:])
    y = x.reshape(n_chain, n_draw, -1).permute(2, 0, 1).contiguous()  # (P, C, N)
    return y, param_shape, out_dtype


def chunks(num_params: int, per_param: int):
    """Yield slices over the parameter axis so each chunk holds about CHUNK_ELEMENTS draws."""
    step = max(1, CHUNK_ELEMENTS // max(1, per_param))
    for start in range(0, num_params, step):
        yield slice(start, min(num_params, start + step))


def split_chains(y: torch.Tensor) -> torch.Tensor:
    """(P, C, N) -> (P, 2C, N // 2): first and last halves as separate chains (middle draw dropped
    when N is odd, as ArviZ does). A view when N is even."""
    p, c, n = y.shape
    half = n // 2
    if n % 2 == 0:
        return y.reshape(p, c * 2, half)  # (P, 2C, N/2): chain order differs from ArviZ, harmless
    return torch.cat((y[..., :half], y[..., n - half:]), dim=1)  # (P, 2C, N//2)


def sort_last(t: torch.Tensor, indices: bool = False):
    """Sort along the last dim -> (values, indices or None).

    On CPU this uses numpy's vectorised (SIMD) sort, several times faster than ``torch.sort`` for
    float rows of thousands of draws; elsewhere ``torch.sort``. Tie order is irrelevant to callers.
    """
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        a = t.detach().contiguous().numpy()
        if indices:
            idx = np.argsort(a, axis=-1)
            return torch.from_numpy(np.take_along_axis(a, idx, axis=-1)), torch.from_numpy(idx)
        return torch.from_numpy(np.sort(a, axis=-1)), None
    if indices:
        v, idx = torch.sort(t, dim=-1)
        return v, idx
    return torch.sort(t, dim=-1).values, None


def sort_flat(y: torch.Tensor) -> torch.Tensor:
    """Sorted draws of each parameter over chains and draws: (P, K, n) -> (P, K*n)."""
    return sort_last(y.reshape(y.shape[0], -1))[0]


def _blom_table(size: int, device) -> torch.Tensor:
    """z for every possible average rank 1, 1.5, 2, ..., size; entry k belongs to rank k/2 + 1."""
    ranks = torch.arange(2, 2 * size + 1, dtype=torch.float64, device=device) / 2  # (2S-1,)
    return torch.special.ndtri((ranks - BLOM_C) / (size - 2 * BLOM_C + 1))


def _fix_ties(z_sorted: torch.Tensor, ties_next: torch.Tensor, table: torch.Tensor) -> None:
    """Give every run of equal sorted values its average rank's z (scipy's "average"), in place.

    Works on the tied positions only (sparse), so the usual handful of ties costs almost nothing and
    fully discrete data still stays vectorised.
    """
    rows, cols = ties_next.nonzero(as_tuple=True)  # (T,) each: sorted[r, c] == sorted[r, c + 1]
    t = rows.numel()
    new_run = torch.ones(t, dtype=torch.bool, device=rows.device)
    new_run[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1] + 1)
    run_id = new_run.cumsum(0) - 1  # (T,)
    end_run = torch.ones_like(new_run)
    end_run[:-1] = new_run[1:]
    first = cols[new_run]  # (R,) first sorted position of each tie group
    last = cols[end_run] + 1  # (R,) last sorted position of each tie group
    val = table[first + last][run_id]  # (T,) z of the average rank (first + last)/2 + 1
    z_sorted.index_put_((rows, cols), val)
    z_sorted.index_put_((rows, cols + 1), val)


def z_scale(y: torch.Tensor, return_sorted: bool = False):
    """Rank-normalise each parameter over all its chains and draws: (P, K, n) -> (P, K, n) float64.

    Ranks are scipy's ``rankdata(method="average")`` (ties share their mean rank), mapped through
    Blom's offset and the normal quantile function exactly like ``arviz_stats`` ``_z_scale``.
    Vectorised: one sort per row and a scatter, no loop over parameters. With ``return_sorted`` also
    returns the sorted rows (P, K*n) in ``y``'s dtype.
    """
    p = y.shape[0]
    flat = y.reshape(p, -1)  # (P, S)
    s = flat.shape[1]
    v, idx = sort_last(flat, indices=True)  # (P, S)
    table = _blom_table(s, y.device)  # (2S-1,)
    z_sorted = table[::2].expand(p, s)  # (P, S) z of ranks 1..S, shared by every row
    ties_next = v[:, 1:] == v[:, :-1]  # (P, S-1)
    if bool(ties_next.any()):
        z_sorted = z_sorted.clone()
        _fix_ties(z_sorted, ties_next, table)
    z = torch.empty(p, s, dtype=torch.float64, device=y.device).scatter_(1, idx.to(y.device), z_sorted)
    z = z.reshape(y.shape)
    return (z, v) if return_sorted else z


def quantile_sorted(s: torch.Tensor, q: float) -> torch.Tensor:
    """numpy's default ("linear", type 7) quantile of each sorted row of ``s`` (P, S) -> (P,)."""
    n = s.shape[-1]
    vi = (n - 1) * float(q)
    if vi >= n - 1:
        return s[:, -1]
    if vi < 0:
        return s[:, 0]
    lo = math.floor(vi)
    g = vi - lo
    a, b = s[:, lo], s[:, lo + 1]
    d = b - a
    # numpy's _lerp: a + d*g, but b - d*(1-g) when g >= 0.5 (keeps monotonicity)
    return b - d * (1 - g) if g >= 0.5 else a + d * g


def median_sorted(s: torch.Tensor) -> torch.Tensor:
    """numpy's median of each sorted row of ``s`` (P, S) -> (P,): mean of the middle two if S even."""
    n = s.shape[-1]
    if n % 2:
        return s[:, n // 2].to(torch.float64)
    return (s[:, n // 2 - 1].to(torch.float64) + s[:, n // 2].to(torch.float64)) / 2


def next_fast_len(n: int) -> int:
    """Smallest 5-smooth integer (2^a 3^b 5^c) >= n: a length the FFT handles fast."""
    if n <= 6:
        return max(1, n)
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _acov_last(y: torch.Tensor, mean_over: int | None = None) -> torch.Tensor:
    """Biased autocovariance of every lag along the last dim (length n), zero-padded FFT.

    With ``mean_over`` set, the power spectrum is averaged over that dim before the inverse FFT, which
    gives the mean of the autocovariances over it at the cost of one inverse transform.
    """
    n = y.shape[-1]
    m = next_fast_len(2 * n)
    buf = y.new_zeros(*y.shape[:-1], m)  # (..., m) zero padded, centred series written in place
    torch.sub(y, y.mean(dim=-1, keepdim=True), out=buf[..., :n])
    fr = torch.view_as_real(torch.fft.rfft(buf, dim=-1))  # (..., m//2+1, 2)
    if mean_over is None:
        power = fr.square().sum(dim=-1)  # (..., m//2+1)
    else:
        dim = mean_over % y.ndim
        letters = "abcdefgh"[: y.ndim]
        keep = letters[:dim] + letters[dim + 1:]
        power = torch.einsum(f"{letters}z,{letters}z->{keep}", fr, fr) / y.shape[dim]
    return torch.fft.irfft(power, n=m, dim=-1)[..., :n] / n  # (..., n)


def _as_float64_last(x: torch.Tensor, dim: int, arg: str = "x"):
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{arg}` must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError(f"`{arg}` must have at least one dimension")
    if not isinstance(dim, int) or not -x.ndim <= dim < x.ndim:
        raise ValueError(f"`dim` must be an int in [-{x.ndim}, {x.ndim}), got {dim!r}")
    if x.is_complex():
        raise TypeError(f"`{arg}` must be real-valued, got dtype {x.dtype}")
    if x.shape[dim] < 1:
        raise ValueError(f"`{arg}` needs at least one element along dim {dim}")
    if x.dtype == torch.bool:
        raise TypeError(f"`{arg}` must be a real-valued numeric tensor, got dtype {x.dtype}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"`{arg}` contains NaN or inf values; autocovariances need finite draws")
    out_dtype = result_dtype(x)
    return torch.movedim(x, dim, -1).to(torch.float64), out_dtype


def autocov(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Autocovariance at every lag along ``dim`` (FFT based, zero padded to a fast length >= 2n).

    ``out[..., k] = (1/n) * sum_{t<n-k} (x_t - xbar)(x_{t+k} - xbar)`` (the biased estimator ArviZ
    uses). Same shape as ``x``; computed in float64, returned in ``x``'s floating dtype.
    """
    xf, out_dtype = _as_float64_last(x, dim)
    return torch.movedim(_acov_last(xf), -1, dim).to(out_dtype)


def autocorr(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Autocorrelation at every lag along ``dim``: :func:`autocov` divided by its lag-0 value.

    A constant series has (up to rounding of its mean) zero variance, so its autocorrelation is 0/0
    = NaN or rounding noise, silently, as in ArviZ; check the variance first if that matters.
    """
    xf, out_dtype = _as_float64_last(x, dim)
    acov = _acov_last(xf)
    return torch.movedim(acov / acov[..., :1], -1, dim).to(out_dtype)
