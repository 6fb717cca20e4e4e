"""lmms-eval model plugin: ``lmms-eval --model arrcoc --model_args pretrained=<VLM>,budget=...,policy=...``.

Registered the way lmms-eval 0.7 registers external models: the entry-point group
``lmms_eval.models`` (setup.cfg) points at :func:`manifest`, a ``ModelManifest`` whose class path is
``arrcoc.adapters.lmms_eval_plugin.ARRCOCLMM``. The class is built on first access (module
``__getattr__``), so importing this module never needs lmms-eval; install it with
``pip install -e ".[lmms]"``.

Model arguments (``--model_args key=value,...``):
    pretrained   local folder or hub id of a supported VLM (``arrcoc.adapters.SUPPORTED_VLMS``);
                 loaded with ``AutoModelForImageTextToText`` and its own ``AutoProcessor``
    policy       "thompson" (default: a Thompson draw per image, seeded), "mean" (posterior mean,
                 deterministic) or "full" (the unmodified VLM: its own processor and generate, for
                 the same-run baseline)
    budget       total visual tokens per image (an int), or a fraction ("0.25") of the tokens the
                 unmodified VLM spends on an image at the encoder's ``image_size`` (its own processor
                 counts them once at start-up)
    seed         seed of the Thompson draws (default 0; request i uses seed + i)
    device, dtype  "cpu" / "cuda"...; "float32" / "bfloat16" / "float16"
    max_new_tokens  default generation length when a task gives none (32)
    any other key  an ``ARRCOCVisionConfig`` field for ``from_vlm`` (grid=4, ...): ints / floats
"""
from __future__ import annotations

import functools
from typing import Any

import torch

__all__ = ["manifest", "build_adapter", "parse_budget", "main"]

POLICIES = ("thompson", "mean", "full")


def manifest():
    """The ``lmms_eval.models`` entry point's payload: model id "arrcoc"."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="arrcoc", simple_class_path="arrcoc.adapters.lmms_eval_plugin.ARRCOCLMM")


def parse_budget(budget, full_tokens: int) -> int | None:
    """``budget`` as lmms-eval passes it (str, int or float): tokens, or a fraction of ``full_tokens``."""
    if budget is None or budget == "":
        return None
    if isinstance(budget, str):
        try:
            budget = float(budget)
        except ValueError:
            raise ValueError(f"budget must be a token count or a fraction of full detail, got {budget!r}") from None
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0 or budget != budget:
        raise ValueError(f"budget must be a positive token count or a fraction in (0, 1], got {budget!r}")
    if budget <= 1 and not (isinstance(budget, int) and budget == 1):
        return max(1, int(round(float(budget) * full_tokens)))
    if not float(budget).is_integer():
        raise ValueError(f"budget above 1 must be a whole number of tokens, got {budget!r}")
    return int(budget)


def _value(v: str):
    """A model_args value: int, float, bool or the string itself."""
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
    return v


def build_adapter(pretrained: str, device: str = "cpu", dtype: str = "float32", **config):
    """Load the VLM and its processor from ``pretrained`` and wrap them with ``arrcoc.adapters.from_vlm``.
    Returns (adapter, vlm, processor)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from .factory import from_vlm

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in dtypes:
        raise ValueError(f"dtype must be one of {sorted(dtypes)}, got {dtype!r}")
    vlm = AutoModelForImageTextToText.from_pretrained(pretrained, dtype=dtypes[dtype]).to(device).eval()
    processor = AutoProcessor.from_pretrained(pretrained)
    return from_vlm(vlm, processor, **config), vlm, processor


def _cut(text: str, until) -> str:
    for stop in until or ():
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text


@functools.lru_cache(maxsize=1)
def _build_class():
    from lmms_eval.api.model import lmms

    class ARRCOCLMM(lmms):
        """lmms-eval model: the wrapped VLM with ARR-COC allocating its visual tokens per question."""

        is_simple = True

        def __init__(self, pretrained: str, policy: str = "thompson", budget=None, seed: int = 0,
                     device: str = "cpu", dtype: str = "float32", max_new_tokens: int = 32,
                     batch_size: int = 1, **kwargs: Any):
            super().__init__()
            if policy not in POLICIES:
                raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
            config = {k: _value(v) for k, v in kwargs.items()}
            self.policy, self.seed = policy, int(seed)
            self.max_new_tokens = int(max_new_tokens)
            self.adapter, self.vlm, self.processor = build_adapter(pretrained, device=device, dtype=dtype, **config)
            self.full_tokens = self._own_tokens(self.adapter.encoder.config.image_size)
            self.budget = parse_budget(budget, self.full_tokens)
            self.visual_tokens: list[int] = []  # tokens the LLM received per request (read by tests / logs)
            self._calls = 0

        def _own_inputs(self, image, question: str):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return self.processor(text=[text], images=[image], return_tensors="pt").to(self.vlm.device)

        def _own_tokens(self, side: int) -> int:
            """Visual tokens the unmodified VLM gives a side x side image (its own processor)."""
            from PIL import Image

            inputs = self._own_inputs(Image.new("RGB", (side, side)), "?")
            return int((inputs["input_ids"] == self.vlm.config.image_token_id).sum())

        @property
        def tokenizer(self):
            return self.processor.tokenizer

        def _image(self, doc_to_visual, doc_id, task, split):
            visuals = doc_to_visual(self.task_dict[task][split][doc_id])
            visuals = [v for v in (visuals if isinstance(visuals, (list, tuple)) else [visuals]) if v is not None]
            if len(visuals) != 1:
                raise ValueError(f"the arrcoc model takes exactly one image per request, got {len(visuals)} "
                                 f"(task {task!r}, doc {doc_id})")
            return visuals[0].convert("RGB")

        def _mode(self):
            self._calls += 1
            if self.policy == "mean":
                return None, True
            return torch.Generator().manual_seed(self.seed + self._calls), False

        def _full_generate(self, image, question: str, max_new: int) -> str:
            inputs = self._own_inputs(image, question)
            self.visual_tokens.append(int((inputs["input_ids"] == self.vlm.config.image_token_id).sum()))
            with torch.no_grad():
                seq = self.vlm.generate(**inputs, max_new_tokens=max_new, do_sample=False)
            return self.tokenizer.decode(seq[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

        def generate_until(self, requests) -> list[str]:
            out = []
            for req in requests:
                context, gen_kwargs, doc_to_visual, doc_id, task, split = req.args
                gen_kwargs = dict(gen_kwargs or {})
                until = gen_kwargs.pop("until", None)
                until = [until] if isinstance(until, str) else until
                max_new = int(gen_kwargs.pop("max_new_tokens", self.max_new_tokens))
                image = self._image(doc_to_visual, doc_id, task, split)
                if self.policy == "full":
                    text = self._full_generate(image, context, max_new)
                else:
                    generator, det = self._mode()
                    res = self.adapter.generate(self.adapter.pixel_values([image]), self.adapter.chat_prompts([context]),
                                                queries=[context], budget=self.budget, generator=generator,
                                                deterministic=det, max_new_tokens=max_new, do_sample=False)
                    self.visual_tokens.append(int(res.image_token_counts[0]))
                    text = self.tokenizer.decode(res.new_tokens[0], skip_special_tokens=True)
                out.append(_cut(text, until))
            return out

        def loglikelihood(self, requests) -> list[tuple[float, bool]]:
            if self.policy == "full":
                raise NotImplementedError("policy=full scores through the VLM's own lmms-eval model (e.g. llava_hf); "
                                          "use policy=mean or thompson here")
            out = []
            for req in requests:
                context, doc_to_target, doc_to_visual, doc_id, task, split = req.args
                target = doc_to_target if isinstance(doc_to_target, str) else \
                    doc_to_target(self.task_dict[task][split][doc_id])
                image = self._image(doc_to_visual, doc_id, task, split)
                answer = list(self.tokenizer(target, add_special_tokens=False)["input_ids"])
                generator, det = self._mode()
                logp, greedy = self.adapter.score(self.adapter.pixel_values([image]), self.adapter.chat_prompts([context]),
                                                  [answer], queries=[context], budget=self.budget,
                                                  generator=generator, deterministic=det, return_greedy=True)
                out.append((float(logp[0]), bool(greedy[0])))
            return out

        def generate_until_multi_round(self, requests) -> list[str]:
            raise NotImplementedError("the arrcoc model answers single-round requests (generate_until, loglikelihood)")

    ARRCOCLMM.__module__ = __name__
    return ARRCOCLMM


def __getattr__(name):
    if name == "ARRCOCLMM":  # needs lmms-eval: built on first access
        return _build_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv=None):
    """lmms-eval's own command line (``lmms_eval.cli.dispatch.main``) after ARR-COC's torchvision fix.

    ``lmms-eval --model arrcoc ...`` works as is wherever torchvision's compiled ops load (any
    matching torch / torchvision install). Where they cannot (a CPU torch next to PyPI's CUDA-only
    torchvision, as on this project's CI), ``python -m arrcoc.adapters.lmms_eval_plugin ...`` takes
    the same arguments."""
    import sys

    import arrcoc.backbones  # noqa: F401  (the torchvision fix, before lmms-eval imports torchvision)
    from lmms_eval.cli.dispatch import main as lmms_main

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    return lmms_main()


if __name__ == "__main__":
    main()
