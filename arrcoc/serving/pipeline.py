"""The serving pipeline in four stages, the same code in-process and inside Triton's Python backend.

    preprocess   image bytes + question -> pixel_values (1, 3, S, S), image content key
    relevance    pixel_values + question + budget (+ seed, mode, draws) -> glimpse tokens, posterior
                 moments (mean, aleatoric and epistemic variance), Thompson probabilities,
                 allocation  (the scorers, the posterior, the draws and the knapsack)
    encode       pixel_values + allocation + glimpse tokens -> last_hidden_state, masks, counts
    predictive   posterior moments -> mean, variances, quantiles of the relevance marginals

Stages take one image at a time: each request gets its own generator seeded by its seed input, so
a Thompson answer equals ``model(pixel_values, queries=[q], budget=b,
generator=torch.Generator().manual_seed(seed))`` exactly (batching several images through the
backbone changes the last bits of a convolution's sums, and a batch-wide generator would couple
the requests' draws). ``relevance`` and ``encode`` are the single-round forward pass of
``ARRCOCVisionModel`` split at the allocation; ``tests/serving`` checks them against the model's
own forward, so a change there that the split misses fails the tests.

Bad input raises ``ValueError`` / ``TypeError`` naming the input (``image``, ``question``,
``budget``, ``seed``, ``draws``): the Triton models return those messages as error responses.
"""
from __future__ import annotations

import dataclasses
import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from arrcoc.bayes._validate import check_int, check_real

__all__ = ["ServingConfig", "ServingPipeline", "limit_threads", "relevance_quantiles", "decode_image"]


@dataclass(frozen=True)
class ServingConfig:
    """Settings of ``ServingPipeline`` (each default with its reason).

    quantiles: 5 %, 50 %, 95 % of each region's relevance marginal: a 90 % band and the median,
        what a client needs to act on the posterior rather than the point estimate.
    max_image_bytes: 32 MiB: a 40-megapixel JPEG is ~15 MB; larger payloads are refused before
        decoding.
    max_image_pixels: 40 megapixels, the CLI's limit (the model sees every image at 640 x 640).
    allocator_threads: 1: the allocator is many small ops; with several torch threads and another
        process busy on a core, each op waits for the descheduled thread (20-30x slower, see
        ``benchmarks/allocator.py --contention``). One thread is as fast idle and immune to it.
        None keeps torch's setting.
    """

    quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)
    max_image_bytes: int = 32 * 2 ** 20
    max_image_pixels: int = 40_000_000
    allocator_threads: int | None = 1

    def __post_init__(self):
        if not isinstance(self.quantiles, (tuple, list)) or not self.quantiles:
            raise TypeError(f"quantiles must be a non-empty tuple of probabilities, got {self.quantiles!r}")
        for q in self.quantiles:
            check_real(q, "quantiles", low=0.0, high=1.0, low_open=True, high_open=True)
        object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))
        check_int(self.max_image_bytes, "max_image_bytes", minimum=1)
        check_int(self.max_image_pixels, "max_image_pixels", minimum=1)
        if self.allocator_threads is not None:
            check_int(self.allocator_threads, "allocator_threads", minimum=1)


def limit_threads(n: int | None):
    """torch.set_num_threads(n) inside the block (the previous count restored); None: unchanged.
    The toolkit's ``torch_threads`` context manager, with the count checked by name."""
    from arrcoc.bayes.mcmc.driver import torch_threads

    return torch_threads(None if n is None else check_int(n, "n", minimum=1))


def decode_image(image_bytes, max_bytes: int = 32 * 2 ** 20, max_pixels: int = 40_000_000):
    """Encoded image bytes (PNG, JPEG, WebP, ...) -> RGB PIL image; ValueError naming ``image``."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image_bytes, np.ndarray) and image_bytes.dtype == object and image_bytes.size == 1:
        image_bytes = image_bytes.reshape(-1)[0]
    if not isinstance(image_bytes, (bytes, bytearray, memoryview)):
        raise TypeError(f"image must be the encoded image file's bytes, got {type(image_bytes).__name__}")
    data = bytes(image_bytes)
    if not data:
        raise ValueError("image is empty (0 bytes); send the encoded image file (PNG, JPEG, ...)")
    if len(data) > max_bytes:
        raise ValueError(f"image is {len(data)} bytes, above the limit of {max_bytes}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ValueError(f"image is {w}x{h} pixels, above the limit of {max_pixels}")
            im.load()
        except UnidentifiedImageError:
            raise ValueError(f"image: {len(data)} bytes that are not an image file PIL can read "
                             "(expected PNG, JPEG, WebP, ...)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, SyntaxError, EOFError) as e:
            raise ValueError(f"image is truncated or corrupt ({e})") from None
    if im.mode != "RGB":
        if "A" in im.mode or "transparency" in im.info:
            rgba = im.convert("RGBA")
            base = Image.new("RGB", rgba.size, (255, 255, 255))
            base.paste(rgba, mask=rgba.getchannel("A"))
            im = base
        else:
            im = im.convert("RGB")
    return im


def relevance_quantiles(mean: Tensor, var: Tensor, levels) -> Tensor:
    """Quantiles of independent Normal marginals N(mean, var): (..., Q) for probabilities ``levels``."""
    if not isinstance(mean, Tensor) or not isinstance(var, Tensor) or mean.shape != var.shape:
        raise ValueError("mean and var must be tensors of one shape")
    if not torch.isfinite(mean).all() or not torch.isfinite(var).all() or bool((var < 0).any()):
        raise ValueError("mean must be finite and var finite and non-negative")
    q = torch.tensor([check_real(v, "levels", low=0.0, high=1.0, low_open=True, high_open=True) for v in levels],
                     dtype=torch.float64)
    z = torch.special.ndtri(q)  # (Q,)
    out = mean.double()[..., None] + var.double().sqrt()[..., None] * z  # (..., Q)
    return out.to(mean.dtype)


class ServingPipeline:
    """The four stages over one ``ARRCOCVisionModel`` (eval mode) and its processor.

    Only the single-round forward pass is served (``config.num_rounds`` must be 1).
    """

    def __init__(self, model, processor, config: ServingConfig | None = None):
        from arrcoc.modeling import ARRCOCImageProcessor, ARRCOCVisionModel

        if not isinstance(model, ARRCOCVisionModel):
            raise TypeError(f"model must be an ARRCOCVisionModel, got {type(model).__name__}")
        if not isinstance(processor, ARRCOCImageProcessor):
            raise TypeError(f"processor must be an ARRCOCImageProcessor, got {type(processor).__name__}")
        config = ServingConfig() if config is None else config
        if not isinstance(config, ServingConfig):
            raise TypeError(f"config must be a ServingConfig, got {type(config).__name__}")
        self.model, self.processor, self.config = model.eval(), processor, config
        mc = model.config
        self.levels = tuple(int(v) for v in mc.levels)
        self.global_tokens = int(mc.global_tokens)
        self.min_budget = self.global_tokens + min(v for v in self.levels if v > 0)

    # ------------------------------------------------------------------ checks
    def check_question(self, question) -> str:
        if isinstance(question, np.ndarray) and question.dtype == object and question.size == 1:
            question = question.reshape(-1)[0]
        if isinstance(question, (bytes, bytearray)):
            try:
                question = bytes(question).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("question is not valid UTF-8 text") from None
        if not isinstance(question, str):
            raise TypeError(f"question must be a string, got {type(question).__name__}")
        q = question.strip()
        if not q:
            raise ValueError("question is empty; ask a question about the image")
        return q

    def check_budget(self, budget) -> int:
        b = check_int(budget, "budget")
        if b < self.min_budget:
            raise ValueError(f"budget {b} is below {self.min_budget} = the {self.global_tokens}-token global view + "
                             f"the smallest region level of {self.min_budget - self.global_tokens} tokens")
        return b

    # ------------------------------------------------------------------ stages
    def preprocess(self, image_bytes, question) -> dict:
        """-> {"pixel_values": (1, 3, S, S) float32, "image_key": sha256 hex of the bytes, "question"}."""
        import hashlib

        q = self.check_question(question)
        im = decode_image(image_bytes, self.config.max_image_bytes, self.config.max_image_pixels)
        if min(im.size) < self.processor.min_size:
            raise ValueError(f"image is {im.size[0]}x{im.size[1]} pixels; at least {self.processor.min_size} "
                             "pixels per side are needed")
        pv = self.processor(im)["pixel_values"].float()  # (1, 3, S, S)
        raw = bytes(image_bytes.reshape(-1)[0] if isinstance(image_bytes, np.ndarray) else image_bytes)
        return {"pixel_values": pv, "image_key": hashlib.sha256(raw).hexdigest(), "question": q}

    @torch.no_grad()
    def relevance(self, pixel_values: Tensor, question, budget, seed: int | None = None,
                  deterministic: bool = False, draws: int | None = None) -> dict:
        """One image -> {global_tokens (g, D), allocation (R,), relevance_mean, aleatoric_var,
        epistemic_var, relevance_var, probability (R,), region_boxes (R, 4), draws, seed}.
        draws: posterior draws averaged (None: the model's ``num_thompson``)."""
        from arrcoc.modeling.regions import crop_resize, grid_boxes

        m, mc = self.model, self.model.config
        if mc.num_rounds != 1:
            raise ValueError(f"only single-round models are served; the model has num_rounds={mc.num_rounds}")
        q = self.check_question(question)
        budget = self.check_budget(budget)
        if not isinstance(deterministic, (bool, np.bool_)):
            raise TypeError(f"deterministic must be a bool, got {type(deterministic).__name__}")
        deterministic = bool(deterministic)
        if seed is None:
            seed = int.from_bytes(os.urandom(7), "little")
        seed = check_int(seed, "seed", minimum=0, maximum=2 ** 63 - 1)
        allocator = m.allocator
        if draws is not None:
            draws = check_int(draws, "draws", minimum=1)
            allocator = _with_draws(allocator, draws)
        pv = m._check_pixels(pixel_values)
        if pv.shape[0] != 1:
            raise ValueError(f"pixel_values must hold one image, got shape {tuple(pv.shape)}")
        _, _, height, width = pv.shape
        device = pv.device
        gen = torch.Generator(device=device).manual_seed(seed)
        region_budget = allocator.region_budget(budget, 1, device)  # (1,)
        q_emb, q_mask = m._queries(1, [q], None, None, None, None, device)
        question_batch = m.question_batch([q], device, pv.dtype)
        pixel_bb = m._to_backbone(pv)
        boxes = grid_boxes(height, width, mc.grid, 1, device=device)  # (1, R, 4)
        global_tokens, region_features = m.glimpse(pixel_bb)  # (1, g*g, D), (1, R, D)
        concept_features = m.concept_glimpse(pixel_bb, boxes, question_batch)  # (1, R, D) or None
        rgb = m._unnormalise(pv).clamp(0, 1)
        n_reg = boxes.shape[1]
        region_pixels = crop_resize(rgb, torch.zeros(n_reg, dtype=torch.long, device=device), boxes.reshape(-1, 4),
                                    mc.scorer_pixels).reshape(1, n_reg, 3, mc.scorer_pixels, mc.scorer_pixels)
        scene_text = m.read_scene_text(rgb, boxes, question_batch, [q])  # OCR evidence, or None
        with limit_threads(self.config.allocator_threads):
            rel = allocator(region_features, region_pixels=region_pixels, query_embeds=q_emb, query_mask=q_mask,
                            budget=region_budget + mc.global_tokens, generator=gen, deterministic=deterministic,
                            question=question_batch, concept_features=concept_features, scene_text=scene_text)
            post = rel.posterior
            aleatoric, epistemic = post.aleatoric_var, post.epistemic_var  # (1, R)
        used = 0 if deterministic else (draws or allocator.config.num_thompson)
        return {"global_tokens": global_tokens[0], "allocation": rel.allocation[0], "relevance_mean": rel.relevance_mean[0],
                "aleatoric_var": aleatoric[0], "epistemic_var": epistemic[0], "relevance_var": rel.relevance_var[0],
                "probability": rel.probability[0], "region_boxes": boxes[0], "draws": used, "seed": seed}

    @torch.no_grad()
    def encode(self, pixel_values: Tensor, allocation: Tensor, global_tokens: Tensor) -> dict:
        """One image's regions at their levels -> {last_hidden_state (N, D), attention_mask (N,),
        token_region (N,), tokens_per_image}."""
        from arrcoc.modeling.regions import grid_boxes

        m, mc = self.model, self.model.config
        pv = m._check_pixels(pixel_values)
        _, _, height, width = pv.shape
        alloc = torch.as_tensor(allocation, dtype=torch.long).reshape(1, -1)  # (1, R)
        if alloc.shape[1] != mc.num_regions:
            raise ValueError(f"allocation must have {mc.num_regions} entries, got {alloc.shape[1]}")
        bad = [int(v) for v in alloc.unique().tolist() if int(v) not in self.levels]
        if bad:
            raise ValueError(f"allocation has values {bad} that are not token levels {self.levels}")
        gt = torch.as_tensor(global_tokens)
        if gt.shape != (self.global_tokens, m.hidden_size):
            raise ValueError(f"global_tokens must have shape ({self.global_tokens}, {m.hidden_size}), got {tuple(gt.shape)}")
        boxes = grid_boxes(height, width, mc.grid, 1, device=pv.device)  # (1, R, 4)
        pixel_bb = m._to_backbone(pv)
        feats = m.encode_regions(pixel_bb, boxes, alloc, torch.ones_like(alloc, dtype=torch.bool))
        hidden, attn, token_region, totals = m.assemble(gt[None].to(pv.dtype), feats, alloc, boxes, height, width)
        return {"last_hidden_state": hidden[0], "attention_mask": attn[0], "token_region": token_region[0],
                "tokens_per_image": totals[0]}

    def predictive(self, relevance_mean: Tensor, aleatoric_var: Tensor, epistemic_var: Tensor) -> dict:
        """Posterior predictive summary of the relevance logits: mean, the two variances and their
        sum, and quantiles (R, Q) of the Normal marginals at ``config.quantiles``."""
        total = aleatoric_var + epistemic_var
        return {"relevance_mean": relevance_mean, "aleatoric_var": aleatoric_var, "epistemic_var": epistemic_var,
                "relevance_var": total,
                "relevance_quantiles": relevance_quantiles(relevance_mean, total, self.config.quantiles),
                "quantile_levels": torch.tensor(self.config.quantiles, dtype=torch.float32)}

    # ------------------------------------------------------------------ all four
    def run(self, image_bytes, question, budget, seed: int | None = None, deterministic: bool = False,
            draws: int | None = None) -> dict:
        """The ensemble's answer in-process: every output the Triton ensemble returns."""
        pre = self.preprocess(image_bytes, question)
        rel = self.relevance(pre["pixel_values"], pre["question"], budget, seed, deterministic, draws)
        enc = self.encode(pre["pixel_values"], rel["allocation"], rel["global_tokens"])
        pred = self.predictive(rel["relevance_mean"], rel["aleatoric_var"], rel["epistemic_var"])
        return {**pred, "allocation": rel["allocation"], "probability": rel["probability"],
                "region_boxes": rel["region_boxes"], "seed": rel["seed"], "draws": rel["draws"], **enc}


def _with_draws(allocator, draws: int):
    """A shallow copy of the allocator whose config averages ``draws`` posterior draws (parameters
    and submodules shared; the original is untouched, so concurrent callers are unaffected)."""
    import copy

    if draws == allocator.config.num_thompson:
        return allocator
    clone = copy.copy(allocator)
    clone.config = dataclasses.replace(allocator.config, num_thompson=int(draws))
    return clone

