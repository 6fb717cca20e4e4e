"""``optimize_for_cpu``: the fastest CPU path this machine's software and hardware allow.

Order of preference (``backend="auto"``):

1. ``ipex``: Intel Extension for PyTorch, when it is installed *and* built for this torch's
   major.minor (its wheels pin one torch; its last release, 2.8, needs torch 2.8 and the project
   is discontinued upstream, so with this project's torch it is normally absent). ``ipex.optimize``
   on the backbone, bf16 where the CPU has it.
2. ``torchscript``: stock PyTorch: the backbone (~90 % of an encoder forward on CPU) as frozen
   TorchScript graphs, one per crop size the encoder uses (thumbnail, glimpse, one per token
   level; ``arrcoc.serving.traced``): BatchNorm folded into the convolutions, channels-last
   weights and crops for convolutional backbones (oneDNN's native layout; no effect on ViTs).
   Tracing takes ~1 s per size, and each graph is checked against eager when it is made. fp32.
3. ``eager``: the model as it is (always available).

``inductor`` (``torch.compile`` of the backbone's feature extractor, bf16 autocast where the CPU
has AVX512-BF16 or AMX) is available by name but not chosen by ``auto``: on this project's 2-core
CPU its compile takes ~90 s per crop size with static shapes, and minutes with ``dynamic=True``,
for a backbone speed-up no larger than the frozen graphs' (``benchmarks/cpu_backends.py``). bf16
autocast is used only where the CPU has native bf16 units (``/proc/cpuinfo`` flags
``avx512_bf16`` / ``amx_bf16``; elsewhere bf16 is emulated and slower) and the backend runs it
(ipex, inductor; the frozen graphs are fp32).

The choice and the reasons for it are logged (logger ``arrcoc.serving.cpu``) and returned as a
``CpuPlan``. The model is changed in place (``model.backbone`` replaced by a ``TracedBackbone``
over the same weights, or its feature extractor by the compiled one; the weights' memory format);
``CpuPlan.restore()`` undoes it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from arrcoc._checks import check_int
from arrcoc.bayes._validate import check_real

__all__ = ["CpuConfig", "CpuPlan", "optimize_for_cpu", "cpu_flags", "BACKENDS"]

BACKENDS = ("auto", "ipex", "torchscript", "inductor", "eager")
log = logging.getLogger("arrcoc.serving.cpu")


@dataclass(frozen=True)
class CpuConfig:
    """Settings of ``optimize_for_cpu`` (each default with its reason).

    bf16: "auto" = only with native bf16 units (AVX512-BF16 / AMX); True forces it, False never.
    channels_last: "auto" = for convolutional backbones only (oneDNN's preferred layout).
    dynamic: inductor only: compile with dynamic shapes (one graph for every crop size / count;
        static shapes would recompile for each of ~20 (count, size) combinations a forward meets).
    max_sizes: torchscript only: at most 8 traced crop sizes (the encoder uses at most 6: the
        thumbnail, the glimpse and four levels); each graph holds its own folded weights.
    tol: torchscript only: 1e-4, the agreement with eager each graph must show when traced
        (relative to the largest value; fp32 kernels that fold BatchNorm reorder sums: ~1e-5 here).
    """

    bf16: bool | str = "auto"
    channels_last: bool | str = "auto"
    dynamic: bool = True
    max_sizes: int = 8
    tol: float = 1e-4

    def __post_init__(self):
        for name in ("bf16", "channels_last"):
            v = getattr(self, name)
            if v not in ("auto", True, False) or (not isinstance(v, (bool, str))):
                raise ValueError(f"{name} must be 'auto', True or False, got {v!r}")
        if not isinstance(self.dynamic, bool):
            raise TypeError(f"dynamic must be a bool, got {self.dynamic!r}")
        check_int(self.max_sizes, "max_sizes", minimum=1)
        check_real(self.tol, "tol", low=0.0)


@dataclass
class CpuPlan:
    """What ``optimize_for_cpu`` did: backend, bf16, channels_last, and the reasons."""

    backend: str
    bf16: bool
    channels_last: bool
    reasons: list[str] = field(default_factory=list)
    _undo: list = field(default_factory=list, repr=False)

    def autocast(self):
        """The context to run the model in: bf16 autocast when planned, else a no-op."""
        import contextlib

        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def restore(self) -> None:
        """Undo the in-place changes (eager model again)."""
        while self._undo:
            self._undo.pop()()

    def __str__(self) -> str:
        return (f"CPU backend {self.backend} (bf16 {'on' if self.bf16 else 'off'}, channels-last "
                f"{'on' if self.channels_last else 'off'}): " + "; ".join(self.reasons))


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """CPU feature flags from /proc/cpuinfo (or the given text); empty where unreadable."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    if not isinstance(cpuinfo, str):
        raise TypeError(f"cpuinfo must be a string, got {type(cpuinfo).__name__}")
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    return flags


def _ipex_status():
    """(module or None, reason)."""
    try:
        import intel_extension_for_pytorch as ipex  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError or its own version-mismatch error
        return None, f"IPEX not usable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else 'not installed'})"
    tv = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    iv = ".".join(getattr(ipex, "__version__", "0.0").split("+")[0].split(".")[:2])
    if tv != iv:
        return None, f"IPEX {ipex.__version__} is built for torch {iv}, this is torch {tv}"
    return ipex, f"IPEX {ipex.__version__} matches torch {tv}"


def _inductor_status():
    try:
        from torch._inductor import config as _cfg  # noqa: F401
        from torch._inductor.cpp_builder import get_cpp_compiler
        get_cpp_compiler()
    except Exception as e:  # noqa: BLE001
        return False, f"inductor CPU codegen unavailable ({type(e).__name__}: {e})"
    return True, "inductor CPU codegen available (a C++ compiler was found)"


def optimize_for_cpu(model, backend: str = "auto", config: CpuConfig | None = None,
                     cpuinfo: str | None = None) -> CpuPlan:
    """Prepare ``model`` (an ``ARRCOCVisionModel``) for CPU inference; see the module docstring.
    backend: one of BACKENDS; a named backend that is unavailable is an error (``auto`` falls back).
    cpuinfo: /proc/cpuinfo text to decide bf16 from (default: this machine's)."""
    from arrcoc.modeling import ARRCOCVisionModel

    from .traced import TracedBackbone, backbone_sizes

    if not isinstance(model, ARRCOCVisionModel):
        raise TypeError(f"model must be an ARRCOCVisionModel, got {type(model).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    config = CpuConfig() if config is None else config
    if not isinstance(config, CpuConfig):
        raise TypeError(f"config must be a CpuConfig, got {type(config).__name__}")
    if isinstance(model.backbone, TracedBackbone):
        raise ValueError("model is already optimised (its backbone is a TracedBackbone); restore() the plan first")
    flags = cpu_flags(cpuinfo)
    native_bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    bf16 = native_bf16 if config.bf16 == "auto" else bool(config.bf16)
    reasons = [f"bf16 {'on' if bf16 else 'off'}: CPU {'has' if native_bf16 else 'lacks'} AVX512-BF16/AMX"
               + ("" if config.bf16 == "auto" else " (forced by config)")]
    inner = getattr(model.backbone, "model", None)
    # a CNN backbone (timm CNNs set _vit False); ViTs' patch-embedding convolution does not count
    is_conv = inner is not None and getattr(model.backbone, "_vit", True) is False \
        and any(isinstance(m, torch.nn.Conv2d) for m in inner.modules())
    channels_last = is_conv if config.channels_last == "auto" else bool(config.channels_last)
    reasons.append(f"channels-last {'on' if channels_last else 'off'}: "
                   + ("convolutional backbone" if is_conv else "not a convolutional backbone"))
    plan = CpuPlan("eager", bf16, channels_last, reasons)
    chosen = backend
    if backend in ("auto", "ipex"):
        ipex, why = _ipex_status()
        reasons.append(why)
        if ipex is not None:
            chosen = "ipex"
        elif backend == "ipex":
            raise ValueError(f"backend 'ipex' is unavailable: {why}")
        else:
            chosen = "torchscript"
    if chosen == "inductor":
        ok, why = _inductor_status()
        reasons.append(why)
        if not ok:
            raise ValueError(f"backend 'inductor' is unavailable: {why}")
    if chosen == "torchscript" and bf16:
        plan.bf16 = bf16 = False
        reasons.append("bf16 off after all: the frozen TorchScript graphs run in fp32 (bf16 needs ipex or inductor)")
    if channels_last and inner is not None:
        inner.to(memory_format=torch.channels_last)
        plan._undo.append(lambda: inner.to(memory_format=torch.contiguous_format))
    target = inner if inner is not None else model.backbone
    if chosen == "ipex":
        ipex = _ipex_status()[0]
        optimized = ipex.optimize(target.eval(), dtype=torch.bfloat16 if bf16 else torch.float32, inplace=True)
        reasons.append("ipex.optimize on the backbone")
        del optimized
    elif chosen == "torchscript":
        eager = model.backbone
        traced = TracedBackbone(eager, backbone_sizes(model), channels_last=channels_last,
                                max_sizes=config.max_sizes, tol=config.tol)
        if not traced.graphs and backend == "torchscript":
            plan.restore()
            raise ValueError(f"backend 'torchscript' is unavailable: no crop size traced ({traced.notes})")
        if traced.graphs:
            model.backbone = traced
            plan._undo.append(lambda: setattr(model, "backbone", eager))
            reasons.append("frozen TorchScript backbone at " + ", ".join(
                f"{s} px: {n}" for s, n in sorted(traced.notes.items())))
        else:
            chosen = "eager"
            reasons.append(f"no crop size traced ({traced.notes}); falling back to eager")
    elif chosen == "inductor":
        fn = target.forward_features if hasattr(target, "forward_features") else target.forward
        name = "forward_features" if hasattr(target, "forward_features") else "forward"
        compiled = torch.compile(fn, backend="inductor", dynamic=config.dynamic)
        setattr(target, name, compiled)
        plan._undo.append(lambda: delattr(target, name))
        reasons.append(f"torch.compile(inductor, dynamic={config.dynamic}) of the backbone's {name} only")
    plan.backend = chosen
    log.info("%s", plan)
    return plan
