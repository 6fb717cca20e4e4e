"""LLaVA and Qwen2-VL adapters with tiny random-weight models of the real classes: allocation
first, exactly as many image placeholders as ARR-COC tokens, the VLM's own generate, batch > 1."""
import math

import pytest
import torch

from arrcoc.adapters import LlavaARRCOCAdapter, Qwen2VLARRCOCAdapter
from tests.modeling.conftest import TINY_VISION, tiny_model

QUERIES = ["read the sign", "count the windows"]


@pytest.fixture(scope="module")
def encoder():
    return tiny_model()


@pytest.fixture
def pixels(gen):
    return torch.randn(2, 3, 128, 128, generator=gen)


def tiny_llava():
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    torch.manual_seed(7)
    text = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       pad_token_id=0, eos_token_id=None, bos_token_id=1)
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(**TINY_VISION), text_config=text, image_token_id=127)
    return LlavaForConditionalGeneration(cfg).eval()


def tiny_qwen2vl():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    torch.manual_seed(7)
    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=160, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                         pad_token_id=0, eos_token_id=None, bos_token_id=1),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=4,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        image_token_id=150, video_token_id=153, vision_start_token_id=151, vision_end_token_id=152)
    return Qwen2VLForConditionalGeneration(cfg).eval()


PROMPTS_LLAVA = [[1, 5, 127, 9, 10], [1, 127, 22, 23, 24, 25]]
PROMPTS_QWEN = [[1, 5, 150, 9, 10], [1, 150, 22, 23, 24, 25]]


def test_llava_generate_end_to_end(encoder, pixels):
    model = tiny_llava()
    ad = LlavaARRCOCAdapter(model, encoder)
    res = ad.generate(pixels, PROMPTS_LLAVA, queries=QUERIES, budget=torch.tensor([52, 120]),
                      deterministic=True, max_new_tokens=6, do_sample=False)
    assert res.new_tokens.shape == (2, 6)
    counts = res.vision.tokens_per_image
    assert counts.tolist() == (16 + res.vision.allocation.sum(-1)).tolist()
    ids, mask = res.inputs["input_ids"], res.inputs["attention_mask"]
    assert ((ids == 127) & mask.bool()).sum(-1).tolist() == counts.tolist()  # exact placeholder count
    assert counts[0] <= 52 and counts[1] <= 120
    # Reference: the same greedy decode from inputs_embeds built by hand (embed, scatter projected tokens)
    with torch.no_grad():
        emb = model.get_input_embeddings()(ids)
        for b in range(2):
            n = int(counts[b])
            feats = model.model.multi_modal_projector(res.vision.last_hidden_state[b, :n])
            emb[b, ids[b] == 127] = feats
        ref = model.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=6, do_sample=False,
                             pad_token_id=0)
    assert torch.equal(ref, res.new_tokens)


def test_llava_batch_matches_single(encoder, pixels):
    ad = LlavaARRCOCAdapter(tiny_llava(), encoder)
    both = ad.generate(pixels, PROMPTS_LLAVA, queries=QUERIES, deterministic=True, max_new_tokens=4, do_sample=False)
    one = ad.generate(pixels[1:], PROMPTS_LLAVA[1:], queries=QUERIES[1:], deterministic=True, max_new_tokens=4,
                      do_sample=False)
    assert torch.equal(both.new_tokens[1], one.new_tokens[0])


def test_llava_rejects_mismatches(encoder, pixels):
    ad = LlavaARRCOCAdapter(tiny_llava(), encoder)
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        ad.generate(pixels, PROMPTS_LLAVA[:1], max_new_tokens=2)
    with pytest.raises(ValueError, match="image placeholders"):
        ad.generate(pixels, [[127, 127], [127]], max_new_tokens=2)
    with pytest.raises(TypeError, match="LlavaForConditionalGeneration"):
        LlavaARRCOCAdapter(tiny_qwen2vl(), encoder)
    wide = tiny_model(backbone={"type": "hf", "config": __import__("transformers").CLIPVisionConfig(
        **{**TINY_VISION, "hidden_size": 48}).to_dict()})
    with pytest.raises(ValueError, match="32-dim vision features but the ARR-COC encoder gives 48"):
        LlavaARRCOCAdapter(tiny_llava(), wide)


def test_qwen2vl_generate_end_to_end(encoder, pixels):
    model = tiny_qwen2vl()
    ad = Qwen2VLARRCOCAdapter(model, encoder)
    res = ad.generate(pixels, PROMPTS_QWEN, queries=QUERIES, budget=torch.tensor([52, 120]), deterministic=True,
                      max_new_tokens=5, do_sample=False)
    assert res.new_tokens.shape == (2, 5)
    ids, mask, grid = res.inputs["input_ids"], res.inputs["attention_mask"], res.inputs["image_grid_thw"]
    counts = res.vision.tokens_per_image
    assert ((ids == 150) & mask.bool()).sum(-1).tolist() == counts.tolist()
    # one image segment per global view + allocated region, each (1, 2s, 2s) -> s*s merged tokens
    segs = [16] + [v for v in res.vision.allocation[0].tolist() if v] + [16] + \
           [v for v in res.vision.allocation[1].tolist() if v]
    assert (grid.prod(-1) // 4).tolist() == segs
    assert all(math.isqrt(s) ** 2 == s for s in segs)
    assert ((ids == 151) & mask.bool()).sum() == len(segs) == ((ids == 152) & mask.bool()).sum()
    assert torch.equal(res.inputs["mm_token_type_ids"].bool(), (ids == 150) & mask.bool())
    # Reference: prefill logits from inputs_embeds with Qwen2-VL's own M-RoPE positions
    with torch.no_grad():
        emb = model.get_input_embeddings()(ids)
        emb[(ids == 150) & mask.bool()] = torch.cat(res.inputs["mm_encoder_outputs"]["image"].pooler_output)
        pos, _ = model.model.get_rope_index(ids, res.inputs["mm_token_type_ids"], image_grid_thw=grid,
                                            attention_mask=mask)
        logits = model(inputs_embeds=emb, attention_mask=mask, position_ids=pos).logits[:, -1]
    assert torch.equal(logits.argmax(-1), res.new_tokens[:, 0])


def test_qwen2vl_batch_matches_single_and_budget_changes_input(encoder, pixels):
    ad = Qwen2VLARRCOCAdapter(tiny_qwen2vl(), encoder)
    both = ad.generate(pixels, PROMPTS_QWEN, queries=QUERIES, deterministic=True, max_new_tokens=4, do_sample=False)
    one = ad.generate(pixels[1:], PROMPTS_QWEN[1:], queries=QUERIES[1:], deterministic=True, max_new_tokens=4,
                      do_sample=False)
    assert torch.equal(both.new_tokens[1], one.new_tokens[0])
    small = ad.generate(pixels[1:], PROMPTS_QWEN[1:], queries=QUERIES[1:], budget=32, deterministic=True,
                        max_new_tokens=1, do_sample=False)
    assert int(small.image_token_counts[0]) <= 32 < int(one.image_token_counts[0])
