"""arrcoc.serving cases: bad settings, bad request values, bad paths name their argument."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from . import BAD_COUNT, BAD_INT, BAD_POSITIVE, BAD_REAL, BAD_STR, OPAQUE, Case

NOT_BYTES = st.sampled_from([None, 3, 1.5, OPAQUE, ["x"]])
NOT_PATH = st.sampled_from([None, 3, 1.5, OPAQUE])


def _pipe():
    from arrcoc.serving import ServingPipeline
    from tests.modeling.conftest import tiny_model
    from arrcoc.modeling import ARRCOCImageProcessor

    m = tiny_model()
    return ServingPipeline(m, ARRCOCImageProcessor.from_model_config(m.config))


def _answer(**kw):
    from arrcoc.serving import CachedAnswer

    args = dict(outputs={"a": np.zeros(3)}, epistemic_var=np.zeros(3), draws=1)
    args.update(kw)
    return CachedAnswer(**args)


def _traced():
    import arrcoc.serving.traced as t

    return t


def _tiny_model():
    from tests.modeling.conftest import tiny_model

    return tiny_model()


def _tiny_backbone():
    return _tiny_model().backbone


def _cfg(cls, **kw):
    import arrcoc.serving as s

    return getattr(s, cls)(**kw)


CASES = [
    Case("arrcoc.serving.CacheConfig", "max_bytes", lambda v: _cfg("CacheConfig", max_bytes=v), BAD_COUNT, finite=False),
    Case("arrcoc.serving.CacheConfig", "threshold", lambda v: _cfg("CacheConfig", threshold=v), BAD_POSITIVE, finite=False),
    Case("arrcoc.serving.CachedAnswer", "draws", lambda v: _answer(draws=v), BAD_INT, finite=False),
    Case("arrcoc.serving.CachedAnswer", "epistemic_var", lambda v: _answer(epistemic_var=v),
         st.sampled_from([np.array([np.nan]), np.array([-1.0]), np.zeros((2, 2))]), finite=False),
    Case("arrcoc.serving.UncertaintyCache", "config", lambda v: _cfg("UncertaintyCache", config=v),
         st.sampled_from([3, "x", OPAQUE]), finite=False),
    Case("arrcoc.serving.UncertaintyCache.get", "key", lambda v: _cfg("UncertaintyCache").get(v, lambda d: _answer()),
         st.sampled_from(["", 3, None, OPAQUE]), finite=False),
    Case("arrcoc.serving.cache_key", "image_bytes", lambda v: __import__("arrcoc.serving", fromlist=["x"]).cache_key(v, "q", {}),
         NOT_BYTES, finite=False),
    Case("arrcoc.serving.ServingConfig", "quantiles", lambda v: _cfg("ServingConfig", quantiles=v),
         st.sampled_from([(), (0.0,), (1.0,), (float("nan"),), "abc", None]), finite=False),
    Case("arrcoc.serving.ServingPipeline", "model", lambda v: _cfg("ServingPipeline", model=v, processor=None),
         st.sampled_from([None, 3, OPAQUE]), finite=False),
    Case("arrcoc.serving.ServingPipeline.check_budget", "budget", lambda v: _pipe().check_budget(v),
         st.one_of(BAD_INT, st.integers(max_value=19)), finite=False, examples=4),
    Case("arrcoc.serving.decode_image", "image", lambda v: __import__("arrcoc.serving", fromlist=["x"]).decode_image(v),
         st.one_of(NOT_BYTES, st.binary(max_size=40)), finite=False),
    Case("arrcoc.serving.limit_threads", "n", lambda v: __import__("arrcoc.serving", fromlist=["x"]).limit_threads(v).__enter__(),
         BAD_COUNT, finite=False),
    Case("arrcoc.serving.relevance_quantiles", "levels",
         lambda v: __import__("arrcoc.serving", fromlist=["x"]).relevance_quantiles(__import__("torch").zeros(2),
                                                                                     __import__("torch").ones(2), v),
         st.one_of(BAD_REAL.map(lambda x: [x]), st.sampled_from([[0.0], [1.0], [-0.5]])), finite=False),
    Case("arrcoc.serving.ExportConfig", "max_batch_size", lambda v: _cfg("ExportConfig", max_batch_size=v), BAD_COUNT,
         finite=False),
    Case("arrcoc.serving.export_triton", "model", lambda v: __import__("arrcoc.serving", fromlist=["x"]).export_triton("/tmp/arrcoc-never", v),
         st.sampled_from([None, 3, OPAQUE]), finite=False),
    Case("arrcoc.serving.CpuConfig", "bf16", lambda v: _cfg("CpuConfig", bf16=v), BAD_STR, finite=False),
    Case("arrcoc.serving.optimize_for_cpu", "model", lambda v: __import__("arrcoc.serving", fromlist=["x"]).optimize_for_cpu(v),
         st.sampled_from([None, 3, OPAQUE]), finite=False),
    Case("arrcoc.serving.cpu.cpu_flags", "cpuinfo", lambda v: __import__("arrcoc.serving.cpu", fromlist=["x"]).cpu_flags(v),
         st.sampled_from([3, OPAQUE, b"flags"]), finite=False),
    Case("arrcoc.serving.CpuConfig", "max_sizes", lambda v: _cfg("CpuConfig", max_sizes=v), BAD_COUNT, finite=False),
    Case("arrcoc.serving.CpuConfig", "tol", lambda v: _cfg("CpuConfig", tol=v), st.one_of(BAD_REAL, st.just(-1.0)), finite=False),
    Case("arrcoc.serving.traced.TracedBackbone", "backbone", lambda v: _traced().TracedBackbone(v),
         st.sampled_from([None, 3, OPAQUE]), finite=False),
    Case("arrcoc.serving.traced.TracedBackbone", "max_sizes", lambda v: _traced().TracedBackbone(_tiny_backbone(), max_sizes=v),
         BAD_COUNT, finite=False),
    Case("arrcoc.serving.traced.trace_features", "size", lambda v: _traced().trace_features(_tiny_backbone(), v),
         BAD_COUNT, finite=False),
    Case("arrcoc.serving.traced.trace_features", "backbone", lambda v: _traced().trace_features(v, 32),
         st.sampled_from([None, 3, OPAQUE]), finite=False),
    Case("arrcoc.serving.traced.backbone_sizes", "model", lambda v: _traced().backbone_sizes(v),
         st.sampled_from([None, 3, OPAQUE]), finite=False),
    Case("arrcoc.serving.export_parts.export_parts", "backend",
         lambda v: __import__("arrcoc.serving.export_parts", fromlist=["x"]).export_parts("/tmp/arrcoc-never", _tiny_model(), v),
         BAD_STR, finite=False),
    Case("arrcoc.serving.export_parts.export_parts", "sizes",
         lambda v: __import__("arrcoc.serving.export_parts", fromlist=["x"]).export_parts("/tmp/arrcoc-never", _tiny_model(), sizes=v),
         st.sampled_from([[20], [8.5], "8", 8, [None]]), finite=False),
    Case("arrcoc.serving.export_parts.PixelScorers", "allocator",
         lambda v: __import__("arrcoc.serving.export_parts", fromlist=["x"]).PixelScorers(v),
         st.sampled_from([None, 3, OPAQUE]), finite=False),
    Case("arrcoc.serving.export_triton", "backend", lambda v: __import__("arrcoc.serving", fromlist=["x"]).export_triton(
        "/tmp/arrcoc-never", _tiny_model(), backend=v), BAD_STR, finite=False),
    Case("arrcoc.serving.server.servable_models", "repository",
         lambda v: __import__("arrcoc.serving.server", fromlist=["x"]).servable_models(v, "/tmp"),
         NOT_PATH, finite=False),
    Case("arrcoc.serving.TritonServer", "repository", lambda v: _cfg("TritonServer", repository=v),
         st.one_of(NOT_PATH, st.just("/nonexistent/arrcoc-repo")), finite=False),
    Case("arrcoc.serving.find_tritonserver", "path", lambda v: __import__("arrcoc.serving", fromlist=["x"]).find_tritonserver(v),
         NOT_PATH.filter(lambda v: v is not None), finite=False),
]

EXEMPT = {
    "arrcoc.serving.CacheStats": "result type (counters snapshot)",
    "arrcoc.serving.CpuPlan": "result type of optimize_for_cpu",
    "arrcoc.serving.cpu.BACKENDS": "constant (backend names)",
    "arrcoc.serving.export_parts.PART_BACKENDS": "constant (backend names)",
    "arrcoc.serving.ENSEMBLE": "constant (model name)",
    "arrcoc.serving.STAGES": "constant (model names)",
    "arrcoc.serving.server.TRITON_WHEEL": "constant (requirement)",
    "arrcoc.serving.server.SIDE_REQUIREMENTS": "constant (requirements)",
    "arrcoc.serving.server.TritonInstall": "result type of ensure_tritonserver",
    "arrcoc.serving.ensure_tritonserver": "installs the side environment (path checked as in find_tritonserver)",
    "arrcoc.serving.server.free_port": "takes no arguments",
    "arrcoc.serving.server.server_environment": "takes a TritonInstall from ensure_tritonserver",
    "arrcoc.serving.server.main": "command line (argparse checks its arguments)",
    "arrcoc.serving.triton_backend.PreprocessModel": "Triton Python-backend model (runs inside tritonserver; tests/serving)",
    "arrcoc.serving.triton_backend.RelevanceModel": "Triton Python-backend model (runs inside tritonserver; tests/serving)",
    "arrcoc.serving.triton_backend.EncodeModel": "Triton Python-backend model (runs inside tritonserver; tests/serving)",
    "arrcoc.serving.triton_backend.PredictiveModel": "Triton Python-backend model (runs inside tritonserver; tests/serving)",
    "arrcoc.serving.triton_backend.load_settings": "reads Triton's initialize() args",
    "arrcoc.serving.triton_backend.build_model": "reads an exported arrcoc.json",
}

XFAIL: dict[str, str] = {}
