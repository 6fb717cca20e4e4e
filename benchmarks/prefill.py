"""Prefill wall time of a Qwen2-VL-shaped LM: full-resolution image tokens vs ARR-COC budgets.

The LM is ``Qwen2VLForConditionalGeneration`` at Qwen2-VL-2B's text width (hidden 1536, 12 heads,
2 KV heads, MLP 8960; 28 layers on CUDA, fewer on CPU by default -- width is kept, depth only scales
time linearly) with random weights: compute is compute. Both arms go through the same seam
(``mm_encoder_outputs`` + ``image_grid_thw``, M-RoPE):

  full     one image of a native Qwen2-VL grid: (side/28)^2 merged tokens (896 px -> 1024 tokens)
  arr-coc  the ARR-COC adapter's real inputs: global view + allocated regions, each its own grid,
           at budgets of 25% and 50% of the full count (allocation by a tiny random ARR-COC
           encoder; its cost is reported separately, the ratio is for the LM prefill alone)

Prints median prefill times and the ratios arr-coc / full, measured in the same run.
Usage: python benchmarks/prefill.py [--layers N] [--image-px 896] [--repeats 3] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from arrcoc.adapters import Qwen2VLARRCOCAdapter
from arrcoc.modeling import ARRCOCVisionConfig, ARRCOCVisionModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

__all__ = ["main"]


def qwen2vl_lm(layers: int, device, dtype):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=8192, hidden_size=1536, intermediate_size=8960, num_hidden_layers=layers,
                         num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
                         pad_token_id=0, eos_token_id=None, bos_token_id=1),
        vision_config=dict(depth=1, embed_dim=64, hidden_size=1536, num_heads=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=8000, video_token_id=8003, vision_start_token_id=8001, vision_end_token_id=8002)
    return Qwen2VLForConditionalGeneration(cfg).to(device=device, dtype=dtype).eval()


def tiny_encoder(device):
    from transformers import CLIPVisionConfig

    clip = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                            image_size=224, patch_size=14)
    cfg = ARRCOCVisionConfig(backbone={"type": "hf", "config": clip.to_dict()},
                             query_encoder={"type": "bytes", "dim": 64}, image_size=896, budget=1024,
                             relevance={"num_heads": 4, "head_dim": 16})
    return ARRCOCVisionModel(cfg).to(device).eval()


def time_prefill(model, inputs, repeats: int, device) -> float:
    def once():
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            model(**inputs, use_cache=True, logits_to_keep=1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t
    once()  # warm-up
    return statistics.median(once() for _ in range(repeats))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--layers", type=int, default=None, help="LM depth (default 28 on CUDA, 4 on CPU)")
    p.add_argument("--image-px", type=int, default=896, help="side of the full-resolution image")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    layers = args.layers or (28 if device.type == "cuda" else 4)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(args.seed)
    lm = qwen2vl_lm(layers, device, dtype)
    enc = tiny_encoder(device)
    adapter = Qwen2VLARRCOCAdapter(lm, enc)
    side = args.image_px // 28  # merged tokens per side of a native Qwen2-VL grid
    full_tokens = side * side
    prompt = [1, 11, 12, 8000, 21, 22, 23, 24, 25, 26, 27, 28]  # text, image, question text

    # full resolution: one native image grid
    ids = prompt[:3] + [8001] + [8000] * full_tokens + [8002] + prompt[4:]
    types = [0] * 4 + [1] * full_tokens + [0] * (len(ids) - 4 - full_tokens)
    feats = torch.randn(full_tokens, 1536, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    full = {"input_ids": torch.tensor([ids], device=device), "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=device),
            "mm_token_type_ids": torch.tensor([types], device=device, dtype=torch.int),
            "image_grid_thw": torch.tensor([[1, 2 * side, 2 * side]], device=device),
            "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=(feats,))}}
    rows = [("full", full_tokens, time_prefill(lm, full, args.repeats, device), None)]

    img = torch.randn(1, 3, 896, 896, generator=torch.Generator().manual_seed(2)).to(device)
    for frac in (0.25, 0.5):
        budget = int(frac * full_tokens)
        t = time.perf_counter()
        inputs, vision, counts = adapter.prepare(img, [prompt], queries=["what does the sign say?"], budget=budget,
                                                 generator=torch.Generator(device=device).manual_seed(args.seed))
        enc_s = time.perf_counter() - t
        inputs["mm_encoder_outputs"]["image"].pooler_output = tuple(
            f.to(dtype) for f in inputs["mm_encoder_outputs"]["image"].pooler_output)
        rows.append((f"arr-coc {int(frac * 100)}%", int(counts[0]), time_prefill(lm, inputs, args.repeats, device), enc_s))

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"Qwen2-VL-shaped LM prefill: hidden 1536, {layers} layers, {dtype}, {dev_name}; "
          f"full resolution = {args.image_px}px -> {full_tokens} image tokens; median of {args.repeats}")
    print(f"{'arm':<14}{'img tokens':>11}{'prefill s':>11}{'vs full':>9}{'encoder s':>11}")
    base = rows[0][2]
    for name, n, s, e in rows:
        print(f"{name:<14}{n:>11}{s:>11.3f}{s / base:>9.3f}{'' if e is None else f'{e:>11.3f}':>11}")
    return rows


if __name__ == "__main__":
    main()
