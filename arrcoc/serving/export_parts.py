"""``export_parts``: the parts of the encoder that trace, for Triton's PyTorch and ONNX Runtime backends.

``arrcoc export-triton --backend torchscript|onnx`` writes, next to the Python-backend stages and
the ensemble (``arrcoc.serving.export``), one model per part:

    arrcoc_backbone_<S>px/   the backbone at one crop size S (the thumbnail, the glimpse, each token
                             level's crops: ``backbone_sizes``): (N, 3, S, S) normalised crops ->
                             (N, h*w, D) patch tokens; BatchNorm folded (frozen graph)
    arrcoc_pixel_scorers/    TorchScript only: the pixel scorers' raw scores of an image's region
                             crops (R, 3, s, s) -> (R, 2) = (grey-level entropy, spectral-residual
                             saliency), the ``information_pixel`` / ``salience_spectral`` channels
                             before standardisation. ONNX has no weighted ``bincount`` (the soft
                             histogram), so there is no ONNX version.

``torchscript``: ``1/model.pt`` (``torch.jit.save`` of the frozen graph), ``platform:
"pytorch_libtorch"``, tensors ``INPUT__0`` / ``OUTPUT__0`` (the PyTorch backend's naming).
``onnx``: ``1/model.onnx`` (``torch.onnx.export``, the torch.export-based exporter; the batch
dimension is dynamic), ``platform: "onnxruntime_onnx"``, tensors ``pixels`` / ``tokens``.
Every part is checked when written: the exported file, loaded back (``torch.jit.load`` /
an ``onnxruntime`` session), must give the eager outputs within ``tol`` on seeded inputs.

The tritonserver this project runs (PyPI's nvidia-pytriton) ships only the Python backend, so it
cannot load these models: start it with ``--model-control-mode explicit --load-model arrcoc ...``
(the Python stages) or serve the parts from a full Triton build; the tests check the files
in-process (``tests/serving/test_export_parts.py``).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from arrcoc._checks import check_int
from arrcoc.bayes._validate import check_real

from .traced import _examples, backbone_sizes, trace_features

__all__ = ["PART_BACKENDS", "PixelScorers", "export_parts"]

PART_BACKENDS = ("torchscript", "onnx")


class PixelScorers(nn.Module):
    """The allocator's pixel scorers as one module: region crops (B, R, 3, s, s) -> (B, R, 2) raw
    (grey-level entropy, spectral-residual saliency) with the allocator's own settings (inputs
    trusted: the checks of ``RelevanceAllocator.forward`` are not part of the graph)."""

    def __init__(self, allocator):
        from arrcoc.relevance import RelevanceAllocator

        super().__init__()
        if not isinstance(allocator, RelevanceAllocator):
            raise TypeError(f"allocator must be a RelevanceAllocator, got {type(allocator).__name__}")
        info, sal = allocator.information, allocator.salience
        self.bins, self.soft, self.max_pixels = info.bins, info.soft, info.max_pixels
        self.grid, self.size, self.blur = sal.grid, sal.size, sal.blur

    def forward(self, region_pixels: Tensor) -> Tensor:
        from arrcoc.relevance.scorers import grey_entropy, grey_spectral_saliency

        grey = region_pixels.mean(2)  # (B, R, s, s)
        ent = grey_entropy(grey, self.bins, self.soft, self.max_pixels, validate=False)  # (B, R)
        spec = grey_spectral_saliency(grey, self.grid, self.size, self.blur, validate=False)  # (B, R)
        return torch.stack([ent, spec], -1)  # (B, R, 2)


def _pbtxt(name: str, platform: str, inputs, outputs, max_batch_size: int, instances: int) -> str:
    def block(kind, tensors):
        rows = ",\n".join(f'  {{ name: "{n}" data_type: TYPE_FP32 dims: [ {", ".join(str(d) for d in dims)} ] }}'
                          for n, dims in tensors)
        return f"{kind} [\n{rows}\n]\n"

    return (f'name: "{name}"\nplatform: "{platform}"\nmax_batch_size: {max_batch_size}\n'
            + block("input", inputs) + block("output", outputs)
            + "dynamic_batching { }\n" + f"instance_group [ {{ kind: KIND_CPU count: {instances} }} ]\n")


def _check(name: str, got: np.ndarray, want: Tensor, tol: float) -> float:
    want = want.numpy()
    if got.shape != want.shape:
        raise RuntimeError(f"exported {name} returned shape {got.shape}, eager {want.shape}")
    err = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-12))
    if not err <= tol:
        raise RuntimeError(f"exported {name} differs from eager by {err:.1e} (relative to the largest value; "
                           f"tolerance {tol:g})")
    return err


def _save_torchscript(module: nn.Module, example: Tensor, path: Path):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        graph = torch.jit.trace(module.eval(), example, check_trace=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.jit.save(graph, str(path))
        return torch.jit.load(str(path))


def _save_onnx(module: nn.Module, example: Tensor, path: Path, in_name: str, out_name: str):
    import onnxruntime as ort

    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.onnx.export(module.eval(), (example,), dynamo=True, input_names=[in_name],
                                    output_names=[out_name], dynamic_shapes=({0: batch},), verbose=False)
        program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run([out_name], {in_name: x.numpy()})[0]


def export_parts(out, model, backend: str = "torchscript", *, max_batch_size: int = 8, instances: int = 1,
                 tol: float = 1e-4, sizes=None) -> list[Path]:
    """Write the traceable parts of ``model`` (an ``ARRCOCVisionModel``) into the repository ``out``
    for ``backend`` (one of PART_BACKENDS); returns the model folders written. Each exported file
    is loaded back and checked against eager (``tol``: max |diff| / max |eager|).
    sizes: the backbone crop sizes to export (default: every size the encoder uses,
    ``backbone_sizes(model)``); each must be one of those."""
    from arrcoc.modeling import ARRCOCVisionModel

    from .traced import _Features

    if not isinstance(model, ARRCOCVisionModel):
        raise TypeError(f"model must be an ARRCOCVisionModel, got {type(model).__name__}")
    if backend not in PART_BACKENDS:
        raise ValueError(f"backend must be one of {PART_BACKENDS}, got {backend!r}")
    max_batch_size = check_int(max_batch_size, "max_batch_size", minimum=1)
    instances = check_int(instances, "instances", minimum=1)
    tol = check_real(tol, "tol", low=0.0)
    if backend == "onnx":
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as e:
            raise ImportError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'arrcoc[serve]' "
                              f"(import failed: {e})") from e
    every = backbone_sizes(model)
    if sizes is None:
        sizes = every
    if not isinstance(sizes, (list, tuple)) or any(check_int(v, "sizes[i]") not in every for v in sizes):
        raise ValueError(f"sizes must be a list of the crop sizes the encoder uses, {every}, got {sizes!r}")
    out = Path(out)
    bb = model.backbone
    if type(bb).__name__ == "TracedBackbone":
        bb = bb.eager
    was_training = model.training
    model.eval()
    written = []
    try:
        for size in sizes:
            name = f"arrcoc_backbone_{size}px"
            ex = _examples(size)  # (2, 3, S, S)
            with torch.no_grad():
                want, h, w = bb._features(ex)  # (2, h*w, D)
            dims_in, dims_out = [3, size, size], [h * w, bb.feature_dim]
            if backend == "torchscript":
                graph = trace_features(bb, size, tol=tol)[0]  # checked against eager once already
                path = out / name / "1" / "model.pt"
                path.parent.mkdir(parents=True, exist_ok=True)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    torch.jit.save(graph, str(path))
                    loaded = torch.jit.load(str(path))
                with torch.no_grad():
                    _check(name, loaded(ex).numpy(), want, tol)
                text = _pbtxt(name, "pytorch_libtorch", [("INPUT__0", dims_in)], [("OUTPUT__0", dims_out)],
                              max_batch_size, instances)
            else:
                run = _save_onnx(_Features(bb), ex[:1], out / name / "1" / "model.onnx", "pixels", "tokens")
                _check(name, run(ex), want, tol)
                text = _pbtxt(name, "onnxruntime_onnx", [("pixels", dims_in)], [("tokens", dims_out)],
                              max_batch_size, instances)
            (out / name / "config.pbtxt").write_text(text)
            written.append(out / name)
        if backend == "torchscript":
            name, s, R = "arrcoc_pixel_scorers", model.config.scorer_pixels, model.config.num_regions
            scorers = PixelScorers(model.allocator)
            g = torch.Generator().manual_seed(s)
            ex = torch.rand(2, R, 3, s, s, generator=g)  # (2, R, 3, s, s)
            with torch.no_grad():
                want = scorers(ex)  # (2, R, 2)
            loaded = _save_torchscript(scorers, ex[:1], out / name / "1" / "model.pt")
            with torch.no_grad():
                _check(name, loaded(ex).numpy(), want, tol)
            (out / name / "config.pbtxt").write_text(_pbtxt(
                name, "pytorch_libtorch", [("INPUT__0", [R, 3, s, s])], [("OUTPUT__0", [R, 2])],
                max_batch_size, instances))
            written.append(out / name)
    finally:
        model.train(was_training)
    return written
