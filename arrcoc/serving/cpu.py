"""``optimize_for_cpu``: the fastest CPU path this machine's software and hardware allow.

Order of preference (``backend="auto"``):

1. ``ipex``: Intel Extension for PyTorch, when it is installed *and* built for this torch's
   major.minor (its wheels pin one torch; its last release, 2.8, needs torch 2.8 and the project
   is discontinued upstream, so with this project's torch it is normally absent). ``ipex.optimize``
   on the backbone, bf16 where the CPU has it.
2. ``inductor``: stock PyTorch: ``torch.compile`` (inductor, CPU C++ codegen) of the backbone's
   feature extractor only -- the allocator is many small ops that compile would only slow to
   start, and compiling the whole encoder (Python loops over regions) takes minutes on 2 cores;
   ``dynamic=True`` so the five input sizes (glimpse + four levels) and varying crop counts share
   one graph. bf16 autocast only where the CPU has AVX512-BF16 or AMX (``/proc/cpuinfo``
   flags ``avx512_bf16`` / ``amx_bf16``): elsewhere bf16 is emulated and slower. channels-last
   memory format for convolutional backbones (oneDNN's native layout; no effect on ViTs).
3. ``eager``: the model as it is (always available).

The choice and the reasons for it are logged (logger ``arrcoc.serving.cpu``) and returned as a
``CpuPlan``. The model is changed in place (its backbone's forward_features replaced by the
compiled one, its weights' memory format); ``CpuPlan.restore()`` undoes it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["CpuConfig", "CpuPlan", "optimize_for_cpu", "cpu_flags", "BACKENDS"]

BACKENDS = ("auto", "ipex", "inductor", "eager")
log = logging.getLogger("arrcoc.serving.cpu")


@dataclass(frozen=True)
class CpuConfig:
    """Settings of ``optimize_for_cpu`` (each default with its reason).

    bf16: "auto" = only with native bf16 units (AVX512-BF16 / AMX); True forces it, False never.
    channels_last: "auto" = for convolutional backbones only (oneDNN's preferred layout).
    dynamic: compile with dynamic shapes (one graph for every crop size / count; static shapes
        would recompile for each of ~20 (count, size) combinations a forward pass meets).
    """

    bf16: bool | str = "auto"
    channels_last: bool | str = "auto"
    dynamic: bool = True

    def __post_init__(self):
        for name in ("bf16", "channels_last"):
            v = getattr(self, name)
            if v not in ("auto", True, False) or (not isinstance(v, (bool, str))):
                raise ValueError(f"{name} must be 'auto', True or False, got {v!r}")
        if not isinstance(self.dynamic, bool):
            raise TypeError(f"dynamic must be a bool, got {self.dynamic!r}")


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

    if not isinstance(model, ARRCOCVisionModel):
        raise TypeError(f"model must be an ARRCOCVisionModel, got {type(model).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    config = CpuConfig() if config is None else config
    if not isinstance(config, CpuConfig):
        raise TypeError(f"config must be a CpuConfig, got {type(config).__name__}")
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
            chosen = "auto"
    if chosen == "auto" or chosen == "inductor":
        ok, why = _inductor_status()
        reasons.append(why)
        if ok:
            chosen = "inductor"
        elif backend == "inductor":
            raise ValueError(f"backend 'inductor' is unavailable: {why}")
        else:
            chosen = "eager"
            reasons.append("falling back to eager")
    if channels_last and inner is not None:
        inner.to(memory_format=torch.channels_last)
        plan._undo.append(lambda: inner.to(memory_format=torch.contiguous_format))
    target = inner if inner is not None else model.backbone
    if chosen == "ipex":
        ipex = _ipex_status()[0]
        optimized = ipex.optimize(target.eval(), dtype=torch.bfloat16 if bf16 else torch.float32, inplace=True)
        reasons.append("ipex.optimize on the backbone")
        del optimized
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
