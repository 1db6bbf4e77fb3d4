"""The status page's memory: a Recorder sink of 360 ring buckets of 10 seconds (the last hour), the
last 50 requests, and today's cost by model and key label.

``record()`` runs once per finished request, on the event loop, after the last byte: a handful of
integer and dictionary updates in the bucket of the current 10 seconds (a bucket is reused in place
once its slot comes round again), O(1) whatever the traffic. Latencies go into histograms of
logarithmic bins (15 % wide) from which percentiles are read; a percentile is the upper edge of its
bin, capped at the largest value seen, so it is at most 15 % above the true value.

Label values that clients choose (model names) are bounded per bucket and per day: past
``MAX_NAMES`` distinct names, the rest count as ``other``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from anthropic_gateway.ops.ledger import LEDGERED_ROUTES
from anthropic_gateway.ops.metrics import upstream_error
from anthropic_gateway.ops.record import RequestRecord

STEP = 10  # seconds per bucket
SLOTS = 360  # one hour
RECENT = 50
MAX_NAMES = 100
OTHER = "other"
# The gateway's own operations routes: the status page polling itself is not traffic.
OPS_ROUTES = frozenset({"/", "/api/hello", "/openapi.json", "/health", "/health/ready", "/health/detailed", "/metrics",
                        "/v1/usage", "/status", "/status/data", "/status/static/{name}", "/admin/keys",
                        "/admin/keys/{label}", "/v1/messages/cache/stats", "/v1/messages/cache/clear",
                        "/v1/messages/cache/cleanup"})  # fmt: skip
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")

# Histogram bins: bin i holds values in (LOW * RATIO**(i-1), LOW * RATIO**i]; bin 0 everything <= LOW.
LOW = 0.00005  # 50 µs
RATIO = 1.15
_LOG_RATIO = math.log(RATIO)
MAX_BIN = 130  # LOW * 1.15**130 ≈ 3.8e3 s: anything longer is in the last bin
_log, _ceil = math.log, math.ceil


def bin_of(seconds: float) -> int:
    if seconds <= LOW:
        return 0
    return min(math.ceil(math.log(seconds / LOW) / _LOG_RATIO - 1e-9), MAX_BIN)


def upper_edge(b: int) -> float:
    return LOW * RATIO**b


@dataclass(slots=True)
class Histogram:
    bins: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total: float = 0.0
    peak: float = 0.0

    def observe(self, seconds: float) -> None:
        # bin_of, written out (one call less per observation)
        b = 0 if seconds <= LOW else min(_ceil(_log(seconds / LOW) / _LOG_RATIO - 1e-9), MAX_BIN)
        bins = self.bins
        bins[b] = bins.get(b, 0) + 1
        self.count += 1
        self.total += seconds
        if seconds > self.peak:
            self.peak = seconds

    def merge(self, other: Histogram) -> None:
        bins = self.bins
        for b, n in other.bins.items():
            bins[b] = bins.get(b, 0) + n
        self.count += other.count
        self.total += other.total
        if other.peak > self.peak:
            self.peak = other.peak

    def percentiles(self, qs: Iterable[float]) -> list[float | None]:
        """Each quantile (0..1) in seconds, None without observations."""
        if not self.count:
            return [None for _ in qs]
        order = sorted(self.bins.items())
        out: list[float | None] = []
        for q in qs:
            rank = max(1, math.ceil(q * self.count))
            seen = 0
            for b, n in order:
                seen += n
                if seen >= rank:
                    out.append(min(upper_edge(b), self.peak))
                    break
        return out


@dataclass(slots=True)
class Bucket:
    slot: int = -1  # int(time / STEP) of the 10 seconds it holds
    requests: int = 0
    classes: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])
    model_requests: int = 0
    streams: int = 0
    latency: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)
    overhead: Histogram = field(default_factory=Histogram)
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    cost: float = 0.0
    cost_by_model: dict[str, float] = field(default_factory=dict)
    cost_by_key: dict[str, float] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    # backend → [requests, errors, latency seconds summed]
    backends: dict[str, list[float]] = field(default_factory=dict)
    point: tuple[Any, ...] | None = None  # its figures for a chart, once its 10 seconds are over (data.py)

    def reset(self, slot: int) -> None:
        self.slot = slot
        self.requests = self.model_requests = self.streams = self.cache_hits = self.cache_misses = 0
        self.classes = [0, 0, 0, 0, 0]
        self.latency, self.ttft, self.overhead = Histogram(), Histogram(), Histogram()
        self.tokens = [0, 0, 0, 0]
        self.cost = 0.0
        self.cost_by_model, self.cost_by_key, self.backends = {}, {}, {}
        self.point = None


@dataclass(slots=True)
class Recent:
    """One row of the last-requests table: no bodies, no keys."""

    at: float
    key_label: str | None
    model: str | None
    status: int
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None
    stream: bool

    def as_json(self) -> dict[str, Any]:
        return {"at": round(self.at, 3), "key": self.key_label, "model": self.model, "status": self.status,
                "latency_ms": round(self.latency_ms, 1), "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cache_read_tokens": self.cache_read_tokens,
                "cache_write_tokens": self.cache_write_tokens, "cost_usd": self.cost_usd,
                "stream": self.stream}  # fmt: skip


@dataclass(slots=True)
class Today:
    """Cost and requests since 00:00 UTC by model and key label, from this process's records (the
    ledger's earlier rows are added when the page first asks: see data.py)."""

    day: int = -1
    cost: float = 0.0
    requests: int = 0
    by_model: dict[str, list[float]] = field(default_factory=dict)  # model → [requests, cost]
    by_key: dict[str, list[float]] = field(default_factory=dict)

    def reset(self, day: int) -> None:
        self.day, self.cost, self.requests = day, 0.0, 0
        self.by_model, self.by_key = {}, {}


def _add(series: dict[str, float], name: str, n: float) -> None:
    if name in series or len(series) < MAX_NAMES:
        series[name] = series.get(name, 0.0) + n
    else:
        series[OTHER] = series.get(OTHER, 0.0) + n


def _add_pair(series: dict[str, list[float]], name: str, cost: float) -> None:
    if name not in series and len(series) >= MAX_NAMES:
        name = OTHER
    pair = series.get(name)
    if pair is None:
        series[name] = [1, cost]
    else:
        pair[0] += 1
        pair[1] += cost


class StatusBuckets:
    """The sink. ``clock`` gives wall-clock seconds (tests pass their own)."""

    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self.ring: list[Bucket] = [Bucket() for _ in range(SLOTS)]
        # The last requests' rows as plain tuples (a tuple costs a fraction of a Recent per request);
        # ``recent`` makes the rows when the page asks.
        self._recent: deque[tuple[Any, ...]] = deque(maxlen=RECENT)
        self.today = Today()
        self.created_at: float = clock()
        # data.py's sums over the buckets already over, per window length: (slot they end before, sums).
        self.sums: dict[int, tuple[int, Any]] = {}
        self.sums_slot = 0

    @property
    def recent(self) -> list[Recent]:
        """The last requests, oldest first."""
        return [Recent(*row) for row in self._recent]

    def bucket(self, now: float) -> Bucket:
        slot = int(now // STEP)
        b = self.ring[slot % SLOTS]
        if b.slot != slot:
            b.reset(slot)
        if slot < self.sums_slot:  # a record for 10 seconds taken as over (the clock went back): sum again
            self.sums.clear()
            self.sums_slot = 0
            b.point = None
        return b

    def record(self, rec: RequestRecord) -> None:
        if rec.route in OPS_ROUTES:
            return
        now = self.clock()
        slot = int(now // STEP)
        b = self.ring[slot % SLOTS]
        if b.slot != slot or slot < self.sums_slot:  # bucket()'s work: a new 10 s, or the clock went back
            b = self.bucket(now)
        b.requests += 1
        cls = rec.status // 100 - 1
        if 0 <= cls < 5:
            b.classes[cls] += 1
        if rec.route not in LEDGERED_ROUTES:
            return
        b.model_requests += 1
        end = rec.finished  # set by the Recorder: rec.duration without its property call
        duration = (end if end is not None else time.perf_counter()) - rec.started
        b.latency.observe(duration)
        if rec.stream:
            b.streams += 1
        if rec.first_token_at is not None:
            b.ttft.observe(rec.first_token_at - rec.started)
        upstream = rec.upstream_seconds
        if upstream > 0:
            b.overhead.observe(duration - upstream if duration > upstream else 0.0)
        tokens = b.tokens
        tokens[0] += rec.input_tokens
        tokens[1] += rec.output_tokens
        tokens[2] += rec.cache_read_tokens
        tokens[3] += rec.cache_write_tokens
        model = rec.model or ""
        key = rec.key_label or ""
        cost = rec.cost_usd or 0.0
        if cost:
            b.cost += cost
            _add(b.cost_by_model, model, cost)
            _add(b.cost_by_key, key, cost)
        cache = rec.cache
        if cache is not None:
            if cache == "hit":
                b.cache_hits += 1
            elif cache == "miss":
                b.cache_misses += 1
        backend = rec.backend
        if backend is not None:
            stats = b.backends.get(backend)
            if stats is None:
                stats = b.backends[backend] = [0, 0, 0.0]
            stats[0] += 1
            if rec.error_type is not None and upstream_error(rec) is not None:
                stats[1] += 1
            stats[2] += upstream
        if rec.model is not None:  # what the ledger keeps: today's totals and the table
            day = int(rec.started_at // 86400)
            today = self.today
            if today.day != day:
                today.reset(day)
            today.requests += 1
            today.cost += cost
            pair = today.by_model.get(model)
            if pair is None:
                _add_pair(today.by_model, model, cost)
            else:
                pair[0] += 1
                pair[1] += cost
            pair = today.by_key.get(key)
            if pair is None:
                _add_pair(today.by_key, key, cost)
            else:
                pair[0] += 1
                pair[1] += cost
        self._recent.append((now, rec.key_label, rec.model, rec.status, duration * 1000, rec.input_tokens,
                             rec.output_tokens, rec.cache_read_tokens, rec.cache_write_tokens, rec.cost_usd,
                             rec.stream))  # fmt: skip

    def window(self, seconds: int, now: float | None = None) -> list[Bucket | None]:
        """The buckets of the last ``seconds`` (at most an hour), oldest first; None for 10 seconds
        without a request."""
        end = int((self.clock() if now is None else now) // STEP)
        n = min(seconds // STEP, SLOTS)
        out: list[Bucket | None] = []
        for slot in range(end - n + 1, end + 1):
            b = self.ring[slot % SLOTS]
            out.append(b if b.slot == slot else None)
        return out
