"""Scene-text reading (OCR) with weights that ship offline: PP-OCRv4 through ``rapidocr-onnxruntime``.

The package ``rapidocr-onnxruntime`` carries PaddleOCR's PP-OCRv4 text detector (DB, 4.7 MB), its
direction classifier and its recogniser (CRNN with CTC, Chinese + Latin alphabet, 10.9 MB) as ONNX
files inside the wheel, run by onnxruntime on the CPU: no hub access. ``SceneTextReader`` turns an
RGB image into text lines: an axis-aligned box in the image's pixels, the string read and the
recogniser's confidence. The relevance code (``arrcoc.relevance.scene_text``) turns those lines into
per-region evidence.

Where it fails: handwriting and stylised lettering are read poorly or not at all, text smaller than
~8 px high is missed (the detector sees the image at 736 px on its short side at most), and curved
or vertical text comes back as fragments. A miss only removes evidence; nothing is overridden.
"""
from __future__ import annotations

import hashlib
import importlib.util
from collections import OrderedDict
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["TextLine", "SceneTextReader", "OCR_PACKAGE", "scene_text_available", "require_scene_text"]

OCR_PACKAGE = "rapidocr-onnxruntime"


class TextLine(NamedTuple):
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) image pixels, exclusive ends
    text: str                               # the string read
    confidence: float                       # recogniser confidence in [0, 1]


def scene_text_available() -> bool:
    """Whether the OCR package (and so its weights) is installed."""
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


def require_scene_text() -> None:
    """Raise ``PretrainedPackageMissing`` with the install line unless the OCR package is installed."""
    if not scene_text_available():
        from .pretrained import PretrainedPackageMissing

        raise PretrainedPackageMissing(
            f"scene-text reading needs the PyPI package {OCR_PACKAGE!r} (it ships the OCR weights "
            f"offline); install it with: pip install {OCR_PACKAGE}")


class SceneTextReader:
    """Read the text lines of RGB images. The engine is built on first use (about 0.3 s).

    threads: onnxruntime intra-op threads (1: the reader runs beside the backbone on a busy CPU and
        one thread is the fastest per image there; 0.4-0.6 s for a 640 x 640 image).
    min_confidence: lines the recogniser is less sure of are dropped (0.5, rapidocr's own default:
        below it most strings are misreads of texture).
    cache_size: the lines of this many recent images are kept, keyed by a hash of their pixels
        (8: several questions about the same image, as in the demo or an evaluation, read it once).
    """

    def __init__(self, threads: int = 1, min_confidence: float = 0.5, cache_size: int = 8):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float)) \
                or not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"min_confidence must be a number in [0, 1], got {min_confidence!r}")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be a non-negative int, got {cache_size!r}")
        self.threads = threads
        self.min_confidence = float(min_confidence)
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, list[TextLine]] = OrderedDict()
        self._engine = None

    def _get_engine(self):
        if self._engine is None:
            require_scene_text()
            import logging

            from rapidocr_onnxruntime import RapidOCR

            kw = {f"{stage}_{k}": self.threads for stage in ("det", "cls", "rec")
                  for k in ("intra_op_num_threads", "inter_op_num_threads")}
            self._engine = RapidOCR(**kw)
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        return self._engine

    def read(self, image) -> list[TextLine]:
        """image: (H, W, 3) uint8 RGB array, a PIL image or a (3, H, W) float tensor in [0, 1] ->
        its text lines, top to bottom as the detector orders them."""
        arr = _as_uint8_rgb(image)
        key = hashlib.blake2b(arr.tobytes(), digest_size=16, person=str(arr.shape).encode()[:16]).digest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return list(self._cache[key])
        lines = self._read(arr)
        if self.cache_size:
            self._cache[key] = lines
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return list(lines)

    def _read(self, arr: np.ndarray) -> list[TextLine]:
        result, _ = self._get_engine()(arr[:, :, ::-1].copy())  # rapidocr takes OpenCV's BGR order
        lines = []
        for quad, text, conf in result or []:
            conf = float(conf)
            text = str(text).strip()
            if conf < self.min_confidence or not text:
                continue
            q = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
            x0, y0 = q.min(0)
            x1, y1 = q.max(0)
            h, w = arr.shape[:2]
            box = (float(max(x0, 0)), float(max(y0, 0)), float(min(x1, w)), float(min(y1, h)))
            if box[2] > box[0] and box[3] > box[1]:
                lines.append(TextLine(box, text, conf))
        return lines

    def read_batch(self, images: Tensor | Sequence) -> list[list[TextLine]]:
        """(B, 3, H, W) float tensor in [0, 1] (or a list of images) -> the lines of each image."""
        if isinstance(images, Tensor):
            if images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
            images = list(images)
        return [self.read(im) for im in images]


def _as_uint8_rgb(image) -> np.ndarray:
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise ValueError(f"a tensor image must be (3, H, W) float in [0, 1], got {tuple(image.shape)} "
                             f"{image.dtype}")
        image = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    elif hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("image must be an (H, W, 3) uint8 RGB array, a PIL image or a (3, H, W) float tensor, "
                         f"got {type(image).__name__} {getattr(image, 'shape', '')}")
    if min(image.shape[:2]) < 2:
        raise ValueError(f"image must be at least 2 x 2 pixels, got {image.shape[:2]}")
    return np.ascontiguousarray(image)
