"""Frozen TorchScript graphs of a backbone, one per crop size: the CPU fast path and the export.

The encoder calls its backbone at a few fixed crop sizes only (the thumbnail, the glimpse and one
size per token level: ``backbone.input_size(side)``), with a varying number of crops. For each size
``trace_features`` traces the backbone's feature extractor once (``torch.jit.trace`` at one crop)
and freezes it (``torch.jit.freeze``: parameters become constants, each BatchNorm is folded into
the convolution before it, dead branches go). The batch dimension stays free. For a convolutional
backbone with channels-last weights the graph runs oneDNN's channels-last kernels.

Each graph is checked when it is made: on two seeded example crops (so the batch dimension is
exercised too) its output must equal the eager one within ``tol`` (relative to the largest
value); a size whose graph disagrees, or that does not trace, runs eagerly and the reason is
kept in ``TracedBackbone.notes``. ``TracedBackbone`` is a ``VisionBackbone`` (same attributes, the
same ``model`` submodule, so the same state-dict keys) that runs the graphs: ``optimize_for_cpu``
puts it in the place of ``model.backbone``, the Triton export writes its graphs to ``model.pt``.

TorchScript is deprecated in torch 2.13 in favour of ``torch.compile`` / ``torch.export``, but it
is what Triton's PyTorch backend loads, and the inductor compile of this backbone takes ~90 s per
crop size on 2 cores (``arrcoc.serving.cpu``); the deprecation warnings are silenced here only.
"""
from __future__ import annotations

import threading
import warnings

import torch
from torch import Tensor, nn

from arrcoc._checks import check_int
from arrcoc.backbones import VisionBackbone
from arrcoc.bayes._validate import check_real

__all__ = ["TracedBackbone", "trace_features", "backbone_sizes"]


class _Features(nn.Module):
    """backbone._features as a module with one tensor output (N, h*w, D)."""

    def __init__(self, backbone: VisionBackbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone._features(x)[0]


def _examples(size: int, n: int = 2) -> Tensor:
    g = torch.Generator().manual_seed(size)
    return torch.randn(n, 3, size, size, generator=g)  # (n, 3, S, S), about the scale of normalised pixels


def _layout(x: Tensor, channels_last: bool) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def trace_features(backbone: VisionBackbone, size: int, *, channels_last: bool = False, tol: float = 1e-4):
    """(frozen graph, h, w, max relative error) of ``backbone``'s feature extractor at ``size`` pixels.

    The graph maps (N, 3, size, size) float32 crops, normalised for the backbone, to (N, h*w, D)
    patch tokens for any N. Raises RuntimeError when the graph's output differs from the eager one
    by more than ``tol`` times the largest eager value on two seeded crops."""
    if not isinstance(backbone, VisionBackbone):
        raise TypeError(f"backbone must be an arrcoc.backbones.VisionBackbone, got {type(backbone).__name__}")
    size = check_int(size, "size", minimum=1)
    tol = check_real(tol, "tol", low=0.0)
    was_training = backbone.training
    backbone.eval()
    ex = _layout(_examples(size), channels_last)  # (2, 3, S, S)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            ref, h, w = backbone._features(ex)  # (2, h*w, D)
            graph = torch.jit.freeze(torch.jit.trace(_Features(backbone).eval(), ex[:1], check_trace=False))
            out = graph(ex)
    finally:
        backbone.train(was_training)
    if out.shape != ref.shape:
        raise RuntimeError(f"the traced graph at {size} px returned {tuple(out.shape)}, eager {tuple(ref.shape)}")
    err = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
    if not err <= tol:
        raise RuntimeError(f"the traced graph at {size} px differs from eager by {err:.1e} (relative to the "
                           f"largest value; tolerance {tol:g})")
    return graph, int(h), int(w), err


def backbone_sizes(model) -> list[int]:
    """The crop sizes in pixels at which an ``ARRCOCVisionModel`` calls its backbone (thumbnail,
    glimpse, the ConSE channel's region crops when it has one, one per nonzero token level),
    deduplicated, ascending."""
    from arrcoc.modeling import ARRCOCVisionModel
    from arrcoc.modeling.regions import level_side

    if not isinstance(model, ARRCOCVisionModel):
        raise TypeError(f"model must be an ARRCOCVisionModel, got {type(model).__name__}")
    sides = {model.glimpse_side} | {level_side(lv) for lv in model.config.levels if lv > 0}
    if model.config.global_tokens > 0:
        sides.add(model.config.global_side)
    if model.allocator.concept is not None and model.config.concept_side > 0:
        sides.add(model.config.concept_side)
    return sorted({model.backbone.input_size(s) for s in sides})


class TracedBackbone(VisionBackbone):
    """A ``VisionBackbone`` that runs frozen TorchScript graphs of ``backbone`` at ``sizes``.

    sizes: crop sizes (pixels) to trace now; another size met later is traced on first use while
        fewer than ``max_sizes`` graphs exist, else it runs eagerly (a bounded number of graphs:
        each holds its own folded weights).
    channels_last: feed crops in channels-last layout (the weights must already be channels-last:
        ``optimize_for_cpu`` converts them first).
    tol: agreement each graph must show with eager on seeded crops (see ``trace_features``).
    """

    def __init__(self, backbone: VisionBackbone, sizes=(), *, channels_last: bool = False,
                 max_sizes: int = 8, tol: float = 1e-4):
        super().__init__()
        if not isinstance(backbone, VisionBackbone) or isinstance(backbone, TracedBackbone):
            raise TypeError(f"backbone must be an (untraced) arrcoc.backbones.VisionBackbone, got {type(backbone).__name__}")
        self.max_sizes = check_int(max_sizes, "max_sizes", minimum=1)
        self.tol = check_real(tol, "tol", low=0.0)
        if not isinstance(channels_last, bool):
            raise TypeError(f"channels_last must be a bool, got {channels_last!r}")
        self.channels_last = channels_last
        self.__dict__["eager"] = backbone  # unregistered: its weights are registered once, below
        if isinstance(getattr(backbone, "model", None), nn.Module):
            self.model = backbone.model  # the same submodule name as timm / HF backbones: same state-dict keys
        else:
            self.inner = backbone
        for name in ("feature_dim", "patch_size", "native_size", "resizable", "image_mean", "image_std"):
            setattr(self, name, getattr(backbone, name))
        if hasattr(backbone, "_vit"):
            self._vit = backbone._vit
        self.graphs: dict[int, tuple] = {}  # size -> (graph, h, w)
        self.notes: dict[int, str] = {}     # size -> why it runs eagerly, or the measured agreement
        self._lock = threading.Lock()
        for s in sizes:
            self._ensure(check_int(s, "sizes[i]", minimum=1))

    def spec(self) -> dict:
        """The traced backbone's own spec (``build_backbone`` rebuilds the eager one)."""
        return self.eager.spec()

    def _ensure(self, size: int):
        if size in self.graphs:
            return self.graphs[size]
        with self._lock:
            if size in self.graphs or size in self.notes and self.notes[size].startswith("eager"):
                return self.graphs.get(size)
            if len(self.graphs) >= self.max_sizes:
                self.notes[size] = f"eager: {self.max_sizes} sizes are traced already (max_sizes)"
                return None
            try:
                graph, h, w, err = trace_features(self.eager, size, channels_last=self.channels_last, tol=self.tol)
            except Exception as e:  # noqa: BLE001 - any tracing failure means eager for this size
                self.notes[size] = f"eager: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
                return None
            self.graphs[size] = (graph, h, w)
            self.notes[size] = f"traced (max relative difference to eager {err:.1e})"
            return self.graphs[size]

    def _features(self, pixel_values: Tensor):
        hit = None
        if pixel_values.dtype == torch.float32 and pixel_values.shape[-1] == pixel_values.shape[-2] \
                and not torch.is_grad_enabled():
            hit = self._ensure(int(pixel_values.shape[-1]))
        if hit is None:  # another dtype (autocast), a non-square crop, or gradients wanted: eager
            return self.eager._features(pixel_values)
        graph, h, w = hit
        return graph(_layout(pixel_values, self.channels_last)), h, w  # (N, h*w, D)

    def extra_repr(self) -> str:
        return f"traced sizes={sorted(self.graphs)}, channels_last={self.channels_last}"
