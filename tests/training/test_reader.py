"""ReaderHead: shapes, masking, checks, and that it can learn (overfits 8 examples to 100 %)."""
import pytest
import torch

from arrcoc.training import ReaderConfig, ReaderHead

from .conftest import tiny_model


def _inputs(gen, B=8, N=12, T=5, D=16, R=4, vocab=30):
    tokens = torch.randn(B, N, D, generator=gen)
    mask = torch.ones(B, N, dtype=torch.long)
    mask[:, -3:] = 0  # padding at the end, as the encoder pads
    region = torch.randint(0, R, (B, N), generator=gen)
    region[:, :2] = -1  # global thumbnail first
    region[:, -3:] = -2
    ids = torch.randint(0, vocab, (B, T), generator=gen)
    qmask = torch.ones(B, T, dtype=torch.bool)
    qmask[0, -2:] = False
    return tokens, mask, region, ids, qmask


def test_shapes_and_padding_is_ignored(gen):
    torch.manual_seed(0)
    reader = ReaderHead(ReaderConfig(num_answers=6, visual_dim=16, vocab_size=30, num_regions=4, dim=32)).eval()
    tokens, mask, region, ids, qmask = _inputs(gen)
    logits = reader(tokens, mask, region, ids, qmask)
    assert logits.shape == (8, 6) and torch.isfinite(logits).all()
    # padded visual tokens (any values) and masked question tokens (any ids) do not change the answer
    t2, ids2 = tokens.clone(), ids.clone()
    t2[:, -3:] = 1e3
    ids2[0, -2:] = 0
    assert torch.allclose(reader(t2, mask, region, ids2, qmask), logits, atol=1e-5)
    # but a real token does (not a constant shift: the input LayerNorm removes that)
    t3 = tokens.clone()
    t3[:, 3] = torch.randn(8, 16, generator=gen)
    assert not torch.allclose(reader(t3, mask, region, ids, qmask), logits, atol=1e-4)


def test_overfits_eight_examples(gen):
    """8 scenes x 8 answers, where the answer sits in one token of one region: 100 % after 60 Adam
    steps (chance 12.5 %), from the reader's own initialisation (seeded)."""
    torch.manual_seed(0)
    cfg = ReaderConfig(num_answers=8, visual_dim=16, vocab_size=30, num_regions=4, dim=32, num_layers=1)
    reader = ReaderHead(cfg)
    tokens, mask, region, ids, qmask = _inputs(gen)
    labels = torch.arange(8)
    tokens[:, 5] = 3.0 * torch.nn.functional.one_hot(labels, 16).float()  # the answer's token
    opt = torch.optim.Adam(reader.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(reader(tokens, mask, region, ids, qmask), labels)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = (reader(tokens, mask, region, ids, qmask).argmax(-1) == labels).float().mean()
    assert first > 1.8 and float(loss.detach()) < 0.05 and acc == 1.0


def test_for_encoder_reads_the_model():
    m = tiny_model()
    c = ReaderConfig.for_encoder(m, 5, dim=16, num_heads=2)
    assert (c.num_answers, c.visual_dim, c.vocab_size, c.num_regions) == (5, 32, 257, 4)
    reader = ReaderHead(c)
    px = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = m(px, queries=["what colour is the square?", "which colour?"], deterministic=True)
    ids, qm = m.tokenize_queries(["what colour is the square?", "which colour?"])
    assert reader(out.last_hidden_state, out.attention_mask, out.token_region, ids, qm).shape == (2, 5)
    with pytest.raises(TypeError, match="model"):
        ReaderConfig.for_encoder(object(), 5)


@pytest.mark.parametrize("field, value", [("num_answers", 1), ("visual_dim", 0), ("vocab_size", 1.5),
                                          ("num_regions", 0), ("dim", 30), ("num_layers", 0),
                                          ("dropout", 1.0), ("dropout", float("nan")), ("max_question_tokens", 0)])
def test_config_errors_name_the_field(field, value):
    kw = dict(num_answers=4, visual_dim=8, vocab_size=10, num_regions=4, dim=32, num_heads=4)
    kw[field] = value
    with pytest.raises((TypeError, ValueError), match="dim" if field == "dim" else field):
        ReaderConfig(**kw)


def test_forward_errors_name_the_argument(gen):
    reader = ReaderHead(ReaderConfig(num_answers=3, visual_dim=16, vocab_size=30, num_regions=4, dim=16, num_heads=2))
    tokens, mask, region, ids, qmask = _inputs(gen)
    bad = {"visual_tokens": tokens[..., :5], "visual_mask": mask[:, :4], "token_region": region.float(),
           "question_ids": ids + 100, "question_mask": qmask[:, :2]}
    args = dict(visual_tokens=tokens, visual_mask=mask, token_region=region, question_ids=ids, question_mask=qmask)
    for name, value in bad.items():
        with pytest.raises((TypeError, ValueError), match=name):
            reader(**{**args, name: value})
    t = tokens.clone()
    t[0, 0] = float("nan")
    with pytest.raises(ValueError, match="visual_tokens"):
        reader(**{**args, "visual_tokens": t})
    r = region.clone()
    r[0, 2] = 9
    with pytest.raises(ValueError, match="token_region"):
        reader(**{**args, "token_region": r})
    with pytest.raises(TypeError, match="config"):
        ReaderHead({"num_answers": 3})


def test_pointer_learns_where_the_answer_is_and_its_loss_is_exact(gen):
    """The pointer's region logits: exact loss on a hand case; trained with ``pointer_loss`` on
    questions whose answer region is marked by a key token, it points there (chance 25 %)."""
    lg = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]]))
    t = torch.tensor([[False, True, True, False], [False, False, False, False]])
    assert torch.isclose(ReaderHead.pointer_loss(lg, t), -torch.log(torch.tensor(0.5)))  # row 2 has no target
    assert float(ReaderHead.pointer_loss(lg, torch.zeros(2, 4, dtype=torch.bool))) == 0.0
    with pytest.raises(ValueError, match="target_regions"):
        ReaderHead.pointer_loss(lg, t[:, :3])
    torch.manual_seed(0)
    cfg = ReaderConfig(num_answers=4, visual_dim=16, vocab_size=30, num_regions=4, dim=32, num_layers=1)
    reader = ReaderHead(cfg)
    B, N = 64, 12
    tokens, mask, region, ids, qmask = _inputs(gen, B=B, N=N)
    region[:, 2:9] = torch.arange(4).repeat(2)[:7]  # every region has tokens
    target = torch.randint(0, 4, (B,), generator=gen)
    ids[:, 0] = target + 1  # the question names the region's key ...
    tokens[torch.arange(B), 2 + target] += 3.0  # ... and that region's token carries it
    tmask = torch.nn.functional.one_hot(target, 4).bool()
    opt = torch.optim.Adam(reader.parameters(), lr=3e-3)
    for _ in range(120):
        out = reader.forward_detailed(tokens, mask, region, ids, qmask)
        loss = ReaderHead.pointer_loss(out.region_logits, tmask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = reader.forward_detailed(tokens, mask, region, ids, qmask)
    assert out.region_logits.shape == (B, 4) and out.visual_states.shape == (B, N, 32)
    assert (out.region_logits.argmax(-1) == target).float().mean() >= 0.9
