"""Training-free LLaVA / LLaVA-NeXT adapters (``LlavaAdapter``): every region through the VLM's own
CLIP tower + feature selection + projector. Tiny random models of the real classes with real
processors (tests/adapters/tiny_llava.py); references are the VLM's own get_image_features and
generate on the processor's output."""
import pytest
import torch

from arrcoc.adapters.llava import LlavaAdapter, LlavaTower
from tests.adapters.tiny_llava import image, tiny_llava, tiny_llava_next, tiny_llava_onevision

SMALL = dict(query_encoder={"type": "bytes", "dim": 32}, relevance={"num_heads": 2, "head_dim": 8})
NATIVE = dict(grid=1, global_tokens=0, levels=(0, 64), budget=64, image_size=32, **SMALL)
QUESTIONS = ["what is written on the sign", "how many windows does the house have"]


def chat(proc, question):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return proc.apply_chat_template(msgs, add_generation_prompt=True)


@pytest.fixture(scope="module")
def llava():
    return tiny_llava()


@pytest.fixture(scope="module")
def llava_next():
    return tiny_llava_next()


def test_native_region_equals_the_vlms_own_forward(llava):
    model, proc = llava
    text = chat(proc, QUESTIONS[0])
    inp = proc(images=image(0), text=text, return_tensors="pt")
    ad = LlavaAdapter(model, proc, **NATIVE)
    ids = proc.tokenizer(text)["input_ids"]
    inputs, vision, counts = ad.prepare(inp["pixel_values"], [ids], queries=QUESTIONS[:1], deterministic=True)
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=inp["pixel_values"]).pooler_output[0]  # (64, 64)
    mine = inputs["mm_encoder_outputs"]["image"].pooler_output[0]
    assert vision.allocation.tolist() == [[64]] and counts.tolist() == [64]
    assert mine.shape == ref.shape and (mine - ref).abs().max() < 1e-5
    assert torch.equal(inputs["input_ids"], inp["input_ids"])  # the processor's own expansion
    own = model.generate(**inp, max_new_tokens=8, do_sample=False)
    res = ad.generate(inp["pixel_values"], [ids], queries=QUESTIONS[:1], deterministic=True, max_new_tokens=8,
                      do_sample=False)
    assert torch.equal(res.sequences, own)


def test_tower_is_the_vlms_own_modules_and_resamples(llava):
    model, _ = llava
    tower = LlavaTower(model)
    assert tower.vision_tower is model.model.vision_tower and tower.projector is model.model.multi_modal_projector
    assert (tower.feature_dim, tower.patch_size, tower.native_size, tower.native_tokens) == (64, 4, 32, 64)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 16, 16, generator=g)
    out = tower(x, 4)  # a 4 x 4 level: 16 px crops, interpolated position grid
    assert out.shape == (2, 16, 64)
    with torch.no_grad():  # reference: the VLM's own feature path with interpolated positions
        hs = model.model.vision_tower(x, output_hidden_states=True, interpolate_pos_encoding=True).hidden_states[-2]
        ref = model.model.multi_modal_projector(hs[:, 1:])
    assert torch.allclose(out, ref, atol=1e-6)
    with pytest.raises(ValueError, match="must be 32x32 for a 8x8 grid"):
        tower(x, 8)


def test_quarter_budget_batch_of_two_equals_singles(llava):
    model, proc = llava
    ad = LlavaAdapter(model, proc, grid=2, global_tokens=16, levels=(0, 16, 36, 64), budget=4 * 64 + 16,
                      image_size=64, **SMALL)
    g = torch.Generator().manual_seed(5)
    pix = torch.randn(2, 3, 64, 64, generator=g)
    rows = [proc.tokenizer(chat(proc, q))["input_ids"] for q in QUESTIONS]
    budget = torch.tensor([68, 52])  # 25 % and 19 % of full detail (16 + 4 x 64 = 272 tokens)
    both = ad.generate(pix, rows, queries=QUESTIONS, budget=budget, deterministic=True, max_new_tokens=5,
                       do_sample=False)
    alloc = both.vision.allocation
    expect = (16 + alloc.sum(-1)).tolist()
    assert both.image_token_counts.tolist() == expect and expect[0] <= 68 and expect[1] <= 52
    ids, mask = both.inputs["input_ids"], both.inputs["attention_mask"]
    assert ((ids == ad.image_token_id) & mask.bool()).sum(-1).tolist() == expect  # exactly what was allocated
    assert [f.shape[0] for f in both.inputs["mm_encoder_outputs"]["image"].pooler_output] == expect
    assert expect[0] != expect[1] and (mask == 0).any()  # different counts: the shorter row is left padded
    for b in range(2):
        one = ad.generate(pix[b:b + 1], rows[b:b + 1], queries=QUESTIONS[b:b + 1], budget=int(budget[b]),
                          deterministic=True, max_new_tokens=5, do_sample=False)
        assert torch.equal(one.vision.allocation[0], alloc[b])
        assert torch.equal(one.new_tokens[0], both.new_tokens[b])


@pytest.mark.parametrize("family", ["next", "onevision"])
def test_next_native_image_equals_the_vlms_own_anyres_forward(family, llava_next):
    model, proc = llava_next if family == "next" else tiny_llava_onevision()  # CLIP "default" / SigLIP "full"
    text = chat(proc, QUESTIONS[1])
    inp = proc(images=image(1), text=text, return_tensors="pt")  # base + one 32 x 32 tile
    assert inp["pixel_values"].shape[1] == 2
    ad = LlavaAdapter(model, proc, grid=1, global_tokens=64, levels=(0, 64), budget=128, image_size=32, **SMALL)
    ids = proc.tokenizer(text)["input_ids"]
    inputs, vision, counts = ad.prepare(inp["pixel_values"][:, 0], [ids], queries=QUESTIONS[1:], deterministic=True)
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=inp["pixel_values"],
                                       image_sizes=inp["image_sizes"]).pooler_output[0]  # (64 + 8 * 9, 64)
    mine = inputs["mm_encoder_outputs"]["image"].pooler_output[0]
    assert counts.tolist() == [64 + 8 * 9] and mine.shape == ref.shape
    assert (mine - ref).abs().max() < 1e-5
    assert torch.equal(inputs["input_ids"], inp["input_ids"])
    own = model.generate(**inp, max_new_tokens=6, do_sample=False)
    res = ad.generate(inp["pixel_values"][:, 0], [ids], queries=QUESTIONS[1:], deterministic=True,
                      max_new_tokens=6, do_sample=False)
    assert torch.equal(res.sequences, own)


def test_next_regions_get_the_newline_rule_and_batch_equals_singles(llava_next):
    model, proc = llava_next
    ad = LlavaAdapter(model, proc, grid=2, global_tokens=16, levels=(0, 16, 64), budget=16 + 64 + 16,
                      image_size=64, **SMALL)
    g = torch.Generator().manual_seed(6)
    pix = torch.randn(2, 3, 64, 64, generator=g)
    rows = [proc.tokenizer(chat(proc, q))["input_ids"] for q in QUESTIONS]
    budget = torch.tensor([16 + 64 + 16, 16 + 16])
    both = ad.generate(pix, rows, queries=QUESTIONS, budget=budget, deterministic=True, max_new_tokens=4,
                       do_sample=False)
    alloc = both.vision.allocation
    sides = [[int(v ** 0.5) for v in a if v] for a in alloc.tolist()]
    expect = [16 + sum(s * (s + 1) for s in ss) for ss in sides]  # base + s rows of s tokens + newline
    assert both.image_token_counts.tolist() == expect
    feats = both.inputs["mm_encoder_outputs"]["image"].pooler_output
    nl = model.model.image_newline
    for b in range(2):
        f, pos = feats[b], 16
        for s in sides[b]:
            block = f[pos: pos + s * (s + 1)].reshape(s, s + 1, -1)
            assert torch.equal(block[:, -1], nl.expand(s, -1))
            pos += s * (s + 1)
        one = ad.generate(pix[b:b + 1], rows[b:b + 1], queries=QUESTIONS[b:b + 1], budget=int(budget[b]),
                          deterministic=True, max_new_tokens=4, do_sample=False)
        assert torch.equal(one.new_tokens[0], both.new_tokens[b])
    plain = LlavaAdapter(model, proc, grid=2, global_tokens=16, levels=(0, 16, 64), budget=96, image_size=64,
                         region_newlines=False, **SMALL)
    out = plain.prepare(pix, rows, queries=QUESTIONS, budget=budget, deterministic=True)
    assert out[2].tolist() == (16 + alloc.sum(-1)).tolist()


def test_bad_inputs(llava):
    model, proc = llava
    ad = LlavaAdapter(model, proc, **NATIVE)
    pix = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    img = ad.image_token_id
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        ad.prepare(pix, [[5, img, 6]])
    with pytest.raises(ValueError, match="2 image placeholders"):
        ad.prepare(pix, [[5, img, img], [img]])
    with pytest.raises(ValueError, match=r"outside the vocabulary \(size 320\)"):
        ad.prepare(pix, [[5, img, 400], [img]])
    with pytest.raises(TypeError, match="non-negative int"):
        ad.prepare(pix, [[5, img, -1], [img]])
    with pytest.raises(ValueError, match="region_embeddings must be False"):
        LlavaAdapter(model, proc, region_embeddings=True, **NATIVE)
    with pytest.raises(TypeError, match="LlavaForConditionalGeneration"):
        LlavaTower(torch.nn.Linear(2, 2))


def test_feature_selection_rules():
    siglip, _ = tiny_llava(select="full", tower="siglip")
    tower = LlavaTower(siglip)  # SigLIP has no CLS: "full" keeps every patch
    assert tower(torch.zeros(1, 3, 16, 16), 4).shape == (1, 16, 64)
    with pytest.raises(ValueError, match="keeps CLS"):
        LlavaTower(tiny_llava(select="full")[0])
    with pytest.raises(ValueError, match="drops a patch"):
        LlavaTower(tiny_llava(select="default", tower="siglip")[0])
    multi, _ = tiny_llava(feature_layer=[-2, -1])  # several feature layers: concatenated, as the model does
    tower = LlavaTower(multi)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = multi.get_image_features(pixel_values=x).pooler_output[0]
    assert torch.allclose(tower(x, 8)[0], ref, atol=1e-6)


def test_score_equals_the_vlms_own_log_likelihood(llava):
    model, proc = llava
    text = chat(proc, QUESTIONS[0])
    answer = proc.tokenizer(" the cat sits", add_special_tokens=False)["input_ids"]
    inp = proc(images=image(3), text=text, return_tensors="pt")
    ad = LlavaAdapter(model, proc, **NATIVE)
    assert ad.chat_prompts(QUESTIONS[0]) == [proc.tokenizer(text)["input_ids"]]
    mine = ad.score(inp["pixel_values"], ad.chat_prompts(QUESTIONS[0]), [answer], queries=QUESTIONS[:1],
                    deterministic=True)
    ids = torch.cat([inp["input_ids"], torch.tensor([answer])], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=inp["pixel_values"]).logits
    logp = torch.log_softmax(logits[0, -len(answer) - 1:-1], -1)
    own = logp.gather(-1, torch.tensor(answer)[:, None]).sum()
    assert mine.shape == (1,) and abs(float(mine[0]) - float(own)) < 1e-4


def test_from_vlm_builds_the_llava_adapter_with_model_defaults(llava):
    from arrcoc.adapters import from_vlm

    model, proc = llava
    ad = from_vlm(model, proc, query_encoder={"type": "bytes", "dim": 32}, relevance={"num_heads": 2, "head_dim": 8})
    cfg = ad.encoder.config
    assert isinstance(ad, LlavaAdapter) and ad.encoder.region_scorer is not None
    # native side 8 tokens: levels (8/3)^2 .. 8^2, a (8/3)^2 thumbnail, the VLM's own 64-token cost
    assert (cfg.grid, cfg.levels, cfg.global_tokens, cfg.budget, cfg.image_size) == (2, [0, 4, 16, 25, 64], 4, 64, 64)
    assert cfg.backbone["type"] == "vlm" and not cfg.region_embeddings
    pix = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    res = ad.generate(pix, ad.chat_prompts(QUESTIONS), queries=QUESTIONS, deterministic=True, max_new_tokens=3,
                      do_sample=False)
    assert (res.image_token_counts <= 64).all() and res.new_tokens.shape == (2, 3)
    answers = ad.answer([image(8, 40, 56), image(9, 64, 64)], QUESTIONS, max_new_tokens=3, deterministic=True)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_prefill_benchmark_llava_arm_quick():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "prefill.py"
    spec = importlib.util.spec_from_file_location("prefill_benchmark_llava", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--model", "llava", "--quick", "--device", "cpu"])
    full, arms = rows[0], rows[1:]
    assert full["tokens"] == (336 // 14) ** 2 == 576  # the VLM's own processor: 24 x 24 patches
    for r in arms:  # quick config: 2 x 2 grid, levels (0, 4, 16), a 2 x 2 thumbnail: at most 68 tokens
        assert 0 < r["tokens"] <= 68 and r["alloc"] > 0 and r["e2e"] >= r["vision"] > 0
        # KV cache: 1 layer x 4 KV heads x head 16 x (key + value) x 4 bytes = 512 bytes per position
        assert full["kv"] - r["kv"] == 512 * (full["tokens"] - r["tokens"])
