"""Triton Python-backend models of the four stages (``model.py`` of each exported model imports one).

Each class follows the Python backend's interface (``initialize(args)``, ``execute(requests)``,
``finalize()``); ``triton_python_backend_utils`` exists only inside Triton's stub, so it is
imported in ``initialize``. Every request is answered on its own (see ``pipeline``: one generator
per request keeps Thompson answers exact); one bad request gets an error response naming the
problem, the others in the same batch are answered as usual. The settings of a model come from
``arrcoc.json`` in its version folder, written by ``arrcoc.serving.export``.

The relevance model holds the ``UncertaintyCache`` (key: image content hash, question, budget,
mode, seed and the model's config); its counters are Triton metrics
(``arrcoc_cache_{hits,misses,recomputes,evictions}_total``) and each answer says what it was
(``cache_status`` output: hit / miss / recompute / off).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

__all__ = ["PreprocessModel", "RelevanceModel", "EncodeModel", "PredictiveModel", "load_settings", "build_model"]

pb_utils = None  # triton_python_backend_utils, bound in initialize (only importable inside Triton)


def load_settings(args: dict) -> dict:
    """The ``arrcoc.json`` of the model version Triton is loading (``args`` of ``initialize``)."""
    folder = Path(args["model_repository"]) / str(args["model_version"])
    return json.loads((folder / "arrcoc.json").read_text())


def build_model(settings: dict):
    """(model, processor) from an exported spec: {"checkpoint": folder} or {"config": dict}."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from arrcoc.modeling import ARRCOCImageProcessor, ARRCOCVisionConfig, ARRCOCVisionModel

    spec = settings["model"]
    if "checkpoint" in spec:
        model = ARRCOCVisionModel.from_pretrained(spec["checkpoint"]).eval()
    else:
        model = ARRCOCVisionModel(ARRCOCVisionConfig.from_dict(spec["config"])).eval()
    return model, ARRCOCImageProcessor.from_model_config(model.config)


def _bind():
    global pb_utils
    if pb_utils is None:
        import triton_python_backend_utils as _pb

        pb_utils = _pb


def _input(request, name, optional: bool = False):
    t = pb_utils.get_input_tensor_by_name(request, name)
    if t is None:
        if optional:
            return None
        raise ValueError(f"input {name!r} is missing")
    return t.as_numpy()


def _one(arr: np.ndarray, name: str):
    """The single item of a (1, 1) / (1,) input."""
    if arr.size != 1:
        raise ValueError(f"{name} must hold one value per request, got shape {tuple(arr.shape)}")
    v = arr.reshape(-1)[0]
    return v.item() if isinstance(v, np.generic) else v


def _batched(arr):
    """A stage output as a (1, ...) numpy array (max_batch_size > 0: the batch dimension first)."""
    import torch

    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(arr)[None])


def _respond(fn, requests):
    out = []
    for request in requests:
        try:
            tensors = fn(request)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in tensors.items()]))
        except (ValueError, TypeError) as e:
            out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(" ".join(str(e).split()))))
        except Exception as e:  # noqa: BLE001 - never let one request bring the model down
            out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(e).__name__}: {e}")))
    return out


class _Stage:
    needs_model = True

    def initialize(self, args):
        _bind()
        import torch

        from .pipeline import ServingConfig, ServingPipeline

        self.settings = load_settings(args)
        torch.set_num_threads(int(self.settings.get("torch_threads", 1)))
        if self.needs_model:
            model, processor = build_model(self.settings)
        else:  # the preprocessing / predictive stages need no weights: a processor-only pipeline
            model, processor = None, None
        cfg = ServingConfig(**self.settings.get("serving", {}))
        self.pipeline = ServingPipeline(model, processor, cfg) if model is not None else None
        self.serving_config = cfg

    def execute(self, requests):
        return _respond(self.answer, requests)

    def finalize(self):
        self.pipeline = None


class PreprocessModel(_Stage):
    """image (bytes), question (bytes) -> pixel_values (3, S, S), image_key (sha256 hex)."""

    needs_model = False

    def initialize(self, args):
        super().initialize(args)
        from arrcoc.modeling import ARRCOCImageProcessor

        from .pipeline import decode_image

        p = self.settings["processor"]
        self.processor = ARRCOCImageProcessor(size=p["size"], grid=p["grid"], image_mean=p["image_mean"],
                                              image_std=p["image_std"], min_size=p["min_size"])
        self._decode = decode_image

    def answer(self, request):
        raw = _one(_input(request, "image"), "image")
        q = _one(_input(request, "question"), "question")
        if not isinstance(q, (bytes, str)) or not (q.decode("utf-8", "replace") if isinstance(q, bytes) else q).strip():
            raise ValueError("question is empty; ask a question about the image")
        cfg = self.serving_config
        im = self._decode(raw, cfg.max_image_bytes, cfg.max_image_pixels)
        if min(im.size) < self.processor.min_size:
            raise ValueError(f"image is {im.size[0]}x{im.size[1]} pixels; at least {self.processor.min_size} "
                             "pixels per side are needed")
        pv = self.processor(im)["pixel_values"].float()[0]  # (3, S, S)
        key = hashlib.sha256(bytes(raw)).hexdigest().encode()
        return {"pixel_values": _batched(pv), "image_key": np.array([[key]], dtype=object)}


class RelevanceModel(_Stage):
    """pixel_values, question, budget, image_key (+ seed, deterministic) -> allocation and the
    posterior's moments, through the uncertainty-aware cache."""

    OUTPUTS = ("global_tokens", "allocation", "relevance_mean", "aleatoric_var", "epistemic_var",
               "probability", "region_boxes")

    def initialize(self, args):
        super().initialize(args)
        from .cache import CacheConfig, UncertaintyCache

        c = self.settings.get("cache")
        self.cache = None if not c else UncertaintyCache(CacheConfig(**c))
        self.fingerprint = hashlib.sha256(json.dumps(self.settings["model"], sort_keys=True).encode()).hexdigest()
        self._counted = {"hits": 0, "misses": 0, "recomputes": 0, "evictions": 0}
        self.metrics = None
        if self.cache is not None and hasattr(pb_utils, "MetricFamily"):
            self.metrics = {}
            for name in self._counted:
                fam = pb_utils.MetricFamily(name=f"arrcoc_cache_{name}_total",
                                            description=f"ARR-COC relevance cache {name}",
                                            kind=pb_utils.MetricFamily.COUNTER)
                self.metrics[name] = (fam, fam.Metric(labels={"model": args["model_name"]}))

    def _compute(self, pv, question, budget, seed, deterministic):
        from .cache import CachedAnswer

        def compute(draws):
            rel = self.pipeline.relevance(pv, question, budget, seed, deterministic, draws)
            outs = {k: rel[k].detach().cpu().numpy() for k in self.OUTPUTS}
            outs["seed"] = np.array([rel["seed"]], dtype=np.int64)
            return CachedAnswer(outs, outs["epistemic_var"].astype(np.float64), int(rel["draws"]))
        return compute

    def answer(self, request):
        import torch

        pv = torch.from_numpy(np.array(_input(request, "pixel_values"), dtype=np.float32, copy=True))  # (1, 3, S, S)
        question = self.pipeline.check_question(_one(_input(request, "question"), "question"))
        budget = self.pipeline.check_budget(_one(_input(request, "budget"), "budget"))
        seed_in = _input(request, "seed", optional=True)
        seed = None if seed_in is None else _one(seed_in, "seed")
        det_in = _input(request, "deterministic", optional=True)
        deterministic = self.pipeline.model.config.deterministic if det_in is None else bool(_one(det_in, "deterministic"))
        if pv.dim() != 4 or pv.shape[0] != 1:
            raise ValueError(f"pixel_values must be one image (1, 3, S, S), got {tuple(pv.shape)}")
        compute = self._compute(pv, question, budget, seed, deterministic)
        if self.cache is None:
            answer, status = compute(None), "off"
        else:
            key_in = _input(request, "image_key", optional=True)
            image_key = _one(key_in, "image_key") if key_in is not None else hashlib.sha256(pv.numpy().tobytes()).hexdigest()
            image_key = image_key.decode() if isinstance(image_key, bytes) else str(image_key)
            key = hashlib.sha256(json.dumps([image_key, question, budget, bool(deterministic), seed,
                                             self.fingerprint]).encode()).hexdigest()
            answer, status = self.cache.get(key, compute)
            self._export_metrics()
        outs = {k: np.ascontiguousarray(v[None]) for k, v in answer.outputs.items() if k != "seed"}
        outs["thompson_seed"] = answer.outputs["seed"].reshape(1, 1)
        outs["draws"] = np.array([[answer.draws]], dtype=np.int64)
        outs["cache_status"] = np.array([[status.encode()]], dtype=object)
        return outs

    def _export_metrics(self):
        if self.metrics is None:
            return
        s = self.cache.stats()
        for name, (_, metric) in self.metrics.items():
            now = getattr(s, name)
            if now > self._counted[name]:
                metric.increment(now - self._counted[name])
                self._counted[name] = now


class EncodeModel(_Stage):
    """pixel_values, allocation, global_tokens -> last_hidden_state (N, D), attention_mask (N,),
    token_region (N,), tokens_per_image."""

    def answer(self, request):
        import torch

        pv = torch.from_numpy(np.array(_input(request, "pixel_values"), dtype=np.float32, copy=True))
        alloc = torch.from_numpy(np.array(_input(request, "allocation"), dtype=np.int64))
        gt = torch.from_numpy(np.array(_input(request, "global_tokens"), dtype=np.float32, copy=True))
        if gt.dim() != 3 or gt.shape[0] != 1:
            raise ValueError(f"global_tokens must be (1, g, D), got {tuple(gt.shape)}")
        enc = self.pipeline.encode(pv, alloc[0], gt[0])
        return {"last_hidden_state": _batched(enc["last_hidden_state"]),
                "attention_mask": _batched(enc["attention_mask"]),
                "token_region": _batched(enc["token_region"]),
                "tokens_per_image": np.array([[int(enc["tokens_per_image"])]], dtype=np.int64)}


class PredictiveModel(_Stage):
    """relevance_mean, aleatoric_var, epistemic_var -> the predictive summary (quantiles etc.)."""

    needs_model = False

    def answer(self, request):
        import torch

        from .pipeline import relevance_quantiles

        mean = torch.from_numpy(np.array(_input(request, "relevance_mean"), dtype=np.float32))[0]
        alea = torch.from_numpy(np.array(_input(request, "aleatoric_var"), dtype=np.float32))[0]
        epi = torch.from_numpy(np.array(_input(request, "epistemic_var"), dtype=np.float32))[0]
        total = alea + epi
        q = relevance_quantiles(mean, total, self.serving_config.quantiles)
        return {"relevance_mean": _batched(mean), "aleatoric_var": _batched(alea), "epistemic_var": _batched(epi),
                "relevance_var": _batched(total), "relevance_quantiles": _batched(q),
                "quantile_levels": _batched(torch.tensor(self.serving_config.quantiles, dtype=torch.float32))}
