"""The own-tower adapter for Qwen2-VL / Qwen2.5-VL / Qwen3-VL with tiny random models of the real classes
and their real processors (built offline, tests/adapters/tiny_qwen.py): the tower's tokens are the
VLM's own, one region at native size is the VLM's own forward and generate, a smaller budget gives
the LLM exactly the allocated tokens at their true M-RoPE positions, a batch equals its singles."""
import pytest
import torch

from arrcoc.adapters.qwen_vl import QwenVLAdapter, QwenVLTower, qwen_patchify
from tests.adapters.tiny_qwen import KINDS, TOKEN_PX, tiny_processor, tiny_vlm

QUESTION = "What does the sign say?"


@pytest.fixture(scope="module", params=KINDS)
def qwen(request):
    return request.param, tiny_vlm(request.param), tiny_processor(request.param)


def images(n: int, side: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)


def normalise(img: torch.Tensor, tower: QwenVLTower) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> what the processor feeds the tower (rescale 1/255, its mean / std)."""
    mean = torch.tensor(tower.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(tower.image_std).view(1, 3, 1, 1)
    return (img.float() / 255 - mean) / std


def native(kind, vlm, proc, side: int):
    """Adapter whose one region covering the image is the VLM's own full-image encoding at ``side`` px."""
    n = (side // TOKEN_PX) ** 2
    return QwenVLAdapter(vlm, proc, grid=1, global_tokens=0, levels=(0, n), budget=n, image_size=side)


def chat(proc, question: str = QUESTION) -> str:
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)


def test_patchify_is_the_processors_layout(qwen):
    kind, vlm, proc = qwen
    img = images(1, 48, seed=3)
    ref = proc.image_processor(images=[img[0]], return_tensors="pt")
    tower = QwenVLTower(vlm, proc)
    mine = qwen_patchify(normalise(img, tower), 4, 2, 2)
    assert mine.shape == ref.pixel_values.shape == (144, 96)
    torch.testing.assert_close(mine, ref.pixel_values, atol=1e-6, rtol=0)


@pytest.mark.parametrize("side", [16, 32, 48])
def test_tower_tokens_are_get_image_features(qwen, side):
    kind, vlm, proc = qwen
    tower = QwenVLTower(vlm, proc)
    img = images(2, side, seed=side)
    with torch.no_grad():
        out = tower(normalise(img, tower), side // TOKEN_PX)  # (2, g*g, feature_dim), both in one call
        for i in range(2):
            ref = proc.image_processor(images=[img[i]], return_tensors="pt")
            feats = vlm.model.get_image_features(ref.pixel_values, ref.image_grid_thw)
            main, deep = tower.split(out[i])
            torch.testing.assert_close(main, feats.pooler_output[0], atol=1e-5, rtol=0)
            ref_deep = [d[0] for d in (getattr(feats, "deepstack_features", None) or [])]
            assert len(deep) == len(ref_deep) == (1 if kind == "qwen3_vl" else 0)
            for a, b in zip(deep, ref_deep):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert tower.feature_dim == 64 * (1 + len(ref_deep)) and tower.patch_size == TOKEN_PX


def test_native_region_is_the_vlms_own_forward_and_generate(qwen):
    kind, vlm, proc = qwen
    ad = native(kind, vlm, proc, 32)
    img = images(1, 32, seed=1)
    ref = proc(text=[chat(proc)], images=[img[0]], return_tensors="pt")
    prompts = ad.chat_prompts([QUESTION])
    inputs, vision, counts = ad.prepare(normalise(img, ad.tower), prompts, queries=[QUESTION], deterministic=True)
    assert counts.tolist() == [16] and vision.allocation.tolist() == [[16]]
    assert torch.equal(inputs["input_ids"], ref.input_ids)
    assert torch.equal(inputs["mm_token_type_ids"], ref.mm_token_type_ids.int())
    with torch.no_grad():
        feats = vlm.model.get_image_features(ref.pixel_values, ref.image_grid_thw)
        enc = inputs["mm_encoder_outputs"]["image"]
        torch.testing.assert_close(enc.pooler_output[0], feats.pooler_output[0], atol=1e-5, rtol=0)
        for a, b in zip(getattr(enc, "deepstack_features", None) or [], getattr(feats, "deepstack_features", None) or []):
            torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=0)
        pos, _ = vlm.model.get_rope_index(ref.input_ids, ref.mm_token_type_ids, image_grid_thw=ref.image_grid_thw,
                                          attention_mask=ref.attention_mask)
        assert torch.equal(inputs["position_ids"][1:], pos)
        torch.testing.assert_close(vlm(**inputs).logits, vlm(**ref).logits, atol=1e-5, rtol=0)
        own = vlm.generate(**ref, max_new_tokens=8, do_sample=False)
    res = ad.generate(normalise(img, ad.tower), prompts, queries=[QUESTION], deterministic=True, max_new_tokens=8,
                      do_sample=False)
    assert torch.equal(res.sequences, own)


def test_quarter_budget_exact_count_and_true_positions(qwen):
    """64-px image = 8 x 8 tokens at full detail; 2 x 2 regions of 4 x 4 tokens; budget 16 = 25 %."""
    kind, vlm, proc = qwen
    ad = QwenVLAdapter(vlm, proc, grid=2, global_tokens=0, levels=(0, 4, 16), budget=16, image_size=64)
    img = images(1, 64, seed=2)
    px = normalise(img, ad.tower)
    prompts = ad.chat_prompts([QUESTION])
    inputs, vision, counts = ad.prepare(px, prompts, queries=[QUESTION], deterministic=True)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    n_img = int(((ids == ad.image_token_id) & mask.bool()).sum())
    assert n_img == int(counts[0]) == int(vision.allocation.sum()) <= 16 and n_img > 0
    assert inputs["mm_encoder_outputs"]["image"].pooler_output[0].shape[0] == n_img
    # a forced allocation: region 0 (top left) at full detail, region 3 (bottom right) at 2 x 2
    alloc = torch.tensor([[16, 0, 0, 4]])
    inputs, vision, counts = ad.prepare(px, prompts, queries=[QUESTION], allocation=alloc)
    ref = proc(text=[chat(proc)], images=[img[0]], return_tensors="pt")  # the full-detail 8 x 8 encoding
    full, _ = vlm.model.get_rope_index(ref.input_ids, ref.mm_token_type_ids, image_grid_thw=ref.image_grid_thw)
    img_at = ref.input_ids[0].tolist().index(ad.image_token_id)
    full_img = full[:, 0, img_at:img_at + 64].reshape(3, 8, 8)  # (3, rows, cols) of the full-detail grid
    pos = inputs["position_ids"][1:, 0]  # (3, L)
    at = inputs["input_ids"][0].tolist().index(ad.image_token_id)
    assert at == img_at and counts.tolist() == [20]
    region0 = pos[:, at:at + 16].reshape(3, 4, 4)
    assert torch.equal(region0, full_img[:, :4, :4])  # the same positions the whole image gives that cell
    region3 = pos[:, at + 16:at + 20].reshape(3, 2, 2)  # 2 x 2 tokens over the cell's rows / cols 4..7
    start = full_img[0, 0, 0]
    assert torch.equal(region3[1] - start, torch.tensor([[5, 5], [7, 7]]))
    assert torch.equal(region3[2] - start, torch.tensor([[5, 7], [5, 7]]))
    assert (region3[0] == start).all()
    # the question after the image sits where it sits after the full-detail image
    assert torch.equal(pos[:, at + 20:], full[:, 0, img_at + 64:])
    # and the full-detail region's tokens are the tower's own tokens of that crop
    crop = proc.image_processor(images=[img[0, :, :32, :32]], return_tensors="pt")
    with torch.no_grad():
        own = vlm.model.get_image_features(crop.pixel_values, crop.image_grid_thw).pooler_output[0]
    torch.testing.assert_close(inputs["mm_encoder_outputs"]["image"].pooler_output[0][:16], own, atol=1e-5, rtol=0)


def test_batch_of_two_equals_the_singles(qwen):
    kind, vlm, proc = qwen
    ad = QwenVLAdapter(vlm, proc, grid=2, global_tokens=4, levels=(0, 4, 16), budget=20, image_size=64)
    px = normalise(images(2, 64, seed=5), ad.tower)
    questions = ["What colour is the car on the left?", "Yes?"]
    prompts = ad.chat_prompts(questions)
    budget = torch.tensor([20, 8])
    answers = [ad.processor.tokenizer(" red", add_special_tokens=False)["input_ids"],
               ad.processor.tokenizer(" no maybe", add_special_tokens=False)["input_ids"]]
    both = ad.generate(px, prompts, queries=questions, budget=budget, deterministic=True, max_new_tokens=6,
                       do_sample=False)
    counts = both.image_token_counts.tolist()
    assert counts[0] != counts[1] and counts[1] <= 8  # different token counts: left padding at work
    assert (both.inputs["attention_mask"] == 0).any()
    scores = ad.score(px, prompts, answers, queries=questions, budget=budget, deterministic=True)
    for b in range(2):
        one = ad.generate(px[b:b + 1], prompts[b:b + 1], queries=questions[b:b + 1], budget=int(budget[b]),
                          deterministic=True, max_new_tokens=6, do_sample=False)
        assert one.image_token_counts.tolist() == [counts[b]]
        assert torch.equal(one.new_tokens[0], both.new_tokens[b])
        s = ad.score(px[b:b + 1], prompts[b:b + 1], answers[b:b + 1], queries=questions[b:b + 1],
                     budget=int(budget[b]), deterministic=True)
        torch.testing.assert_close(s[0], scores[b], atol=1e-5, rtol=0)
    assert torch.isfinite(scores).all() and (scores < 0).all()


def test_bad_inputs_are_clear_errors():
    vlm, proc = tiny_vlm("qwen2_vl"), tiny_processor("qwen2_vl")
    ad = QwenVLAdapter(vlm, proc, grid=1, global_tokens=0, levels=(0, 16), budget=16, image_size=32)
    px = normalise(images(2, 32), ad.tower)
    prompts = ad.chat_prompts(["a", "b"])
    pad = ad.image_token_id
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        ad.prepare(px, prompts[:1])
    with pytest.raises(ValueError, match="2 image placeholders"):
        ad.prepare(px, [prompts[0] + [pad], prompts[1]])
    with pytest.raises(ValueError, match=r"prompt_ids\[1\] holds token ids \[320\] outside the vocabulary"):
        ad.prepare(px, [prompts[0], prompts[1] + [320]])
    with pytest.raises(TypeError, match="non-negative int token ids"):
        ad.prepare(px, [prompts[0], prompts[1] + [-1]])
    with pytest.raises(TypeError, match="Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration"):
        QwenVLTower(torch.nn.Linear(2, 2))
    from transformers import Qwen2VLImageProcessor
    with pytest.raises(ValueError, match="processor's patch_size is 14 but the VLM's tower uses 4"):
        QwenVLTower(vlm, Qwen2VLImageProcessor())
    with pytest.raises(ValueError, match="32x32 for a 4x4 grid"):
        ad.tower(px[:, :, :24, :24], 4)
    with pytest.raises(ValueError, match="positive multiples of patch_size \\* merge_size = 8"):
        qwen_patchify(px[:, :, :12, :12], 4, 2, 2)


def test_bare_placeholder_is_wrapped_and_missing_one_goes_first():
    vlm, proc = tiny_vlm("qwen2_vl"), tiny_processor("qwen2_vl")
    ad = QwenVLAdapter(vlm, proc, grid=1, global_tokens=0, levels=(0, 16), budget=16, image_size=32)
    px = normalise(images(2, 32), ad.tower)
    start, end, pad = ad.vision_start_id, ad.vision_end_id, ad.image_token_id
    inputs, _, _ = ad.prepare(px, [[11, pad, 12], [11, 12]], deterministic=True)
    rows = [r[m.bool()].tolist() for r, m in zip(inputs["input_ids"], inputs["attention_mask"])]
    assert rows[0] == [11, start] + [pad] * 16 + [end, 12]
    assert rows[1] == [start] + [pad] * 16 + [end, 11, 12]


def test_from_vlm_builds_it_with_the_vlms_question_channel(qwen):
    from arrcoc.adapters import EmbeddingSimilarityScorer, from_vlm

    kind, vlm, proc = qwen
    ad = from_vlm(vlm, proc)
    assert isinstance(ad, QwenVLAdapter) and ad.tower.visual is vlm.model.visual  # shared, not copied
    assert ad.encoder.config.backbone["vlm_class"] == type(vlm).__name__
    assert not any(p is q for p in ad.encoder.parameters() for q in vlm.parameters())  # the VLM owns its tower
    scorer = ad.encoder.region_scorer
    assert isinstance(getattr(scorer, "scorer", scorer), EmbeddingSimilarityScorer)
    plain = from_vlm(vlm, proc, region_scorer=None)
    px = normalise(images(1, 128, seed=4), ad.tower)
    q = ["What colour is the car on the left?"]
    res = ad.generate(px, ad.chat_prompts(q), queries=q, deterministic=True, max_new_tokens=3, do_sample=False)
    ref = plain.generate(px, plain.chat_prompts(q), queries=q, deterministic=True, max_new_tokens=3, do_sample=False)
    n = int(res.image_token_counts[0])
    assert n == int(((res.inputs["input_ids"] == ad.image_token_id)).sum()) <= ad.encoder.config.budget == 256
    # the VLM's own question channel moved the relevance posterior (the same encoder otherwise)
    assert not torch.allclose(res.vision.relevance_mean, ref.vision.relevance_mean)


def test_prefill_benchmark_quick_runs_and_counts_the_kv_cache():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "prefill.py"
    spec = importlib.util.spec_from_file_location("prefill_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--device", "cpu"])
    full, arms = rows[0], rows[1:]
    assert full["tokens"] == (224 // 28) ** 2 == 64 and [r["name"] for r in arms] == [
        "arr-coc 25%", "arr-coc 50%", "arr-coc 100%"]
    for r, budget in zip(arms, (16, 32, 64)):
        assert 0 < r["tokens"] <= budget and r["alloc"] > 0
    for r in rows:
        assert r["e2e"] >= r["vision"] > 0 and r["e2e"] >= r["llm"] > 0 and r["peak"] >= 0
    # KV cache: 1 layer x 2 KV heads x head 16 x (key + value) x 4 bytes = 256 bytes per position, and
    # the arms' prompts differ only in their image tokens
    for r in arms:
        assert full["kv"] - r["kv"] == 256 * (full["tokens"] - r["tokens"])


def test_global_view_spreads_over_the_whole_image_grid():
    from arrcoc.adapters.qwen_vl import _mrope_positions

    # 2 x 2 regions of at most 4 x 4 tokens: an 8 x 8 grid; a 2 x 2 global view, then region 1 at 2 x 2
    token_region = torch.tensor([-1] * 4 + [1] * 4)
    pos, side = _mrope_positions(token_region, grid=2, global_side=2, allocation=torch.tensor([0, 4, 0, 0]),
                                 top_side=4, start=10)
    assert side == 8
    assert pos[0].tolist() == [10] * 8  # one temporal position: the segment start
    assert pos[1].tolist() == [12, 12, 16, 16] + [11, 11, 13, 13]  # rows: global centres, region 1 (top right)
    assert pos[2].tolist() == [12, 16, 12, 16] + [15, 17, 15, 17]  # cols: region 1 spans columns 4..7
