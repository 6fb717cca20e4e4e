"""from_vlm dispatch, the VLM's own question channel (EmbeddingSimilarityScorer) and the shared
answer scoring of the adapters (checked against a hand-computed log-likelihood)."""
import pytest
import torch
from torch import nn

from arrcoc.adapters import SUPPORTED_VLMS, EmbeddingSimilarityScorer, LlavaARRCOCAdapter, from_vlm
from arrcoc.adapters.base import check_answers

from .test_adapters import PROMPTS_LLAVA, QUERIES, tiny_llava
from tests.modeling.conftest import tiny_model


class WordTokenizer:
    """A real (if small) tokenizer: whitespace words -> ids from a fixed vocabulary."""

    def __init__(self, words):
        self.vocab = {w: i for i, w in enumerate(words)}

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.vocab[w] for w in text.lower().split() if w in self.vocab]}


def test_from_vlm_names_the_supported_classes():
    with pytest.raises(TypeError, match="Qwen2VLForConditionalGeneration.*LlavaForConditionalGeneration"):
        from_vlm(nn.Linear(2, 2))
    assert {"Qwen3VLForConditionalGeneration", "SmolVLMForConditionalGeneration"} <= set(SUPPORTED_VLMS)
    with pytest.raises(TypeError, match="region_scorer"):
        from_vlm(tiny_llava(), region_scorer=3)


def test_similarity_scorer_finds_the_region_holding_the_word():
    torch.manual_seed(0)
    words = ["what", "colour", "is", "the", "cat", "dog", "house"]
    emb = nn.Embedding(len(words), 16)
    scorer = EmbeddingSimilarityScorer(emb, WordTokenizer(words), grid=2)
    tokens = torch.randn(2, 16, 16) * 0.1  # (B, 4x4 glimpse tokens, D): four tokens per region
    with torch.no_grad():
        tokens[0, 10] = emb.weight[4] * 3  # "cat" in the bottom-right region (token row 2, col 2)
        tokens[1, 1] = emb.weight[6]       # "house" in the top-left region (token row 0, col 1)
    out = scorer(tokens, tokens.new_zeros(2, 4, 16), ["What colour is the cat?", "Is the house red?"])
    s = out["vlm_query"]  # (B, R)
    assert s.shape == (2, 4)
    assert s[0].argmax() == 3 and s[1].argmax() == 0
    # a soft maximum of cosines: the matching region scores ~1, above the others' best cosines
    assert s[0, 3] == pytest.approx(1.0, abs=0.05) and (s[0, :3] < 0.95).all()
    assert scorer(tokens, tokens.new_zeros(2, 4, 16), None) == {}
    # no content word in the vocabulary: the channel stays flat for that image
    flat = scorer(tokens, tokens.new_zeros(2, 4, 16), ["zebra?", "Is the house red?"])["vlm_query"]
    assert torch.equal(flat[0], torch.zeros(4)) and flat[1].argmax() == 0


def test_similarity_scorer_bad_input():
    emb = nn.Embedding(4, 8)
    with pytest.raises(TypeError, match="embed_tokens"):
        EmbeddingSimilarityScorer(nn.Linear(2, 2).weight, WordTokenizer(["a"]), 2)
    with pytest.raises(TypeError, match="tokenizer"):
        EmbeddingSimilarityScorer(emb, "tok", 2)
    with pytest.raises(ValueError, match="temperature"):
        EmbeddingSimilarityScorer(emb, WordTokenizer(["a"]), 2, temperature=0.0)
    sc = EmbeddingSimilarityScorer(emb, WordTokenizer(["a"]), 4)
    with pytest.raises(ValueError, match="square grid"):
        sc(torch.zeros(1, 9, 8), torch.zeros(1, 16, 8), ["a"])


def test_score_equals_the_hand_computed_log_likelihood(gen):
    model = tiny_llava()
    ad = LlavaARRCOCAdapter(model, tiny_model())
    pixels = torch.randn(2, 3, 128, 128, generator=gen)
    answers = [[40, 41, 42], [50]]
    got = ad.score(pixels, PROMPTS_LLAVA, answers, queries=QUERIES, deterministic=True)
    per_tok = ad.score(pixels, PROMPTS_LLAVA, answers, queries=QUERIES, deterministic=True, reduction="none")
    assert got.shape == (2,) and [len(t) for t in per_tok] == [3, 1]
    for b in range(2):  # each row alone, no padding: log p(answer | prompt with image)
        rows = [PROMPTS_LLAVA[b] + answers[b]]
        inputs, _, _ = ad.prepare(pixels[b:b + 1], rows, queries=QUERIES[b:b + 1], deterministic=True)
        with torch.no_grad():
            logp = torch.log_softmax(model(**inputs).logits[0].float(), -1)  # (L, V)
        L, n = inputs["input_ids"].shape[1], len(answers[b])
        ref = sum(logp[L - n - 1 + j, answers[b][j]] for j in range(n))
        torch.testing.assert_close(got[b], ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ad.score(pixels, PROMPTS_LLAVA, answers, queries=QUERIES, deterministic=True,
                                        reduction="mean"), got / torch.tensor([3.0, 1.0]))


def test_score_and_answers_bad_input(gen):
    ad = LlavaARRCOCAdapter(tiny_llava(), tiny_model())
    pixels = torch.randn(2, 3, 128, 128, generator=gen)
    with pytest.raises(ValueError, match="one answer per image"):
        ad.score(pixels, PROMPTS_LLAVA, [[4]], deterministic=True)
    with pytest.raises(ValueError, match="empty"):
        ad.score(pixels, PROMPTS_LLAVA, [[4], []], deterministic=True)
    with pytest.raises(ValueError, match="reduction"):
        ad.score(pixels, PROMPTS_LLAVA, [[4], [5]], deterministic=True, reduction="max")
    with pytest.raises(TypeError, match="answer_ids"):
        check_answers("yes", 1)
    with pytest.raises(ValueError, match="chat template"):
        ad.chat_prompts(["what is this?"])


def test_a_bf16_vlm_runs_with_the_allocation_in_float32():
    """A VLM loaded in bf16 on CPU: its tower runs in bf16 (shared), ARR-COC's own modules and the
    posterior stay float32, and the LLM gets bf16 features equal to the tower's own output."""
    from tests.adapters.tiny_llava import image, tiny_llava as tiny_llava_with_processor

    vlm, proc = tiny_llava_with_processor()
    vlm = vlm.to(torch.bfloat16)
    arr = from_vlm(vlm, proc)
    assert arr.encoder.work_dtype == torch.float32 and next(arr.tower.parameters()).dtype == torch.bfloat16
    img = image(3, 64, 64)
    assert len(arr.answer([img], ["What colour is the square?"], max_new_tokens=2)[0]) >= 0
    pv = arr.pixel_values([img])
    inputs, vision, counts = arr.prepare(pv, arr.chat_prompts(["What colour is the square?"]),
                                         queries=["What colour is the square?"], deterministic=True)
    assert vision.relevance_mean.dtype == torch.float32 and torch.isfinite(vision.relevance_mean).all()
    feats = inputs["mm_encoder_outputs"]["image"].pooler_output[0]
    assert feats.dtype == torch.bfloat16 and feats.shape[0] == int(counts[0])
    # the global view's tokens are the bf16 tower's own encoding of the thumbnail, cast losslessly
    side = arr.encoder.config.global_side
    from arrcoc.modeling.regions import resize
    with torch.no_grad():
        ref = arr.tower(resize(pv, arr.tower.input_size(side)).to(torch.bfloat16), side)[0]  # (g*g, D)
    torch.testing.assert_close(feats[:side * side], ref, atol=0, rtol=0)
