"""Tiny random-weight VLMs of the real transformers classes with real processors built offline.

Nothing is downloaded: the tokenizer is a byte-level BPE trained here with the ``tokenizers``
library on a few sentences and wrapped in ``PreTrainedTokenizerFast`` with the model family's
special tokens; the image processors are the real classes with tiny sizes; the chat templates are
written in each model's real prompt format (LLaVA-1.5 "USER: <image>\\n... ASSISTANT:",
LLaVA-NeXT (Mistral) "[INST] <image>\\n... [/INST]", Idefics3 / SmolVLM
"<|im_start|>User:<image>...<end_of_utterance>\\nAssistant:").
"""
from __future__ import annotations

import functools

import torch

import arrcoc.backbones  # noqa: F401  (the torchvision fix before transformers' image processors load)

__all__ = ["tokenizer", "tiny_llava", "tiny_llava_next", "tiny_llava_onevision", "tiny_idefics3", "tiny_smolvlm", "image",
           "LLAVA_TEMPLATE", "MISTRAL_TEMPLATE", "IDEFICS3_TEMPLATE"]

CORPUS = ["what is written on the sign", "how many windows does the house have", "the cat sits on a red mat",
          "describe the picture in one sentence", "yes no maybe left right top bottom", "a b c d 0 1 2 3 4 5"]
SIDE_LLAVA = 32       # CLIP tower image_size: 8 x 8 patches of 4 px -> 64 tokens at native resolution
SIDE_IDEFICS = 32     # SigLIP tower image_size: 8 x 8 patches, pixel shuffle 2 -> 16 tokens at native

# LLaVA-1.5 (llava-hf) prompt format: images first in the user turn, then the text.
LLAVA_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endif %}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
# LLaVA-NeXT-Mistral prompt format.
MISTRAL_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{{ ' [/INST]' }}{% else %}{% for c in message['content'] %}{{ ' ' + c['text'] }}{% endfor %}{{ '</s>' }}"
    "{% endif %}{% endfor %}")
# Idefics3 / SmolVLM prompt format.
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")

LLAVA_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
IDEFICS3_SPECIALS = ["<pad>", "<|im_start|>", "<|endoftext|>", "<unk>", "<image>", "<fake_token_around_image>",
                     "<global-img>", "<end_of_utterance>", "<video>"] + \
                    [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]


@functools.lru_cache(maxsize=None)
def _bpe(specials: tuple[str, ...], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return tok.to_str()


def tokenizer(family: str = "llava"):
    """A fast tokenizer with the family's special tokens (ids fixed: specials first, then bytes)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    specials = LLAVA_SPECIALS if family == "llava" else IDEFICS3_SPECIALS
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_bpe(tuple(specials), 320)))
    if family == "llava":
        tok.add_special_tokens({"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
        tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
        tok.image_token = "<image>"
    else:
        tok.add_special_tokens({"pad_token": "<pad>", "bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>",
                                "unk_token": "<unk>"})
        tok.add_special_tokens({"additional_special_tokens": IDEFICS3_SPECIALS[4:]})
    tok.padding_side = "left"
    return tok


def _text_config(vocab: int, pad: int, bos: int, **kw):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                       pad_token_id=pad, bos_token_id=bos, eos_token_id=None, **kw)


def _clip(**kw):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                            image_size=SIDE_LLAVA, patch_size=4, **kw)


def tiny_llava(seed: int = 7, feature_layer=-2, select: str = "default", tower: str = "clip"):
    """(LlavaForConditionalGeneration, LlavaProcessor): CLIP tower 32 px / 4 px patches, 2 layers,
    LLaMA 64 wide, 2 layers; the processor gives 8 x 8 = 64 ``<image>`` tokens per image."""
    from transformers import (CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor,
                              SiglipVisionConfig)

    tok = tokenizer("llava")
    torch.manual_seed(seed)
    vision = _clip() if tower == "clip" else SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=SIDE_LLAVA,
        patch_size=4)
    cfg = LlavaConfig(vision_config=vision, text_config=_text_config(len(tok), tok.pad_token_id, tok.bos_token_id),
                      image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=feature_layer,
                      vision_feature_select_strategy=select)
    model = LlavaForConditionalGeneration(cfg).eval()
    mean, std = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)) if tower == "clip" \
        else ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    image_proc = CLIPImageProcessor(size={"shortest_edge": SIDE_LLAVA}, crop_size={"height": SIDE_LLAVA,
                                    "width": SIDE_LLAVA}, image_mean=list(mean), image_std=list(std))
    proc = LlavaProcessor(image_processor=image_proc, tokenizer=tok, patch_size=4,
                          vision_feature_select_strategy=select, chat_template=LLAVA_TEMPLATE,
                          num_additional_image_tokens=1 if tower == "clip" else 0)
    return model, proc


def tiny_llava_next(seed: int = 7):
    """(LlavaNextForConditionalGeneration, LlavaNextProcessor): the same CLIP tower and LLaMA; anyres
    pinpoints {32 x 32, 32 x 64, 64 x 32, 64 x 64} (one to four 8 x 8 tiles + the base image)."""
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessor,
                              LlavaNextProcessor)

    tok = tokenizer("llava")
    torch.manual_seed(seed)
    pins = [[32, 32], [32, 64], [64, 32], [64, 64]]
    cfg = LlavaNextConfig(vision_config=_clip(), text_config=_text_config(len(tok), tok.pad_token_id,
                          tok.bos_token_id), image_token_id=tok.convert_tokens_to_ids("<image>"),
                          image_grid_pinpoints=pins, vision_feature_layer=-2,
                          vision_feature_select_strategy="default")
    model = LlavaNextForConditionalGeneration(cfg).eval()
    image_proc = LlavaNextImageProcessor(size={"shortest_edge": SIDE_LLAVA}, crop_size={"height": SIDE_LLAVA,
                                         "width": SIDE_LLAVA}, image_grid_pinpoints=pins)
    proc = LlavaNextProcessor(image_processor=image_proc, tokenizer=tok, patch_size=4,
                              vision_feature_select_strategy="default", chat_template=MISTRAL_TEMPLATE,
                              num_additional_image_tokens=1)
    return model, proc


def tiny_llava_onevision(seed: int = 7):
    """(LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor): a SigLIP tower (no CLS,
    "full" selection, last layer), the same LLaMA, pinpoints as ``tiny_llava_next``."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, SiglipVisionConfig)

    tok = tokenizer("llava")
    torch.manual_seed(seed)
    pins = [[32, 32], [32, 64], [64, 32], [64, 64]]
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                image_size=SIDE_LLAVA, patch_size=4)
    cfg = LlavaOnevisionConfig(vision_config=vision, text_config=_text_config(len(tok), tok.pad_token_id,
                               tok.bos_token_id), image_token_id=tok.convert_tokens_to_ids("<image>"),
                               image_grid_pinpoints=pins, vision_feature_layer=-1,
                               vision_feature_select_strategy="full")
    model = LlavaOnevisionForConditionalGeneration(cfg).eval()
    image_proc = LlavaOnevisionImageProcessor(size={"height": SIDE_LLAVA, "width": SIDE_LLAVA},
                                              image_grid_pinpoints=pins)
    from transformers import LlavaOnevisionVideoProcessor

    proc = LlavaOnevisionProcessor(image_processor=image_proc, tokenizer=tok, num_image_tokens=64,
                                   video_processor=LlavaOnevisionVideoProcessor(),
                                   vision_feature_select_strategy="full", chat_template=LLAVA_TEMPLATE)
    return model, proc


def _idefics3(cls_name: str, seed: int):
    import transformers

    tok = tokenizer("idefics3")
    torch.manual_seed(seed)
    config_cls = getattr(transformers, cls_name.replace("ForConditionalGeneration", "Config"))
    cfg = config_cls(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=SIDE_IDEFICS, patch_size=4),
        text_config=_text_config(len(tok), tok.pad_token_id, tok.bos_token_id).to_dict(),
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2, pad_token_id=tok.pad_token_id)
    return getattr(transformers, cls_name)(cfg).eval(), tok


def tiny_idefics3(seed: int = 7, splitting: bool = False):
    """(Idefics3ForConditionalGeneration, Idefics3Processor): SigLIP-style tower 32 px / 4 px patches,
    pixel shuffle 2 -> 16 tokens per image; ``splitting`` turns the processor's tiling on."""
    from transformers import Idefics3ImageProcessor, Idefics3Processor

    model, tok = _idefics3("Idefics3ForConditionalGeneration", seed)
    image_proc = Idefics3ImageProcessor(size={"longest_edge": 2 * SIDE_IDEFICS},
                                        max_image_size={"longest_edge": SIDE_IDEFICS}, do_image_splitting=splitting)
    proc = Idefics3Processor(image_processor=image_proc, tokenizer=tok, image_seq_len=16,
                             chat_template=IDEFICS3_TEMPLATE)
    return model, proc


def tiny_smolvlm(seed: int = 7):
    """SmolVLMForConditionalGeneration with an Idefics3Processor (the same image layout and token
    rules; SmolVLMProcessor adds video handling that needs the num2words package)."""
    from transformers import Idefics3ImageProcessor, Idefics3Processor

    model, tok = _idefics3("SmolVLMForConditionalGeneration", seed)
    image_proc = Idefics3ImageProcessor(size={"longest_edge": 2 * SIDE_IDEFICS},
                                        max_image_size={"longest_edge": SIDE_IDEFICS}, do_image_splitting=False)
    proc = Idefics3Processor(image_processor=image_proc, tokenizer=tok, image_seq_len=16,
                             chat_template=IDEFICS3_TEMPLATE)
    return model, proc


def image(seed: int, height: int = 32, width: int = 32):
    """A seeded random RGB PIL image."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    arr = (torch.rand(height, width, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(arr)
