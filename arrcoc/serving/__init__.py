"""arrcoc.serving: Triton export, a real tritonserver, an uncertainty-aware cache, the CPU fast path.

    pipeline        the four serving stages (preprocess, relevance, encode, predictive), in-process
                    and inside Triton, equal to the model's own forward pass
    export          ``export_triton``: a Triton model repository (Python backend + ensemble)
    triton_backend  the Python-backend model classes the exported ``model.py`` files import
    server          the tritonserver binary of PyPI's nvidia-pytriton, kept out of this
                    environment, and a launcher on 127.0.0.1
    cache           ``UncertaintyCache``: LRU by bytes, thread-safe, recompute when uncertain
    cpu             ``optimize_for_cpu``: IPEX, else frozen TorchScript backbone graphs (channels-last
                    for CNNs), else eager; inductor / bf16 by name
    traced          ``TracedBackbone``: one frozen TorchScript graph per crop size, checked vs eager

Importing this package loads neither tritonclient nor the Triton stub's modules.
"""
from .cache import CacheConfig, CachedAnswer, CacheStats, UncertaintyCache, cache_key
from .cpu import CpuConfig, CpuPlan, optimize_for_cpu
from .export import ENSEMBLE, STAGES, ExportConfig, export_triton
from .pipeline import ServingConfig, ServingPipeline, decode_image, limit_threads, relevance_quantiles
from .server import TritonServer, ensure_tritonserver, find_tritonserver

__all__ = [
    "ServingConfig", "ServingPipeline", "decode_image", "limit_threads", "relevance_quantiles",
    "ExportConfig", "export_triton", "ENSEMBLE", "STAGES",
    "CacheConfig", "CachedAnswer", "CacheStats", "UncertaintyCache", "cache_key",
    "CpuConfig", "CpuPlan", "optimize_for_cpu",
    "TritonServer", "ensure_tritonserver", "find_tritonserver",
]
