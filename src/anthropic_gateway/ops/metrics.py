"""Prometheus metrics: a sink on the Recorder, fed once per finished request from its record.

Recording is a few dictionary updates on the event loop, after the last byte (no per-chunk work, no
lock); prometheus-client turns them into metric families at scrape time through a custom collector in
a registry of this gateway's own (never the process-global one), and renders the text format. That
keeps prometheus-client's import (~30-100 ms, mostly its exposition's http.server) out of start-up:
it loads at the first scrape.

Label values stay bounded: a model is a configured alias, a Claude tier (opus / sonnet / haiku) or
``other``; a backend is a configured backend; a route is a route template of the table (or
``other``); a key is ``open``, ``admin``, a configured key's label, or ``passthrough`` — never a
client's raw string or a request id.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from anthropic_gateway import __version__
from anthropic_gateway.ops.ledger import LEDGERED_ROUTES
from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.routing import tier_of

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
OTHER = "other"
MAX_REMEMBERED = 1024  # model names whose label is remembered
_STATUS = {n: str(n) for n in range(100, 600)}  # a status's label without formatting it per request

Labels = tuple[str, ...]
_bisect = bisect.bisect_left
Collect = Callable[[], Iterable[Any]]  # yields prometheus_client Metric families


class _Histogram:
    """Per label set: a count per bucket (the last one is +Inf) and the sum."""

    __slots__ = ("bounds", "series")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.series: dict[Labels, list[float]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        s[_bisect(self.bounds, value)] += 1  # Prometheus buckets are "less than or equal"
        s[-1] += value

    def family(self, name: str, doc: str, label_names: list[str]) -> Any:
        from prometheus_client.core import HistogramMetricFamily

        fam = HistogramMetricFamily(name, doc, labels=label_names)
        for labels, s in sorted(self.series.items()):
            cumulative, buckets = 0.0, []
            for bound, n in zip((*(str(b) for b in self.bounds), "+Inf"), s[:-1], strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            fam.add_metric(list(labels), buckets, s[-1])
        return fam


class Metrics:
    """The metrics sink. ``aliases`` and ``backends`` are the configured names label values may take;
    ``in_flight`` gives (requests, streams) at scrape time."""

    def __init__(self, aliases: Iterable[str], backends: Iterable[str], in_flight: Callable[[], tuple[int, int]]) -> None:
        self.aliases = frozenset(aliases)
        self.backends = frozenset(backends)
        self.in_flight = in_flight
        self.requests: dict[Labels, float] = {}  # route, model, status
        self.tokens: dict[Labels, float] = {}  # kind, model
        self.cost: dict[Labels, float] = {}  # model, key
        self.upstream_errors: dict[Labels, float] = {}  # backend, type
        self.retries: dict[Labels, float] = {}  # backend
        self.fallbacks: dict[Labels, float] = {}  # model
        self.duration = _Histogram(LATENCY_BUCKETS)  # route, model
        self.ttft = _Histogram(LATENCY_BUCKETS)  # model
        self.upstream = _Histogram(LATENCY_BUCKETS)  # backend
        self.overhead = _Histogram(OVERHEAD_BUCKETS)  # route
        self.collectors: list[Collect] = []  # other sections' metric families (add_collector)
        self._registry: CollectorRegistry | None = None
        self._tiers: dict[str, str] = {}  # model name → its label, for names without a configured alias

    # --- the sink -----------------------------------------------------------------------------

    def record(self, rec: RequestRecord) -> None:
        # Written out rather than through helpers: this runs for every request, and a call per
        # counter or per histogram was most of its cost.
        route = rec.route or OTHER
        alias = rec.alias
        model = alias if alias is not None and alias in self.aliases and rec.model is not None else self.model_label(rec)
        status = _STATUS.get(rec.status) or str(rec.status)
        requests = self.requests
        key: Labels = (route, model, status)
        requests[key] = requests.get(key, 0) + 1
        end = rec.finished  # set by the Recorder: rec.duration without its property call
        duration = (end if end is not None else time.perf_counter()) - rec.started
        # _Histogram.observe written out for the two histograms every Messages request has
        labels: Labels = (route, model)
        series = self.duration.series
        s = series.get(labels)
        if s is None:
            s = series[labels] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        s[_bisect(LATENCY_BUCKETS, duration)] += 1
        s[-1] += duration
        if rec.model is None or rec.route not in LEDGERED_ROUTES:  # count_tokens runs no model
            return
        if rec.first_token_at is not None:
            self.ttft.observe((model,), rec.first_token_at - rec.started)
        backend = rec.backend if rec.backend in self.backends else OTHER
        upstream = rec.upstream_seconds
        if upstream > 0:
            labels = (backend,)
            series = self.upstream.series
            s = series.get(labels)
            if s is None:
                s = series[labels] = [0.0] * (len(LATENCY_BUCKETS) + 2)
            s[_bisect(LATENCY_BUCKETS, upstream)] += 1
            s[-1] += upstream
            self.overhead.observe((route,), duration - upstream if duration > upstream else 0.0)
        tokens = self.tokens
        if rec.input_tokens:
            key = ("input", model)
            tokens[key] = tokens.get(key, 0) + rec.input_tokens
        if rec.output_tokens:
            key = ("output", model)
            tokens[key] = tokens.get(key, 0) + rec.output_tokens
        if rec.cache_read_tokens:
            key = ("cache_read", model)
            tokens[key] = tokens.get(key, 0) + rec.cache_read_tokens
        if rec.cache_write_tokens:
            key = ("cache_write", model)
            tokens[key] = tokens.get(key, 0) + rec.cache_write_tokens
        if rec.cost_usd:
            _inc(self.cost, (model, key_label(rec.key_label)), rec.cost_usd)
        if rec.error_type is not None:
            error = upstream_error(rec)
            if error is not None:
                _inc(self.upstream_errors, (backend, error))
        if rec.retries:
            _inc(self.retries, (backend,), rec.retries)
        if rec.fallbacks:
            _inc(self.fallbacks, (model,), len(rec.fallbacks))

    def model_label(self, rec: RequestRecord) -> str:
        model = rec.model
        if model is None:
            return ""
        alias = rec.alias
        if alias is not None and alias in self.aliases:
            return alias
        label = self._tiers.get(model)
        if label is None:  # a client's name: its tier, remembered for the next request (bounded)
            label = tier_of(model) or OTHER
            if len(self._tiers) >= MAX_REMEMBERED:
                self._tiers.clear()
            self._tiers[model] = label
        return label

    # --- the scrape ---------------------------------------------------------------------------

    def add_collector(self, collect: Collect) -> None:
        """Another section's metrics: ``collect()`` yields prometheus_client metric families."""
        self.collectors.append(collect)

    @property
    def loaded(self) -> bool:
        return self._registry is not None

    def load(self) -> None:
        """Import prometheus-client and build the registry (in a thread: the first scrape's import
        must not stall the event loop)."""
        import prometheus_client.exposition  # noqa: F401

        self.registry()

    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            from prometheus_client.registry import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(self)  # type: ignore[arg-type]
        return self._registry

    def render(self) -> tuple[bytes, str]:
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry()), CONTENT_TYPE_LATEST

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        def counter(name: str, doc: str, labels: list[str], series: dict[Labels, float]) -> Any:
            fam = CounterMetricFamily(name, doc, labels=labels)
            for values, n in sorted(series.items()):
                fam.add_metric(list(values), n)
            return fam

        yield InfoMetricFamily("gateway_build", "The gateway's version", value={"version": __version__})
        yield counter("gateway_requests", "HTTP requests answered", ["route", "model", "status"], self.requests)
        yield self.duration.family("gateway_request_duration_seconds", "Time from the request to the last byte",
                                   ["route", "model"])  # fmt: skip
        yield self.ttft.family("gateway_time_to_first_token_seconds", "Time to the first streamed content",
                               ["model"])  # fmt: skip
        yield self.upstream.family("gateway_upstream_duration_seconds", "Time spent waiting on the upstream",
                                   ["backend"])  # fmt: skip
        yield self.overhead.family("gateway_overhead_seconds", "Request time minus upstream time", ["route"])
        yield counter("gateway_tokens", "Tokens by kind (input, output, cache_read, cache_write)",
                      ["kind", "model"], self.tokens)  # fmt: skip
        yield counter("gateway_cost_usd", "Cost in US dollars", ["model", "key"], self.cost)
        yield counter("gateway_upstream_errors", "Requests that ended with an upstream error, by Anthropic error "
                      "type", ["backend", "type"], self.upstream_errors)  # fmt: skip
        yield counter("gateway_retries", "Upstream retries", ["backend"], self.retries)
        yield counter("gateway_fallbacks", "Fallback models tried", ["model"], self.fallbacks)
        requests, streams = self.in_flight()
        gauge = GaugeMetricFamily("gateway_in_flight", "Requests and streams in flight", labels=["kind"])
        gauge.add_metric(["requests"], requests)
        gauge.add_metric(["streams"], streams)
        yield gauge
        for collect in self.collectors:
            yield from collect()


def _inc(series: dict[Labels, float], labels: Labels, n: float = 1) -> None:
    series[labels] = series.get(labels, 0) + n


def key_label(label: str | None) -> str:
    """A key label for a metric: configured keys' labels as they are; a passthrough client's own key
    (any string a client sends) collapses to ``passthrough``."""
    if label is None:
        return ""
    if label in ("open", "admin") or label.startswith("key-"):
        return label
    return "passthrough" if label.startswith("passthrough-") else OTHER


def upstream_error(rec: RequestRecord) -> str | None:
    """The Anthropic error type of an upstream failure: an upstream HTTP error, no answer at all
    (502 / 504), or an error event inside a stream. Not the gateway's own refusals, nor a drain."""
    if rec.error_type is None or rec.backend is None or rec.extras.get("drained"):
        return None
    if rec.upstream_status is not None and rec.upstream_status >= 400:
        return rec.error_type
    if rec.upstream_status is None and rec.status in (502, 504):
        return rec.error_type
    if rec.status == 200 and rec.stream:  # the stream had started: an error event after it
        return rec.error_type
    return None
