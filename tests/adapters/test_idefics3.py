"""Training-free Idefics3 / SmolVLM adapter (``Idefics3Adapter``): every region through the VLM's own
vision model + pixel-shuffle connector, the prompt in the model's own image layout. Tiny random
models of the real classes with the real Idefics3 processor (tests/adapters/tiny_llava.py)."""
import pytest
import torch

from arrcoc.adapters.idefics3 import Idefics3Adapter, Idefics3Tower
from tests.adapters.tiny_llava import image, tiny_idefics3, tiny_smolvlm

SMALL = dict(query_encoder={"type": "bytes", "dim": 32}, relevance={"num_heads": 2, "head_dim": 8})
NATIVE = dict(grid=1, global_tokens=0, levels=(0, 16), budget=16, image_size=32, **SMALL)
QUESTIONS = ["what is written on the sign", "how many windows does the house have"]


def chat(proc, question):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return proc.apply_chat_template(msgs, add_generation_prompt=True)


@pytest.fixture(scope="module", params=["idefics3", "smolvlm"])
def vlm(request):
    return tiny_idefics3() if request.param == "idefics3" else tiny_smolvlm(seed=11)


def test_native_image_equals_the_vlms_own_forward(vlm):
    model, proc = vlm
    text = chat(proc, QUESTIONS[0])
    inp = proc(images=image(0), text=text, return_tensors="pt")  # one unsplit 32 x 32 image
    ad = Idefics3Adapter(model, proc, **NATIVE)
    ids = proc.tokenizer(text)["input_ids"]
    inputs, vision, counts = ad.prepare(inp["pixel_values"][:, 0], [ids], queries=QUESTIONS[:1], deterministic=True)
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=inp["pixel_values"],
                                       pixel_attention_mask=inp["pixel_attention_mask"]).pooler_output[0]  # (16, 64)
    mine = inputs["mm_encoder_outputs"]["image"].pooler_output[0]
    assert counts.tolist() == [16] and mine.shape == ref.shape
    assert (mine - ref).abs().max() < 1e-5
    assert torch.equal(inputs["input_ids"], inp["input_ids"])  # the processor's own layout
    own = model.generate(**inp, max_new_tokens=8, do_sample=False)
    res = ad.generate(inp["pixel_values"][:, 0], [ids], queries=QUESTIONS[:1], deterministic=True,
                      max_new_tokens=8, do_sample=False)
    assert torch.equal(res.sequences, own)


def test_tower_resamples_through_bucketed_positions(vlm):
    model, _ = vlm
    tower = Idefics3Tower(model)
    assert tower.vision_model is model.model.vision_model and tower.connector is model.model.connector
    assert (tower.patch_size, tower.native_size, tower.native_tokens, tower.feature_dim) == (8, 32, 16, 64)
    x = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(4))  # a 3 x 3 level: 6 x 6 patches
    out = tower(x, 3)
    with torch.no_grad():  # reference: the model's own get_image_features on the same unpadded crops
        ref = model.get_image_features(pixel_values=x[:, None]).pooler_output  # B lists of (9, 64)
    assert out.shape == (2, 9, 64) and torch.allclose(out, torch.stack(ref), atol=1e-6)


def test_split_layout_quarter_budget_and_batch_equals_singles(vlm):
    model, proc = vlm
    ad = Idefics3Adapter(model, proc, grid=2, global_tokens=4, levels=(0, 4, 16), budget=4 + 4 * 16,
                         image_size=64, **SMALL)
    pix = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    rows = [proc.tokenizer(chat(proc, q))["input_ids"] for q in QUESTIONS]
    budget = torch.tensor([17, 24])  # 25 % and 35 % of full detail (4 + 4 x 16 = 68)
    both = ad.generate(pix, rows, queries=QUESTIONS, budget=budget, deterministic=True, max_new_tokens=4,
                       do_sample=False)
    alloc = both.vision.allocation
    expect = (4 + alloc.sum(-1)).tolist()
    assert both.image_token_counts.tolist() == expect and expect[0] <= 17 and expect[1] <= 24
    ids, mask = both.inputs["input_ids"], both.inputs["attention_mask"]
    assert ((ids == ad.image_token_id) & mask.bool()).sum(-1).tolist() == expect
    tok = proc.tokenizer
    for b in range(2):
        text = tok.decode(ids[b][mask[b].bool()])
        for r, lv in enumerate(alloc[b].tolist()):  # a tile per allocated region, tagged with its grid cell
            tag = f"<fake_token_around_image><row_{r // 2 + 1}_col_{r % 2 + 1}>" + "<image>" * lv
            assert (tag in text) == (lv > 0)
        assert text.count("<global-img>" + "<image>" * 4 + "<fake_token_around_image>") == 1
        one = ad.generate(pix[b:b + 1], rows[b:b + 1], queries=QUESTIONS[b:b + 1], budget=int(budget[b]),
                          deterministic=True, max_new_tokens=4, do_sample=False)
        assert torch.equal(one.vision.allocation[0], alloc[b])
        assert torch.equal(one.new_tokens[0], both.new_tokens[b])


def test_full_allocation_matches_the_processors_split_layout():
    """Every region at the native level + a native global view: the processor's own 2 x 2 split
    layout of a 64 x 64 image, id for id, and every region's features are the VLM's own tile's."""
    model, proc = tiny_idefics3(splitting=True)
    text = chat(proc, QUESTIONS[0])
    inp = proc(images=image(2, 64, 64), text=text, return_tensors="pt")
    ad = Idefics3Adapter(model, proc, grid=2, global_tokens=16, levels=(0, 16), budget=80, image_size=64, **SMALL)
    tiles = inp["pixel_values"][0, :4]  # (4, 3, 32, 32): the processor's 2 x 2 split, row-major
    pix = tiles.reshape(2, 2, 3, 32, 32).permute(2, 0, 3, 1, 4).reshape(1, 3, 64, 64)  # the image they came from
    inputs, vision, counts = ad.prepare(pix, [proc.tokenizer(text)["input_ids"]], deterministic=True)
    assert vision.allocation.tolist() == [[16] * 4] and counts.tolist() == [80]
    assert torch.equal(inputs["input_ids"], inp["input_ids"])
    with torch.no_grad():  # each region is exactly one of the VLM's own tiles (the global view is resampled
        own = model.get_image_features(pixel_values=inp["pixel_values"],  # by ARR-COC, not by the processor)
                                       pixel_attention_mask=inp["pixel_attention_mask"]).pooler_output[0]
    mine = inputs["mm_encoder_outputs"]["image"].pooler_output[0]
    assert own.shape == mine.shape == (80, 64) and (mine[:64] - own[:64]).abs().max() < 1e-5


def test_bad_inputs():
    model, proc = tiny_idefics3()
    ad = Idefics3Adapter(model, proc, **NATIVE)
    pix = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    img = ad.image_token_id
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        ad.prepare(pix, [[5, img, 6]])
    with pytest.raises(ValueError, match="2 image placeholders"):
        ad.prepare(pix, [[5, img, img], [img]])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ad.prepare(pix, [[5, img, 10_000], [img]])
    with pytest.raises(ValueError, match="needs its processor"):
        Idefics3Adapter(model, None, **NATIVE)
    with pytest.raises(ValueError, match="at most 6"):
        Idefics3Adapter(model, proc, grid=7, global_tokens=0, levels=(0, 4), budget=16, image_size=56, **SMALL)
    with pytest.raises(TypeError, match="Idefics3ForConditionalGeneration"):
        Idefics3Tower(torch.nn.Linear(2, 2))


def test_score_equals_the_vlms_own_log_likelihood(vlm):
    model, proc = vlm
    text = chat(proc, QUESTIONS[1])
    answer = proc.tokenizer(" two windows", add_special_tokens=False)["input_ids"]
    inp = proc(images=image(4), text=text, return_tensors="pt")
    ad = Idefics3Adapter(model, proc, **NATIVE)
    prompts = ad.chat_prompts(QUESTIONS[1])
    assert prompts == [proc.tokenizer(text)["input_ids"]]
    mine = ad.score(inp["pixel_values"][:, 0], prompts, [answer], queries=QUESTIONS[1:], deterministic=True)
    ids = torch.cat([inp["input_ids"], torch.tensor([answer])], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=inp["pixel_values"],
                       pixel_attention_mask=inp["pixel_attention_mask"]).logits
    logp = torch.log_softmax(logits[0, -len(answer) - 1:-1], -1)
    own = logp.gather(-1, torch.tensor(answer)[:, None]).sum()
    assert mine.shape == (1,) and abs(float(mine[0]) - float(own)) < 1e-4


def test_from_vlm_builds_the_idefics3_adapter_with_model_defaults(vlm):
    from arrcoc.adapters import from_vlm

    model, proc = vlm
    ad = from_vlm(model, proc, query_encoder={"type": "bytes", "dim": 32}, relevance={"num_heads": 2, "head_dim": 8})
    cfg = ad.encoder.config
    assert isinstance(ad, Idefics3Adapter) and ad.encoder.region_scorer is not None
    assert (cfg.grid, cfg.levels, cfg.global_tokens, cfg.budget, cfg.image_size) == (2, [0, 1, 4, 16], 4, 16, 64)
    pix = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    res = ad.generate(pix, ad.chat_prompts(QUESTIONS), queries=QUESTIONS, deterministic=True, max_new_tokens=3,
                      do_sample=False)
    assert (res.image_token_counts <= 16).all() and res.new_tokens.shape == (2, 3)
    answers = ad.answer([image(8, 40, 56), image(9, 64, 64)], QUESTIONS, max_new_tokens=3, deterministic=True)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
