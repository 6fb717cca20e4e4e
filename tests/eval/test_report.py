"""eval.report.summarise on hand-made records: exact hit@top, share, sensitivity and chance per policy."""
import pytest

from eval.report import object_chance, one_region_chance, summarise
from eval.runner import EvalConfig, Record, derive_seed, policy_names
from eval.scenes import Question, Scene

R = 16


def _q(targets, kind="object"):
    return Question("q", "x", tuple(targets), kind, False)


def _a(**regions):
    a = [0] * R
    for k, v in regions.items():
        a[int(k[1:])] = v
    return tuple(a)


@pytest.fixture
def scenes():
    return [Scene(0, None, 4, (), (_q([0]), _q([5, 6]), _q([15], "spatial"))),
            Scene(1, None, 4, (), (_q([3]), _q([3, 7])))]  # overlapping targets: that pair is skipped


def test_summarise_exact_numbers(scenes):
    recs = [
        # "aware": always puts 400 on the asked region(s)
        Record("aware", 640, 0, 0, _a(r0=400, r1=64), (1.0,) + (0.0,) * 15),
        Record("aware", 640, 0, 1, _a(r5=256, r6=256), (0.0,) * 5 + (1.0, 1.0) + (0.0,) * 9),
        Record("aware", 640, 0, 2, _a(r15=400), (0.0,) * 16),
        Record("aware", 640, 1, 0, _a(r3=400), (0.0,) * 16),
        Record("aware", 640, 1, 1, _a(r3=256, r7=256), (0.0,) * 16),
        # "blind": the same allocation whatever the question
        *[Record("blind", 640, s, q, _a(r0=400, r2=100), None) for s, n in ((0, 3), (1, 2)) for q in range(n)],
    ]
    out = {(m.policy, m.subset): m for m in summarise(recs, scenes, ["aware", "blind"], [640])}
    aw, bl = out[("aware", "object")], out[("blind", "object")]
    assert aw.n == 4 and aw.hit_at_top == 1.0 and aw.top_level_regions == pytest.approx(1.5)
    assert aw.hit_chance == pytest.approx((1 / 16 + 1 - 91 / 120 + 1 / 16 + 1 - 91 / 120) / 4)
    assert aw.target_share == pytest.approx((400 / 464 + 1 + 1 + 1) / 4)
    assert aw.uniform_share == pytest.approx((1 + 2 + 1 + 2) / 4 / 16)
    assert aw.share_ratio == pytest.approx(aw.target_share / aw.uniform_share)
    # pairs: scene 0 (0,1) and (1,0); scene 1's targets overlap -> no pair
    assert aw.n_pairs == 2 and aw.moved == 1.0 and aw.relevance_moved == 1.0
    assert aw.relevance_top == pytest.approx(2 / 4)  # scene 1: all-zero relevance, argmax 0 is no target
    assert bl.hit_at_top == pytest.approx(1 / 4)  # only scene 0 question 0 targets region 0
    assert bl.moved == 0.0 and bl.relevance_moved is None
    assert bl.mean_tokens == 500 and bl.target_share == pytest.approx((400 / 500 + 0 + 0 + 0) / 4)
    sp = out[("aware", "spatial")]
    assert sp.n == 1 and sp.hit_at_top == 1.0 and sp.moved is None


def test_policy_names_and_seeds():
    cfg = EvalConfig(modes=("deterministic",), baselines=("uniform",))
    assert policy_names(cfg) == ["arrcoc/deterministic", "no-query/deterministic", "uniform"]
    assert derive_seed(0, 1, 640) == derive_seed(0, 1, 640) != derive_seed(0, 2, 640)
    assert 0 <= derive_seed(2 ** 40, 7) < 2 ** 63


@pytest.mark.parametrize("kw, err, match", [
    (dict(budgets=()), TypeError, "budgets"),
    (dict(budgets=(640, 640)), ValueError, "must not repeat"),
    (dict(budgets=(640.5,)), TypeError, r"budgets\[0\] must be an int"),
    (dict(modes=("greedy",)), ValueError, "modes"),
    (dict(seed=-3), ValueError, "seed"),
    (dict(full_forward="yes"), TypeError, "full_forward"),
])
def test_eval_config_bad_input(kw, err, match):
    with pytest.raises(err, match=match):
        EvalConfig(**kw)


def test_reference_chances(scenes):
    # object questions: targets of size 1, 2, 1, 2 over 16 regions; the scenes have no objects listed
    assert one_region_chance(scenes, "object") == pytest.approx(6 / 4 / 16)
    assert one_region_chance(scenes, "spatial") == pytest.approx(1 / 16)
    from eval.scenes import PlacedObject

    o = PlacedObject("x", "x", (1, 1), (0,), (0, 0, 1, 1), (0,), (1.0,), None)
    two = [Scene(0, None, 4, (o, o), (_q([0]), _q([5]))), Scene(1, None, 4, (o, o, o, o), (_q([1]),))]
    assert object_chance(two) == pytest.approx((1 / 2 + 1 / 2 + 1 / 4) / 3)
