"""Uncertainty-aware answer cache: LRU by bytes, thread-safe, served only while certain enough.

An entry is the answer of the relevance stage for one (image content, question, config) key: its
output arrays, the posterior's epistemic variance per region and the number S of posterior draws
the answer averaged over. Its *uncertainty* is the epistemic standard error of that S-draw average,

    u = sqrt(max_i epistemic_var_i / S),

the part of the answer's spread that more draws remove (deterministic answers use the posterior
mean, S = inf, u = 0). A lookup serves a stored answer (a *hit*) only while u <= threshold;
otherwise the answer is recomputed with S' = ceil(S (u / threshold)^2) draws (at least
``growth`` x S, at most ``max_draws``), which brings u under the threshold, and the new answer
replaces the entry (a *recompute*). An answer already at ``max_draws`` is served as it is (nothing
more can be done; ``CacheStats.saturated`` counts those). A key not stored is a *miss*.

Concurrency: one lock guards the table and the counters; computations run outside it. Callers of
one key that is being computed wait for that computation (one compute per key at a time, never a
half-written entry). Entries larger than ``max_bytes`` are returned but not stored.
"""
from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from arrcoc.bayes._validate import check_int, check_real

__all__ = ["CacheConfig", "CachedAnswer", "CacheStats", "UncertaintyCache", "cache_key"]


@dataclass(frozen=True)
class CacheConfig:
    """Settings of ``UncertaintyCache`` (each default with its reason).

    max_bytes: 256 MiB holds ~3000 answers of the default model (~80 kB each: the 64 x 1280
        global-view tokens dominate) in a fraction of a serving host's memory.
    threshold: 0.05 on the relevance-logit scale: the default model's epistemic sd is ~0.2 on its
        most uncertain region, so a single Thompson draw (u ~ 0.2) is recomputed once with ~16
        draws, after which the cached answer's Monte Carlo error is far below the differences
        between regions' relevance that the allocation acts on.
    growth: 4: the least multiplier of the draws on a recompute, so an answer that keeps being
        requested converges in a few recomputes even when u is barely above the threshold.
    max_draws: 256 caps the cost of one recompute (draws are cheap: O(R (1 + E)) each).
    """

    max_bytes: int = 256 * 2 ** 20
    threshold: float = 0.05
    growth: int = 4
    max_draws: int = 256

    def __post_init__(self):
        check_int(self.max_bytes, "max_bytes", minimum=1)
        check_real(self.threshold, "threshold", low=0.0, low_open=True)
        check_int(self.growth, "growth", minimum=2)
        check_int(self.max_draws, "max_draws", minimum=1)


@dataclass(frozen=True)
class CachedAnswer:
    """One stored answer: ``outputs`` name -> array, ``epistemic_var`` (R,), ``draws`` S (0 = the
    posterior mean, exact)."""

    outputs: Mapping[str, np.ndarray]
    epistemic_var: np.ndarray
    draws: int

    def __post_init__(self):
        if not isinstance(self.outputs, Mapping) or not all(isinstance(v, np.ndarray) for v in self.outputs.values()):
            raise TypeError("outputs must be a mapping of names to numpy arrays")
        ev = np.asarray(self.epistemic_var, dtype=np.float64)
        if ev.ndim != 1 or not np.all(np.isfinite(ev)) or np.any(ev < 0):
            raise ValueError(f"epistemic_var must be a finite non-negative 1-D array, got {self.epistemic_var!r}")
        check_int(self.draws, "draws", minimum=0)
        # stored read-only: a caller cannot tear an entry other threads are reading
        frozen = {}
        for k, v in self.outputs.items():
            v = v.copy()
            v.setflags(write=False)
            frozen[k] = v
        object.__setattr__(self, "outputs", frozen)
        ev = ev.copy()
        ev.setflags(write=False)
        object.__setattr__(self, "epistemic_var", ev)

    @property
    def uncertainty(self) -> float:
        """sqrt(max epistemic_var / draws): 0 for the exact posterior mean (draws 0) or no regions."""
        if self.draws == 0 or self.epistemic_var.size == 0:
            return 0.0
        return math.sqrt(float(self.epistemic_var.max()) / self.draws)

    @property
    def nbytes(self) -> int:
        return int(sum(v.nbytes for v in self.outputs.values()) + self.epistemic_var.nbytes)


@dataclass
class CacheStats:
    """Counters of an ``UncertaintyCache`` (a snapshot)."""

    hits: int = 0
    misses: int = 0
    recomputes: int = 0
    saturated: int = 0  # hits served above the threshold because max_draws was reached
    evictions: int = 0
    entries: int = 0
    bytes: int = 0

    def __str__(self) -> str:
        return (f"cache: {self.hits} hits, {self.misses} misses, {self.recomputes} recomputes "
                f"({self.saturated} served at max draws), {self.evictions} evictions; "
                f"{self.entries} entries, {self.bytes / 2 ** 20:.2f} MiB")


def cache_key(image_bytes: bytes, question: str, config: Mapping) -> str:
    """sha256 over the image's bytes, the question and a JSON-like config mapping (sorted items)."""
    if not isinstance(image_bytes, (bytes, bytearray, memoryview)):
        raise TypeError(f"image_bytes must be bytes, got {type(image_bytes).__name__}")
    if not isinstance(question, str):
        raise TypeError(f"question must be a string, got {type(question).__name__}")
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    h = hashlib.sha256()
    h.update(hashlib.sha256(bytes(image_bytes)).digest())
    h.update(question.encode("utf-8") + b"\0")
    h.update(repr(sorted((str(k), repr(v)) for k, v in config.items())).encode("utf-8"))
    return h.hexdigest()


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    result: CachedAnswer | None = None
    error: BaseException | None = None


class UncertaintyCache:
    """See the module docstring. ``get(key, compute)`` -> (answer, status) with status one of
    "hit", "miss", "recompute"; ``compute(draws)`` returns a ``CachedAnswer`` (draws None = the
    model's own default on a miss)."""

    def __init__(self, config: CacheConfig | None = None):
        if config is None:
            config = CacheConfig()
        if not isinstance(config, CacheConfig):
            raise TypeError(f"config must be a CacheConfig, got {type(config).__name__}")
        self.config = config
        self._lock = threading.Lock()
        self._table: OrderedDict[str, CachedAnswer] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._bytes = 0
        self._stats = CacheStats()

    # ------------------------------------------------------------------ public
    def get(self, key: str, compute: Callable[[int | None], CachedAnswer]) -> tuple[CachedAnswer, str]:
        if not isinstance(key, str) or not key:
            raise TypeError(f"key must be a non-empty string, got {key!r}")
        if not callable(compute):
            raise TypeError(f"compute must be callable, got {type(compute).__name__}")
        while True:
            with self._lock:
                flight = self._flights.get(key)
                if flight is None:
                    entry = self._table.get(key)
                    if entry is not None and (entry.uncertainty <= self.config.threshold
                                              or entry.draws >= self.config.max_draws):
                        self._table.move_to_end(key)
                        self._stats.hits += 1
                        self._stats.saturated += entry.uncertainty > self.config.threshold
                        return entry, "hit"
                    status = "miss" if entry is None else "recompute"
                    draws = None if entry is None else self._more_draws(entry)
                    flight = self._flights[key] = _Flight()
                    break
            flight.done.wait()  # another thread computes this key: take its answer
            if flight.error is None and flight.result is not None:
                with self._lock:
                    self._stats.hits += 1
                return flight.result, "hit"
            # its compute failed: try again ourselves
        try:
            answer = compute(draws)
            if not isinstance(answer, CachedAnswer):
                raise TypeError(f"compute must return a CachedAnswer, got {type(answer).__name__}")
        except BaseException as e:
            with self._lock:
                del self._flights[key]
            flight.error = e
            flight.done.set()
            raise
        with self._lock:
            self._stats.misses += status == "miss"
            self._stats.recomputes += status == "recompute"
            self._store(key, answer)
            del self._flights[key]
        flight.result = answer
        flight.done.set()
        return answer, status

    def stats(self) -> CacheStats:
        with self._lock:
            s = CacheStats(**vars(self._stats))
            s.entries, s.bytes = len(self._table), self._bytes
            return s

    def peek(self, key: str) -> CachedAnswer | None:
        """The stored entry (no counters, no LRU move)."""
        with self._lock:
            return self._table.get(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._table)

    # ------------------------------------------------------------------ internal (lock held)
    def _more_draws(self, entry: CachedAnswer) -> int:
        cfg = self.config
        s = max(entry.draws, 1)
        need = math.ceil(s * (entry.uncertainty / cfg.threshold) ** 2)
        return int(min(cfg.max_draws, max(need, cfg.growth * s)))

    def _store(self, key: str, answer: CachedAnswer) -> None:
        old = self._table.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        size = answer.nbytes
        if size > self.config.max_bytes:
            return  # too large to keep: served once
        while self._table and self._bytes + size > self.config.max_bytes:
            _, evicted = self._table.popitem(last=False)
            self._bytes -= evicted.nbytes
            self._stats.evictions += 1
        self._table[key] = answer
        self._bytes += size
