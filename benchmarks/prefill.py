"""End-to-end cost of answering about one image: the unmodified VLM at full detail against ARR-COC's
training-free own-tower adapter (``arrcoc.adapters.from_vlm``) at 25 %, 50 % and 100 % of that
detail, measured in the same run.

End to end = preprocessing + vision (the VLM's OWN tower for both; for ARR-COC also the glimpse, the
scorers, the allocation and one tower call per level) + the LLM prefill (``use_cache=True``, logits of
the last position only), i.e. everything up to the first answer token.

  full     the VLM's own processor (``processor(text, images)``) + ``vlm(**inputs)``: an 896-px image
           is 32 x 32 = 1024 LLM tokens for Qwen2-VL-2B
  arr-coc  ARR-COC's image processor + ``adapter.prepare`` (question-aware allocation of a budget of
           25 / 50 / 100 % of the full arm's image tokens) + ``vlm(**inputs)``

Model: ``Qwen2VLForConditionalGeneration`` at Qwen2-VL-2B's real widths (vision embed 1280, 16 heads,
MLP 5120, patch 14, merge 2; text hidden 1536, 12 heads, 2 KV heads, MLP 8960) with random weights
(compute is compute). Depth is the real one (32 vision / 28 text blocks) divided by ``--depth-div``
(default 1 on CUDA, 8 on CPU: 4 / 4 blocks), which keeps the vision : text proportion. The vocabulary
is cut to 8192 (the embedding lookup and a one-position LM head cost nothing either way). The text
side is a byte-level BPE tokenizer built offline (tests/adapters/tiny_qwen.py) in Qwen's chat format.

Columns: image tokens given to the LLM; end-to-end median seconds and its ratio to the full arm;
vision (preprocessing + tower + for ARR-COC the allocation) and LLM prefill medians; "alloc": ARR-COC's
allocation alone (glimpse pass + scorers + posterior, timed as the encoder forward with an all-zero
forced allocation, i.e. no region encoded); peak memory above the pre-arm baseline (CUDA:
``max_memory_allocated``; CPU: the process's resident high-water mark, reset before each arm through
/proc/self/clear_refs after ``malloc_trim`` -- tracemalloc cannot see torch's allocator); KV-cache
bytes of the prefill. Arms run interleaved, ``--repeats`` times each after one warm-up.

``--model llava``: ``LlavaForConditionalGeneration`` at LLaVA-1.5-7B's widths (CLIP ViT-L/14-336: 1024
wide, 16 heads, MLP 4096, 24 blocks, feature layer -2, 576 tokens per 336-px image; Vicuna-7B: 4096
wide, 32 heads, MLP 11008, 32 blocks), random weights, the same depth division; the full arm is the
VLM's own processor (336 px, 576 tokens), ARR-COC gets the 672-px image (2 x 2 cells, each up to the
tower's native 336 px) and 25 / 50 / 100 % of those 576 tokens.

An arm family is a function taking a VLM and its processor (``vlm_rows``); ``qwen2vl_2b`` and
``llava15_7b`` build them. Usage: python benchmarks/prefill.py [--model qwen2vl|llava] [--quick]
[--depth-div N] [--repeats 3] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import arrcoc.backbones  # noqa: E402,F401  (the torchvision fix before transformers loads)

__all__ = ["main", "qwen2vl_2b", "llava15_7b", "vlm_rows"]

QUESTION = "What does the sign say?"
FRACTIONS = (0.25, 0.5, 1.0)


def qwen2vl_2b(device, dtype, depth_div: int = 1, quick: bool = False):
    """A Qwen2-VL-2B-shaped ``Qwen2VLForConditionalGeneration`` (random weights) and its processor."""
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    from tests.adapters.tiny_qwen import CHAT_TEMPLATE, tiny_tokenizer

    tok = tiny_tokenizer()
    ids = {n: tok.convert_tokens_to_ids(n) for n in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                     "<|vision_end|>", "<|endoftext|>", "<|im_end|>")}
    if quick:  # the code path only: tiny widths, one block each
        vision = dict(depth=1, embed_dim=64, num_heads=2, mlp_ratio=2, hidden_size=64)
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                    num_key_value_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                            "mrope_section": [2, 3, 3]})
    else:
        vision = dict(depth=max(1, round(32 / depth_div)), embed_dim=1280, num_heads=16, mlp_ratio=4,
                      hidden_size=1536)
        text = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=max(1, round(28 / depth_div)),
                    num_attention_heads=12, num_key_value_heads=2,
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
    cfg = Qwen2VLConfig(
        text_config=dict(text, vocab_size=8192, max_position_embeddings=32768, pad_token_id=ids["<|endoftext|>"],
                         eos_token_id=ids["<|im_end|>"], bos_token_id=None),
        vision_config=dict(vision, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vlm = Qwen2VLForConditionalGeneration(cfg)
    vlm = vlm.to(device=device, dtype=dtype).eval()
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tok,
                                 video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    return vlm, processor


def llava15_7b(device, dtype, depth_div: int = 1, quick: bool = False):
    """A LLaVA-1.5-7B-shaped ``LlavaForConditionalGeneration`` (random weights) and its processor:
    CLIP ViT-L/14-336 widths (1024 wide, 16 heads, MLP 4096, 336 px / 14 px patches: 576 tokens,
    feature layer -2 of 24) and Vicuna-7B's (4096 wide, 32 heads, MLP 11008, 32 blocks), depth / depth_div."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    from tests.adapters.tiny_llava import LLAVA_TEMPLATE, tokenizer

    tok = tokenizer("llava")
    if quick:  # the code path only: tiny widths, one block each
        vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4)
    else:
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=max(2, round(24 / depth_div)),
                      num_attention_heads=16)
        text = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=max(1, round(32 / depth_div)),
                    num_attention_heads=32)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision, image_size=336, patch_size=14, projection_dim=768),
        text_config=LlamaConfig(**text, vocab_size=8192, max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
        image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
        vision_feature_select_strategy="default")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vlm = LlavaForConditionalGeneration(cfg)
    vlm = vlm.to(device=device, dtype=dtype).eval()
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    image_proc = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                    image_mean=list(mean), image_std=list(std))
    processor = LlavaProcessor(image_processor=image_proc, tokenizer=tok, patch_size=14,
                               vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                               num_additional_image_tokens=1)
    return vlm, processor

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Peak:
    """Peak memory of a block above its start (CUDA: allocated bytes; CPU: resident high-water mark)."""

    def __init__(self, device):
        self.device, self.bytes = device, 0

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        return 0

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            try:
                ctypes.CDLL("libc.so.6").malloc_trim(0)
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM to the current resident size
            except OSError:
                pass
            self.start = self._status("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self.start
        else:
            self.bytes = self._status("VmHWM") - self.start


def _cache_bytes(cache) -> int:
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def vlm_rows(vlm, processor, image, question: str = QUESTION, repeats: int = 3, fractions=FRACTIONS,
             clock=time.perf_counter, **adapter_config) -> list[dict]:
    """The full arm and one ARR-COC arm per budget fraction for one VLM (any class ``from_vlm`` takes):
    a list of rows (name, tokens, e2e, vision, llm, alloc, peak, kv). ``clock``: wall time by default;
    ``time.process_time`` counts this process's CPU seconds (with one thread: the uncontended wall time
    on a shared machine)."""
    from arrcoc.adapters import from_vlm
    from arrcoc.modeling import ARRCOCImageProcessor

    device = vlm.device
    adapter = from_vlm(vlm, processor, **adapter_config)
    arr_proc = ARRCOCImageProcessor.from_model_config(adapter.encoder.config)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
        add_generation_prompt=True, tokenize=False)
    prompt = adapter.chat_prompts([question])
    image_id = adapter.image_token_id

    def full_stage():
        inputs = processor(text=[text], images=[image], return_tensors="pt").to(device)
        with torch.no_grad():
            if "image_grid_thw" in inputs:  # Qwen-VL
                feats = vlm.model.get_image_features(inputs.pop("pixel_values"), inputs["image_grid_thw"])
            else:  # LLaVA: tower, feature selection, projector
                feats = vlm.model.get_image_features(pixel_values=inputs.pop("pixel_values"))
        inputs["mm_encoder_outputs"] = {"image": feats}
        return dict(inputs)

    def arrcoc_stage(budget):
        def stage():
            px = arr_proc(image)["pixel_values"].to(device)
            inputs, _, _ = adapter.prepare(px, prompt, queries=[question], budget=budget, deterministic=True)
            return inputs
        return stage

    def alloc_once():
        px = arr_proc(image)["pixel_values"].to(device)
        zeros = torch.zeros(1, adapter.encoder.config.num_regions, dtype=torch.long, device=device)
        _sync(device)
        t = clock()
        with torch.no_grad():
            adapter.encoder(px, queries=[question], deterministic=True, allocation=zeros)
        _sync(device)
        return clock() - t

    def run(stage):
        _sync(device)
        t0 = clock()
        inputs = stage()
        _sync(device)
        t1 = clock()
        with torch.no_grad():
            out = vlm(**inputs, use_cache=True, logits_to_keep=1)
        _sync(device)
        t2 = clock()
        tokens = int((inputs["input_ids"] == image_id).sum())
        return (t2 - t0, t1 - t0, t2 - t1), tokens, _cache_bytes(out.cache)

    full_tokens = run(full_stage)[1]  # warm-up; the image's full-detail token count
    arms = [("full (VLM's own)", full_stage, False)]
    arms += [(f"arr-coc {int(f * 100)}%", arrcoc_stage(max(1, round(f * full_tokens))), True) for f in fractions]
    for _, stage, _ in arms[1:]:
        run(stage)  # warm-up
    times = {name: [] for name, _, _ in arms}
    allocs = []
    meta = {}
    for _ in range(repeats):
        for name, stage, _ in arms:
            t, tokens, kv = run(stage)
            times[name].append(t)
            meta[name] = (tokens, kv)
        allocs.append(alloc_once())
    rows = []
    for name, stage, is_arrcoc in arms:
        with _Peak(device) as peak:
            run(stage)
        med = [statistics.median(t[i] for t in times[name]) for i in range(3)]
        tokens, kv = meta[name]
        rows.append(dict(name=name, tokens=tokens, e2e=med[0], vision=med[1], llm=med[2],
                         alloc=statistics.median(allocs) if is_arrcoc else None, peak=peak.bytes, kv=kv))
    return rows


def print_rows(title: str, rows: list[dict]) -> None:
    base = rows[0]
    print(title)
    print(f"{'arm':<18}{'img tok':>8}{'e2e s':>9}{'vs full':>9}{'vision s':>10}{'LLM s':>8}{'alloc s':>9}"
          f"{'peak MB':>9}{'vs full':>9}{'KV MB':>8}")
    for r in rows:
        alloc = "" if r["alloc"] is None else f"{r['alloc']:.3f}"
        print(f"{r['name']:<18}{r['tokens']:>8}{r['e2e']:>9.3f}{r['e2e'] / base['e2e']:>9.3f}{r['vision']:>10.3f}"
              f"{r['llm']:>8.3f}{alloc:>9}{r['peak'] / 2**20:>9.1f}{r['peak'] / max(base['peak'], 1):>9.3f}"
              f"{r['kv'] / 2**20:>8.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--depth-div", type=int, default=None, help="real depth / this (default 1 on CUDA, 8 on CPU)")
    p.add_argument("--image-px", type=int, default=None,
                   help="side of the square image (default 896 for qwen2vl: 1024 tokens; 672 for llava)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--clock", choices=("wall", "process"), default="wall",
                   help="wall time, or this process's CPU time (use with --threads 1 on a shared machine)")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny widths, a 224-px image, one repeat")
    p.add_argument("--model", choices=("qwen2vl", "llava"), default="qwen2vl",
                   help="qwen2vl: Qwen2-VL-2B-shaped; llava: LLaVA-1.5-7B-shaped (CLIP ViT-L/14-336 + Vicuna-7B widths)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    depth_div = args.depth_div or (1 if device.type == "cuda" else 8)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    default_px = 896 if args.model == "qwen2vl" else 672  # LLaVA: 2 x 2 cells at the tower's native 336 px
    side = 224 if args.quick else (args.image_px or default_px)
    repeats = 1 if args.quick else args.repeats
    from PIL import Image

    image = Image.open(Path(__file__).resolve().parents[1] / "arrcoc" / "assets" / "sample_scene.png")
    image = image.convert("RGB").resize((side, side), Image.BICUBIC)
    build = qwen2vl_2b if args.model == "qwen2vl" else llava15_7b
    vlm, processor = build(device, dtype, depth_div, quick=args.quick)
    config = dict(image_size=side, grid=2, global_tokens=4, levels=(0, 4, 16)) if args.quick else {}
    clock = time.process_time if args.clock == "process" else time.perf_counter
    rows = vlm_rows(vlm, processor, image, repeats=repeats, clock=clock, **config)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    if args.model == "llava":
        name = "LLaVA-1.5"
        shape = "quick (tiny widths)" if args.quick else \
            f"LLaVA-1.5-7B widths, {vlm.config.vision_config.num_hidden_layers}/24 vision + " \
            f"{vlm.config.text_config.num_hidden_layers}/32 text blocks"
    else:
        name = "Qwen2-VL"
        shape = "quick (tiny widths)" if args.quick else \
            f"Qwen2-VL-2B widths, {vlm.config.vision_config.depth}/32 vision + {vlm.config.text_config.num_hidden_layers}/28 text blocks"
    print_rows(f"{name} end to end, {shape}, {dtype}, {where}; {side}-px image; median of {repeats}, {args.clock} clock", rows)
    return rows


if __name__ == "__main__":
    main()
