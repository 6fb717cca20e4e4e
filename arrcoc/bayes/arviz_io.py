"""Export draws to ArviZ ``InferenceData`` so ArviZ's plots and tables work on our samplers' output.

ArviZ is optional (``pip install arrcoc[arviz]``); it is imported only when a function here is
called. Supported: the ``InferenceData`` API of arviz 0.x (0.17 or newer).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["to_inference_data", "SAMPLE_STATS_RENAMES"]

# Our samplers' per-draw info names -> the names ArviZ's plots look for (plot_energy needs "energy",
# divergence markers need "diverging", ...). Applied to sample_stats when rename_stats=True.
SAMPLE_STATS_RENAMES = {
    "is_divergent": "diverging",
    "divergent": "diverging",
    "accept_prob": "acceptance_rate",
    "acceptance_probability": "acceptance_rate",
    "logdensity": "lp",
    "log_density": "lp",
    "num_integration_steps": "n_steps",
    "num_steps": "n_steps",
    "num_trajectory_expansions": "tree_depth",
}


def _import_arviz():
    try:
        import arviz as az
    except ImportError as err:  # exercised in the tests by hiding arviz from sys.modules
        raise ImportError("to_inference_data needs ArviZ, an optional dependency: "
                          "pip install arrcoc[arviz]") from err
    if not hasattr(az, "InferenceData") or not hasattr(az, "from_dict"):
        raise ImportError(f"to_inference_data needs the arviz 0.x InferenceData API (arviz>=0.17,<1); "
                          f"found arviz {getattr(az, '__version__', '?')}. "
                          "pip install arrcoc[arviz]")
    return az


def _to_numpy(value: Any, arg: str, key: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.to(torch.float32)
        return t.numpy()
    if isinstance(value, (np.ndarray, np.generic, int, float, bool, list, tuple)):
        return np.asarray(value)
    raise TypeError(f"`{arg}[{key!r}]` must be a torch.Tensor or array, got {type(value).__name__}")


def _group(group: Mapping | None, arg: str, chain_draw: tuple[int, int] | None,
           renames: Mapping[str, str] | None = None):
    """Convert one group to numpy, checking the leading (chain, draw) dims when required."""
    if group is None:
        return None, chain_draw
    if not isinstance(group, Mapping):
        raise TypeError(f"`{arg}` must be a dict of name -> tensor, got {type(group).__name__}")
    out = {}
    for key, value in group.items():
        if not isinstance(key, str):
            raise TypeError(f"`{arg}` keys must be strings, got {key!r}")
        arr = _to_numpy(value, arg, key)
        name = renames.get(key, key) if renames else key
        if name in out:
            raise ValueError(f"`{arg}` has two entries named {name!r} after renaming {key!r}")
        if chain_draw is not False:
            if arr.ndim < 2:
                raise ValueError(f"`{arg}[{key!r}]` must be shaped (chain, draw, ...), got shape "
                                 f"{arr.shape}")
            if chain_draw is None:
                chain_draw = (arr.shape[0], arr.shape[1])
            elif arr.shape[:2] != chain_draw:
                raise ValueError(f"`{arg}[{key!r}]` has (chain, draw) = {arr.shape[:2]} but the "
                                 f"posterior has {chain_draw}")
        out[name] = arr
    return out, chain_draw


def to_inference_data(posterior: Mapping[str, torch.Tensor], sample_stats=None, log_likelihood=None,
                      observed_data=None, coords=None, dims=None, *, rename_stats: bool = True,
                      attrs: Mapping[str, Any] | None = None):
    """Build an ``arviz.InferenceData`` from draws shaped (chain, draw, *shape).

    posterior       dict name -> Tensor (chain, draw, ...), all with the same chain and draw counts.
    sample_stats    dict name -> Tensor (chain, draw, ...) of per-draw sampler info; with
                    ``rename_stats`` our names map to ArviZ's (see ``SAMPLE_STATS_RENAMES``).
    log_likelihood  dict observed-variable name -> Tensor (chain, draw, *obs_shape) (for loo/waic).
    observed_data   dict name -> Tensor of any shape.
    coords, dims    passed to ArviZ: coordinate values per dim name, and dim names per variable.
    Tensors are detached and copied to CPU numpy (half precisions become float32). Raises ImportError
    naming ``pip install arrcoc[arviz]`` when ArviZ is missing, ValueError/TypeError on bad input.
    """
    if not isinstance(posterior, Mapping) or not posterior:
        raise ValueError("`posterior` must be a non-empty dict of name -> Tensor (chain, draw, ...)")
    az = _import_arviz()
    post, chain_draw = _group(posterior, "posterior", None)
    stats, _ = _group(sample_stats, "sample_stats", chain_draw,
                      SAMPLE_STATS_RENAMES if rename_stats else None)
    loglik, _ = _group(log_likelihood, "log_likelihood", chain_draw)
    observed, _ = _group(observed_data, "observed_data", False)
    if coords is not None and not isinstance(coords, Mapping):
        raise TypeError(f"`coords` must be a dict of dim name -> values, got {type(coords).__name__}")
    if dims is not None and not isinstance(dims, Mapping):
        raise TypeError(f"`dims` must be a dict of variable -> list of dim names, got "
                        f"{type(dims).__name__}")
    kwargs = {k: v for k, v in (("sample_stats", stats), ("log_likelihood", loglik),
                                ("observed_data", observed)) if v is not None}
    return az.from_dict(posterior=post, coords=dict(coords) if coords else None,
                        dims=dict(dims) if dims else None, attrs=dict(attrs) if attrs else None,
                        **kwargs)
