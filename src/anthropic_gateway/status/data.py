"""What ``GET /status/data`` answers: the status page's figures for one range.

``15m`` and ``1h`` come from the in-memory buckets (a point per 10 seconds, every request the gateway
answered but its own operations routes); ``24h`` (a point per 15 minutes) and ``7d`` (per hour) from
the ledger (model requests only, as the ledger keeps them; no gateway-overhead figure, which the
ledger does not hold), kept for ``LEDGER_TTL`` seconds so a page refreshing every few seconds queries
the store only now and then. Everything else (in flight, backends, batches, the response cache, the
last requests, today's cost) is the current state whatever the range.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anthropic_gateway.errors import APIError, InvalidRequestError, shown
from anthropic_gateway.status.buckets import CLASSES, STEP, TOKEN_KINDS, Bucket, Histogram, StatusBuckets

if TYPE_CHECKING:
    from anthropic_gateway.http.gateway import Gateway


@dataclass(frozen=True, slots=True)
class Range:
    name: str
    seconds: int
    step: int  # seconds per point
    source: str  # "buckets" or "ledger"


RANGES = {r.name: r for r in (Range("15m", 900, STEP, "buckets"), Range("1h", 3600, STEP, "buckets"),
                              Range("24h", 86400, 900, "ledger"), Range("7d", 7 * 86400, 3600, "ledger"))}  # fmt: skip
LEDGER_TTL = 15.0
MAX_BATCHES = 20
QUANTILES = (0.5, 0.95, 0.99)


def range_of(value: str | None) -> Range:
    name = value or "15m"
    found = RANGES.get(name)
    if found is None:
        raise InvalidRequestError(f"range: expected one of {', '.join(RANGES)}; got '{shown(name, 40)}'")
    return found


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _pcts(h: Histogram) -> dict[str, float | None]:
    p50, p95, p99 = h.percentiles(QUANTILES)
    return {"p50": _ms(p50), "p95": _ms(p95), "p99": _ms(p99)}


def _ranked(series: dict[str, float], n: int = 20) -> list[dict[str, Any]]:
    top = sorted(series.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [{"name": k, "cost_usd": round(v, 6)} for k, v in top]


def _rate(n: float, seconds: float) -> float:
    return round(n / seconds, 4) if seconds else 0.0


def cache_read_share(tokens: dict[str, int]) -> float | None:
    """Cache reads over all input-side tokens (input, cache reads, cache writes)."""
    base = tokens["input"] + tokens["cache_read"] + tokens["cache_write"]
    return round(tokens["cache_read"] / base, 4) if base else None


_COUNTED = ("requests", *CLASSES, *TOKEN_KINDS, "cost_per_hour")
_MEASURED = ("p50", "p95", "p99", "ttft_p50")
_EMPTY_POINT = (*(0 for _ in _COUNTED), *(None for _ in _MEASURED))
_NAMES = (*_COUNTED, *_MEASURED)


class _Acc:
    """Sums over buckets, and their points (the series)."""

    __slots__ = ("backends", "by_key", "by_model", "classes", "cost", "hits", "latency", "misses", "model_requests",
                 "overhead", "points", "requests", "streams", "tokens", "ttft")  # fmt: skip

    def __init__(self) -> None:
        self.latency, self.ttft, self.overhead = Histogram(), Histogram(), Histogram()
        self.classes = [0] * 5
        self.tokens = [0, 0, 0, 0]
        self.requests = self.model_requests = self.streams = self.hits = self.misses = 0
        self.cost = 0.0
        self.by_model: dict[str, float] = {}
        self.by_key: dict[str, float] = {}
        self.backends: dict[str, list[float]] = {}
        self.points: list[tuple[Any, ...]] = []

    def copy(self) -> _Acc:
        c = _Acc()
        for h, mine in ((c.latency, self.latency), (c.ttft, self.ttft), (c.overhead, self.overhead)):
            h.merge(mine)
        c.classes, c.tokens = list(self.classes), list(self.tokens)
        c.requests, c.model_requests, c.streams = self.requests, self.model_requests, self.streams
        c.hits, c.misses, c.cost = self.hits, self.misses, self.cost
        c.by_model, c.by_key = dict(self.by_model), dict(self.by_key)
        c.backends = {k: list(v) for k, v in self.backends.items()}
        c.points = list(self.points)
        return c

    def add(self, b: Bucket | None, done: bool) -> None:
        """One bucket; ``done`` when its 10 seconds are over (its point is kept on it)."""
        if b is None:
            self.points.append(_EMPTY_POINT)
            return
        point = b.point if done else None
        if point is None:
            point = _point(b)
            if done:
                b.point = point
        self.points.append(point)
        self.requests += b.requests
        self.model_requests += b.model_requests
        self.streams += b.streams
        self.hits += b.cache_hits
        self.misses += b.cache_misses
        self.cost += b.cost
        classes, tokens = self.classes, self.tokens
        for i in range(5):
            classes[i] += b.classes[i]
        for i in range(4):
            tokens[i] += b.tokens[i]
        self.latency.merge(b.latency)
        self.ttft.merge(b.ttft)
        self.overhead.merge(b.overhead)
        for series, mine in ((b.cost_by_model, self.by_model), (b.cost_by_key, self.by_key)):
            for name, v in series.items():
                mine[name] = mine.get(name, 0.0) + v
        for name, (n, errors, seconds) in b.backends.items():
            acc = self.backends.get(name)
            if acc is None:
                acc = self.backends[name] = [0, 0, 0.0]
            acc[0] += n
            acc[1] += errors
            acc[2] += seconds


def _point(b: Bucket) -> tuple[Any, ...]:
    per_second = 1 / STEP
    p50, p95, p99 = b.latency.percentiles(QUANTILES)
    return (round(b.requests * per_second, 3), *(round(n * per_second, 3) for n in b.classes),
            *(round(n * per_second, 2) for n in b.tokens), round(b.cost * 3600 / STEP, 6),
            _ms(p50), _ms(p95), _ms(p99), _ms(b.ttft.percentiles((0.5,))[0]))  # fmt: skip


def from_buckets(buckets: StatusBuckets, rng: Range, now: float) -> dict[str, Any]:
    """The series and totals of the last ``rng.seconds`` from the ring. The sums over the buckets
    whose 10 seconds are over are kept until the next bucket starts: a page polling every 2 seconds
    adds only the current bucket to them four times in five."""
    window = buckets.window(rng.seconds, now)
    end_slot = int(now // STEP)
    t0 = (end_slot - len(window) + 1) * STEP
    kept = buckets.sums.get(rng.seconds)
    if kept is None or kept[0] != end_slot:
        done = _Acc()
        for b in window[:-1]:
            done.add(b, True)
        buckets.sums[rng.seconds] = kept = (end_slot, done)
        buckets.sums_slot = end_slot
    acc = kept[1].copy()
    acc.add(window[-1], False)
    span = len(window) * STEP
    columns = list(zip(*acc.points, strict=True))
    series: dict[str, Any] = {"t": [t0 + i * STEP for i in range(len(window))]}
    series.update((name, list(col)) for name, col in zip(_NAMES, columns, strict=True))
    token_totals = dict(zip(TOKEN_KINDS, acc.tokens, strict=True))
    classes, requests, hits, misses, cost = acc.classes, acc.requests, acc.hits, acc.misses, acc.cost
    errors = classes[3] + classes[4]
    totals = {
        "requests": requests, "model_requests": acc.model_requests, "streams": acc.streams,
        "requests_per_second": _rate(requests, span), "errors": errors, "errors_per_second": _rate(errors, span),
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "by_class": dict(zip(CLASSES, classes, strict=True)),
        "latency_ms": _pcts(acc.latency), "ttft_ms": _pcts(acc.ttft), "overhead_ms": _pcts(acc.overhead),
        "tokens": token_totals, "tokens_per_second": {k: _rate(v, span) for k, v in token_totals.items()},
        "cache_read_share": cache_read_share(token_totals),
        "cost_usd": round(cost, 6), "cost_per_hour": round(cost * 3600 / span, 6) if span else 0.0,
        "cost_by_model": _ranked(acc.by_model), "cost_by_key": _ranked(acc.by_key),
        "response_cache": {"hits": hits, "misses": misses,
                           "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None},
    }  # fmt: skip
    backend_stats = {
        name: {"requests": int(n), "errors": int(e), "error_rate": round(e / n, 4) if n else 0.0,
               "mean_upstream_ms": round(sec * 1000 / n, 1) if n else None}
        for name, (n, e, sec) in acc.backends.items()
    }  # fmt: skip
    return {"range": rng.name, "source": rng.source, "step": STEP, "start": t0, "end": t0 + span,
            "series": series, "totals": totals, "backend_stats": backend_stats}


# --- the ledger's ranges ---------------------------------------------------------------------------

# The bucket number of ``ts``: SQLite's CAST truncates (ts is never negative); PostgreSQL's rounds,
# so it floors first (as the ledger's day grouping does).
_BUCKET = {"sqlite": "CAST(ts / ? AS INTEGER)", "postgresql": "CAST(FLOOR(ts / ?) AS BIGINT)"}
_SERIES_SQL = (
    "SELECT {bucket} AS b, COUNT(*), "
    + ", ".join(f"SUM(CASE WHEN status >= {c}00 AND status < {c + 1}00 THEN 1 ELSE 0 END)" for c in range(1, 6))
    + ", SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), "
    "SUM(COALESCE(cost_usd, 0)), AVG(latency_ms), AVG(ttft_ms), SUM(stream) "
    "FROM ledger WHERE ts >= ? AND ts < ? GROUP BY b ORDER BY b"
)
_NTH = "SELECT {col} FROM ledger WHERE ts >= ? AND ts < ? AND {col} IS NOT NULL ORDER BY {col} LIMIT 1 OFFSET ?"
_COUNT = "SELECT COUNT({col}) FROM ledger WHERE ts >= ? AND ts < ?"


async def from_ledger(gw: Gateway, rng: Range, now: float) -> dict[str, Any]:
    step = rng.step
    end_point = int(now // step)
    n = rng.seconds // step
    t0 = (end_point - n + 1) * step
    end = (end_point + 1) * step
    await gw.ledger.flush()
    sql = _SERIES_SQL.format(bucket=_BUCKET[gw.store.dialect])
    rows = {int(r[0]): r for r in await gw.store.fetchall(sql, (step, t0, end))}
    s: dict[str, list[Any]] = {name: [] for name in ("requests", *CLASSES, "p50", "p95", "p99", "ttft_p50", "mean_ms",
                                                      "mean_ttft_ms", *TOKEN_KINDS, "cost_per_hour")}  # fmt: skip
    classes = [0] * 5
    tokens = [0, 0, 0, 0]
    requests = streams = 0
    cost = 0.0
    for i in range(n):
        r = rows.get(t0 // step + i)
        if r is None:
            for name in ("requests", *CLASSES, *TOKEN_KINDS, "cost_per_hour"):
                s[name].append(0)
            for name in ("p50", "p95", "p99", "ttft_p50", "mean_ms", "mean_ttft_ms"):
                s[name].append(None)
            continue
        count = int(r[1])
        requests += count
        s["requests"].append(round(count / step, 4))
        for c in range(5):
            v = int(r[2 + c] or 0)
            classes[c] += v
            s[CLASSES[c]].append(round(v / step, 4))
        for k in range(4):
            v = int(r[7 + k] or 0)
            tokens[k] += v
            s[TOKEN_KINDS[k]].append(round(v / step, 3))
        cost += float(r[11] or 0.0)
        s["cost_per_hour"].append(round(float(r[11] or 0.0) * 3600 / step, 6))
        for name in ("p50", "p95", "p99", "ttft_p50"):
            s[name].append(None)
        s["mean_ms"].append(None if r[12] is None else round(float(r[12]), 1))
        s["mean_ttft_ms"].append(None if r[13] is None else round(float(r[13]), 1))
        streams += int(r[14] or 0)
    span = n * step
    token_totals = dict(zip(TOKEN_KINDS, tokens, strict=True))
    errors = classes[3] + classes[4]
    by_model = {r["group"]: r["cost_usd"] for r in await gw.ledger.totals(t0, end, "model")}
    by_key = {r["group"]: r["cost_usd"] for r in await gw.ledger.totals(t0, end, "key")}
    totals = {
        "requests": requests, "model_requests": requests, "streams": streams,
        "requests_per_second": _rate(requests, span), "errors": errors, "errors_per_second": _rate(errors, span),
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "by_class": dict(zip(CLASSES, classes, strict=True)),
        "latency_ms": await _ledger_pcts(gw, "latency_ms", t0, end),
        "ttft_ms": await _ledger_pcts(gw, "ttft_ms", t0, end),
        "overhead_ms": {"p50": None, "p95": None, "p99": None},
        "tokens": token_totals, "tokens_per_second": {k: _rate(v, span) for k, v in token_totals.items()},
        "cache_read_share": cache_read_share(token_totals),
        "cost_usd": round(cost, 6), "cost_per_hour": round(cost * 3600 / span, 6),
        "cost_by_model": _ranked(by_model), "cost_by_key": _ranked(by_key),
        "response_cache": None,
    }  # fmt: skip
    return {"range": rng.name, "source": rng.source, "step": step, "start": t0, "end": end,
            "series": {"t": [t0 + i * step for i in range(n)], **s}, "totals": totals, "backend_stats": {}}  # fmt: skip


async def _ledger_pcts(gw: Gateway, col: str, start: float, end: float) -> dict[str, float | None]:
    row = await gw.store.fetchone(_COUNT.format(col=col), (start, end))
    count = int(row[0]) if row else 0
    out: dict[str, float | None] = {}
    for name, q in zip(("p50", "p95", "p99"), QUANTILES, strict=True):
        if not count:
            out[name] = None
            continue
        found = await gw.store.fetchone(_NTH.format(col=col), (start, end, max(math.ceil(q * count) - 1, 0)))
        out[name] = None if found is None else round(float(found[0]), 1)
    return out


# --- the whole answer ------------------------------------------------------------------------------


class StatusData:
    """Builds the answers; keeps the ledger ranges and the ledger's part of today for a while."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._ledger: dict[str, tuple[float, dict[str, Any]]] = {}
        self._seed_day = -1
        self._seed: tuple[float, int, dict[str, list[float]], dict[str, list[float]]] = (0.0, 0, {}, {})

    async def build(self, rng: Range, now: float | None = None) -> dict[str, Any]:
        gw = self.gw
        now = time.time() if now is None else now
        if rng.source == "buckets":
            body = from_buckets(gw.status, rng, now)
        else:
            kept = self._ledger.get(rng.name)
            if kept is None or time.monotonic() - kept[0] > LEDGER_TTL:
                try:
                    kept = (time.monotonic(), await from_ledger(gw, rng, now))
                except Exception as err:  # the store is down or was never opened
                    raise APIError(f"range: {rng.name} is read from the ledger, which cannot be read now "
                                   f"({type(err).__name__}); 15m and 1h still answer", status=503) from None  # fmt: skip
                self._ledger[rng.name] = kept
            body = dict(kept[1])
        life = gw.lifecycle
        body["now"] = round(now, 3)
        body["in_flight"] = {"requests": max(life.requests - 1, 0), "streams": life.streams}  # not this request
        body["backends"] = self.backends(body.pop("backend_stats"))
        body["batches"] = await self.batches()
        cache = gw.response_cache.stats
        lookups = cache.hits + cache.coalesced + cache.misses
        body["response_cache"] = {"enabled": gw.settings.response_cache, "hits": cache.hits, "misses": cache.misses,
                                  "coalesced": cache.coalesced, "bypassed": cache.bypassed,
                                  "hit_ratio": round((cache.hits + cache.coalesced) / lookups, 4) if lookups else None}  # fmt: skip
        body["today"] = await self.today(now)
        body["recent"] = [r.as_json() for r in reversed(gw.status.recent)]
        return body

    def backends(self, stats: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for name in self.gw.router.backends:
            probe = self.gw.prober.results.get(name)
            out.append({"name": name, "probe": probe.as_json() if probe is not None else None,
                        **stats.get(name, {"requests": 0, "errors": 0, "error_rate": 0.0, "mean_upstream_ms": None})})  # fmt: skip
        return out

    async def batches(self) -> list[dict[str, Any]]:
        engine = self.gw.batches
        if engine is None or not engine.running:
            return []
        out = []
        for batch_id, state in engine.unfinished()[:MAX_BATCHES]:
            try:
                counts = await engine.live_counts(batch_id)
            except Exception:  # the store failing: the rest of the page still answers
                continue
            out.append({"id": batch_id, "status": state, "total": sum(counts.values()), "counts": counts})
        return out

    async def today(self, now: float) -> dict[str, Any]:
        """Today (UTC): the ledger's rows from before this process started, plus this process's records."""
        day = int(now // 86400)
        midnight = day * 86400.0
        buckets = self.gw.status
        if self._seed_day != day:
            self._seed = await self._seed_of(midnight, buckets.created_at)
            self._seed_day = day
        cost, requests, models, keys = self._seed
        live = buckets.today
        if live.day == day:
            cost += live.cost
            requests += live.requests
            models = _merged(models, live.by_model)
            keys = _merged(keys, live.by_key)
        return {"date": time.strftime("%Y-%m-%d", time.gmtime(midnight)), "requests": requests,
                "cost_usd": round(cost, 6), "by_model": _pairs(models), "by_key": _pairs(keys)}  # fmt: skip

    async def _seed_of(self, start: float, end: float) -> tuple[float, int, dict[str, list[float]], dict[str, list[float]]]:
        if end <= start:
            return 0.0, 0, {}, {}
        try:
            models = await self.gw.ledger.totals(start, end, "model")
            keys = await self.gw.ledger.totals(start, end, "key")
        except Exception:  # no store: today is this process's records
            return 0.0, 0, {}, {}
        return (sum(r["cost_usd"] for r in models), sum(r["requests"] for r in models),
                {r["group"]: [r["requests"], r["cost_usd"]] for r in models},
                {r["group"]: [r["requests"], r["cost_usd"]] for r in keys})  # fmt: skip


def _merged(a: dict[str, list[float]], b: dict[str, list[float]]) -> dict[str, list[float]]:
    out = {k: list(v) for k, v in a.items()}
    for k, (n, c) in b.items():
        acc = out.setdefault(k, [0, 0.0])
        acc[0] += n
        acc[1] += c
    return out


def _pairs(series: dict[str, list[float]], n: int = 20) -> list[dict[str, Any]]:
    top = sorted(series.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))[:n]
    return [{"name": k, "requests": int(v[0]), "cost_usd": round(v[1], 6)} for k, v in top]
