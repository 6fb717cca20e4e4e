"""UncertaintyCache: hit, uncertainty-forced recompute, eviction by size, 8 threads at once."""
import threading

import numpy as np
import pytest

from arrcoc.serving.cache import CacheConfig, CachedAnswer, UncertaintyCache, cache_key


def answer(value: float, epistemic: float, draws: int, n: int = 16) -> CachedAnswer:
    return CachedAnswer({"allocation": np.full(n, value)}, np.full(4, epistemic), draws)


def test_hit_after_miss_returns_the_stored_answer():
    cache = UncertaintyCache(CacheConfig(threshold=0.05))
    calls = []
    compute = lambda d: calls.append(d) or answer(1.0, 1e-4, 1)  # u = 0.01 < 0.05
    a, s1 = cache.get("k", compute)
    b, s2 = cache.get("k", compute)
    assert (s1, s2) == ("miss", "hit") and calls == [None] and b is a
    st = cache.stats()
    assert (st.hits, st.misses, st.recomputes, st.entries, st.bytes) == (1, 1, 0, 1, a.nbytes)


def test_uncertain_entry_is_recomputed_with_more_draws_then_served():
    cache = UncertaintyCache(CacheConfig(threshold=0.05, growth=4, max_draws=256))
    calls = []

    def compute(draws):
        calls.append(draws)
        return answer(float(draws or 1), 0.04, draws or 1)  # epistemic var 0.04: u = 0.2 / sqrt(S)

    assert cache.get("k", compute)[1] == "miss"  # S = 1, u = 0.2 > 0.05
    a, status = cache.get("k", compute)
    # S' = ceil(1 * (0.2 / 0.05)^2) = 16 draws: u = 0.2 / 4 = 0.05, at the threshold -> served next
    assert status == "recompute" and calls == [None, 16] and a.draws == 16
    assert a.uncertainty == pytest.approx(0.05)
    b, status = cache.get("k", compute)
    assert status == "hit" and b is a and cache.peek("k") is a
    st = cache.stats()
    assert (st.hits, st.misses, st.recomputes) == (1, 1, 1)


def test_recompute_grows_at_least_by_growth_and_saturates_at_max_draws():
    cache = UncertaintyCache(CacheConfig(threshold=0.05, growth=4, max_draws=8))
    seen = []
    compute = lambda d: seen.append(d) or answer(0.0, 0.0026, d or 1)  # u(1) = 0.051: barely above
    cache.get("k", compute)
    cache.get("k", compute)
    assert seen == [None, 4]  # need would be 2; growth 4 wins; u(4) = 0.0255 -> served
    cache2 = UncertaintyCache(CacheConfig(threshold=0.01, growth=4, max_draws=8))
    seen.clear()
    compute2 = lambda d: seen.append(d) or answer(0.0, 1.0, d or 1)
    for _ in range(4):
        cache2.get("k", compute2)
    assert seen == [None, 8]  # capped at max_draws, then served as is (saturated)
    assert cache2.stats().saturated == 2


def test_deterministic_answers_are_exact_and_always_served():
    assert answer(0.0, 5.0, 0).uncertainty == 0.0


def test_eviction_by_size_is_lru():
    one = answer(0.0, 0.0, 1).nbytes  # 16 float64 + 4 float64 = 160 bytes
    cache = UncertaintyCache(CacheConfig(max_bytes=3 * one))
    for k in "abc":
        cache.get(k, lambda d: answer(0.0, 0.0, 1))
    cache.get("a", lambda d: pytest.fail("a is cached"))  # a is now the most recent
    cache.get("d", lambda d: answer(0.0, 0.0, 1))  # evicts b, the least recently used
    assert cache.peek("b") is None and all(cache.peek(k) is not None for k in "acd")
    st = cache.stats()
    assert st.evictions == 1 and st.bytes == 3 * one and st.entries == 3
    big = CachedAnswer({"x": np.zeros(1000)}, np.zeros(4), 1)
    got, status = cache.get("big", lambda d: big)  # larger than the whole cache: served, not stored
    assert status == "miss" and got is big and cache.peek("big") is None and len(cache) == 3


def test_eight_threads_no_lost_or_torn_entries():
    cache = UncertaintyCache(CacheConfig(max_bytes=10 ** 7, threshold=0.05))
    keys = [f"k{i}" for i in range(12)]
    computes = {k: 0 for k in keys}
    lock = threading.Lock()
    barrier = threading.Barrier(8)
    errors = []

    def compute_for(k):
        def compute(draws):
            with lock:
                computes[k] += 1
            v = float(int(k[1:]))
            return CachedAnswer({"a": np.full(512, v), "b": np.full(512, -v)}, np.zeros(16), 1)
        return compute

    def worker(t):
        try:
            barrier.wait()
            rng = np.random.default_rng(t)
            for _ in range(200):
                k = keys[int(rng.integers(len(keys)))]
                got, _ = cache.get(k, compute_for(k))
                v = float(int(k[1:]))
                # every array of the entry belongs to this key, whole (no torn or foreign entry)
                assert np.all(got.outputs["a"] == v) and np.all(got.outputs["b"] == -v)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:1]
    st = cache.stats()
    assert st.hits + st.misses + st.recomputes == 8 * 200  # every call counted once
    assert st.misses == len(keys) and all(c == 1 for c in computes.values())  # one compute per key
    assert st.entries == len(keys) and st.evictions == 0
    with pytest.raises(ValueError):
        answer(0.0, 0.0, 1).outputs["allocation"][0] = 1.0  # stored arrays are read-only


def test_cache_key_separates_image_question_and_config():
    k = cache_key(b"img", "what?", {"budget": 640})
    assert k == cache_key(b"img", "what?", {"budget": 640})
    assert len({k, cache_key(b"img2", "what?", {"budget": 640}), cache_key(b"img", "why?", {"budget": 640}),
                cache_key(b"img", "what?", {"budget": 641})}) == 4


def test_compute_error_is_raised_and_nothing_stored():
    cache = UncertaintyCache()

    def bad(draws):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.get("k", bad)
    assert cache.peek("k") is None
    assert cache.get("k", lambda d: answer(0.0, 0.0, 1))[1] == "miss"


@pytest.mark.parametrize("kw", [dict(max_bytes=0), dict(threshold=0.0), dict(threshold=float("nan")),
                                dict(growth=1), dict(max_draws=0)])
def test_config_rejects_bad_values(kw):
    with pytest.raises((TypeError, ValueError), match=next(iter(kw))):
        CacheConfig(**kw)
