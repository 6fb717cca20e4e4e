"""Tiny random-weight Qwen2-VL / Qwen2.5-VL / Qwen3-VL models of the real transformers classes and a
real processor for them, all built offline (nothing downloaded).

The processor is the class's own (``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor`` /
``Qwen3VLProcessor``) around a real ``Qwen2VLImageProcessor`` with the tiny tower's patch sizes and a
byte-level BPE tokenizer trained here with the ``tokenizers`` library (Qwen's special tokens, Qwen2-VL's
chat template) wrapped in transformers' fast tokenizer class.
"""
from __future__ import annotations

import functools

import torch

__all__ = ["KINDS", "SPECIAL", "CHAT_TEMPLATE", "PATCH", "MERGE", "TOKEN_PX", "tiny_vlm", "tiny_processor",
           "tiny_tokenizer"]

KINDS = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
PATCH, MERGE = 4, 2          # pixels per patch side, patches merged per LLM token side
TOKEN_PX = PATCH * MERGE     # pixels per LLM token side (Qwen2-VL-2B: 28)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
VOCAB = 320                  # 256 bytes + merges + the specials; the LLM's vocab_size

# Qwen2-VL-Instruct's chat template (its format: system turn, <|im_start|>role\n ... <|im_end|>\n, one
# <|vision_start|><|image_pad|><|vision_end|> per image item, the assistant header last)
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

_CORPUS = ["You are a helpful assistant.", "What does the sign say?", "How many windows are there?",
           "Describe the image.", "What colour is the car on the left?", "Read the text in the top corner.",
           "system user assistant", "The answer is red. The answer is two. Yes no maybe."]


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    """Byte-level BPE (GPT-2 / Qwen style) trained on a few sentences; Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   extra_special_tokens={"image_token": "<|image_pad|>",
                                                         "video_token": "<|video_pad|>",
                                                         "vision_start_token": "<|vision_start|>",
                                                         "vision_end_token": "<|vision_end|>"})
    fast.chat_template = CHAT_TEMPLATE
    assert len(fast) <= VOCAB, len(fast)
    return fast


def _ids():
    tok = tiny_tokenizer()
    return {name: tok.convert_tokens_to_ids(name) for name in SPECIAL}


def tiny_processor(kind: str = "qwen2_vl", max_tokens: int = 4096):
    """The class's own processor: real image processor (no resize below ``max_tokens`` LLM tokens), the
    tokenizer above, the chat template."""
    from transformers import (Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor,
                              Qwen3VLProcessor, Qwen3VLVideoProcessor)

    cls = {"qwen2_vl": Qwen2VLProcessor, "qwen2_5_vl": Qwen2_5_VLProcessor, "qwen3_vl": Qwen3VLProcessor}[kind]
    mean_std = {} if kind != "qwen3_vl" else {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}  # Qwen3-VL's
    image = Qwen2VLImageProcessor(patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2,
                                  min_pixels=TOKEN_PX ** 2, max_pixels=max_tokens * TOKEN_PX ** 2, **mean_std)
    video = (Qwen3VLVideoProcessor if kind == "qwen3_vl" else Qwen2VLVideoProcessor)(
        patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2, **mean_std)  # the processor requires one
    return cls(image_processor=image, tokenizer=tiny_tokenizer(), video_processor=video, chat_template=CHAT_TEMPLATE)


def tiny_vlm(kind: str = "qwen2_vl", seed: int = 7, layers: int = 2):
    """A tiny random ``Qwen2VL`` / ``Qwen2_5_VL`` / ``Qwen3VL`` ``ForConditionalGeneration`` in eval mode.

    Text: hidden 64, 4 heads (2 KV), head 16; vision: width 32, ``layers`` blocks, patch 4, merge 2.
    Qwen2.5-VL: 16-px windows (2 x 2 LLM tokens) with the last block full attention; Qwen3-VL: learned
    4 x 4 position grid (interpolated) and a deepstack feature from block 0."""
    import transformers as tf

    ids = _ids()
    special = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                   vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    text = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                pad_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], bos_token_id=None)
    vision = dict(depth=layers, num_heads=2, patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=2,
                  in_channels=3)
    if kind == "qwen2_vl":
        cfg = tf.Qwen2VLConfig(text_config=text, vision_config=dict(vision, embed_dim=32, hidden_size=64, mlp_ratio=2),
                               **special)
        cls = tf.Qwen2VLForConditionalGeneration
    elif kind == "qwen2_5_vl":
        cfg = tf.Qwen2_5_VLConfig(
            text_config=text, vision_config=dict(vision, hidden_size=32, intermediate_size=64, out_hidden_size=64,
                                                 window_size=2 * TOKEN_PX, fullatt_block_indexes=[layers - 1]),
            **special)
        cls = tf.Qwen2_5_VLForConditionalGeneration
    elif kind == "qwen3_vl":
        cfg = tf.Qwen3VLConfig(
            text_config=dict(text, head_dim=16),
            vision_config=dict(vision, hidden_size=32, intermediate_size=64, out_hidden_size=64,
                               num_position_embeddings=16, deepstack_visual_indexes=[0]),
            **special)
        cls = tf.Qwen3VLForConditionalGeneration
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(cfg)
    return model.eval()
