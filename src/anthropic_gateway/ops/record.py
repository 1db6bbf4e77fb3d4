"""One record per request.

The front door creates a :class:`RequestRecord` for every HTTP request; each layer fills in what it
learns (the handler the route and caller, routing the backend and model, dispatch retries and
fallbacks, the translators the usage); after the last byte the front door hands it to the
:class:`Recorder`, which gives it once to every sink (the access log, the metrics, the ledger).

A sink's ``record`` runs on the event loop after the response is complete: it must be quick and must
not block (the ledger only queues a row). A failing sink is logged and never affects the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)  # monotonic, for durations
    started_at: float = field(default_factory=time.time)  # wall clock, for the log and the ledger
    route: str | None = None  # the route template ("/v1/messages"), set by the front door
    key_label: str | None = None  # the caller's key label (never the key)
    model: str | None = None  # as the client asked
    alias: str | None = None  # the configured alias or tier that served it
    backend: str | None = None
    upstream_model: str | None = None
    response_model: str | None = None  # as the upstream reported it
    stream: bool = False
    status: int = 0
    error_type: str | None = None
    error_message: str | None = None
    upstream_status: int | None = None  # the last upstream answer's status (errors included)
    first_token_at: float | None = None  # perf_counter when the first content reached the client
    upstream_seconds: float = 0.0  # time spent waiting on upstream calls (headers and bodies)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    upstream_cost_usd: float | None = None  # the upstream's own figure (OpenRouter usage.cost)
    stop_reason: str | None = None
    retries: int = 0
    fallbacks: list[str] = field(default_factory=list)  # aliases tried after the first
    client_disconnected: bool = False
    cache: str | None = None  # response cache result: hit, miss, bypass
    extras: dict[str, Any] = field(default_factory=dict)  # whatever a later layer adds
    secret: str | None = field(default=None, repr=False)  # the key the request presented: only ever redacted
    finished: float | None = None

    @property
    def duration(self) -> float:
        end = self.finished if self.finished is not None else time.perf_counter()
        return end - self.started

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def overhead(self) -> float:
        """Total time minus the time spent waiting on the upstream: what the gateway itself added."""
        return max(self.duration - self.upstream_seconds, 0.0)

    def set_usage(self, usage: dict[str, Any]) -> None:
        """From an Anthropic usage object."""
        self.input_tokens = int(usage.get("input_tokens") or 0)
        self.output_tokens = int(usage.get("output_tokens") or 0)
        self.cache_read_tokens = int(usage.get("cache_read_input_tokens") or 0)
        self.cache_write_tokens = int(usage.get("cache_creation_input_tokens") or 0)

    def set_error(self, status: int, error_type: str, message: str) -> None:
        self.status = status
        self.error_type = error_type
        self.error_message = message


class Sink(Protocol):
    def record(self, rec: RequestRecord) -> None: ...


class Recorder:
    """Gives every finished record to each sink, once."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self.sinks: list[Sink] = list(sinks or [])

    def add(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def emit(self, rec: RequestRecord) -> None:
        if rec.finished is None:
            rec.finished = time.perf_counter()
        for sink in self.sinks:
            try:
                sink.record(rec)
            except Exception:
                log.exception("request record sink %s failed (request %s)", type(sink).__name__, rec.request_id)


class FunctionSink:
    """A sink from a plain function (tests, small consumers)."""

    def __init__(self, fn: Callable[[RequestRecord], None]) -> None:
        self.fn = fn

    def record(self, rec: RequestRecord) -> None:
        self.fn(rec)
