"""The gateway's lifetime: starting, serving, draining; what is in flight; ending it when a drain times out.

The front door counts every request in flight (one integer) and registers each Messages request's
``Exchange`` here while it runs; nothing happens per chunk. On SIGTERM / SIGINT the server calls
:meth:`Lifecycle.begin_drain`: readiness turns 503, the server stops accepting connections and lets the
requests in flight finish; after ``drain_timeout`` seconds every one still unanswered is ended — a
stream with an ``overloaded_error`` event, a request not yet answered with a 529 ``overloaded_error``
— and the server shuts down (the ledger flushes its queue on the way out).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal, Protocol

from anthropic_gateway.errors import OverloadedError
from anthropic_gateway.ops.record import RequestRecord

log = logging.getLogger("anthropic_gateway")

State = Literal["starting", "serving", "draining"]
DRAINED_MESSAGE = "The gateway is shutting down and ended this request; retry it"


def drained_error() -> OverloadedError:
    return OverloadedError(DRAINED_MESSAGE)


class Endable(Protocol):
    """A request in flight the drain can end (the front door's Exchange)."""

    record: RequestRecord
    responded: bool

    def end_for_drain(self) -> None: ...


class Lifecycle:
    __slots__ = ("_timer", "exchanges", "requests", "started", "started_at", "state")

    def __init__(self) -> None:
        self.state: State = "starting"
        self.started = time.monotonic()
        self.started_at = time.time()
        self.requests = 0  # every HTTP request in flight (the front door counts them)
        self.exchanges: set[Endable] = set()  # the Messages requests in flight
        self._timer: asyncio.TimerHandle | None = None

    @property
    def streams(self) -> int:
        """Streamed answers in flight (their 200 sent, the last event not yet)."""
        return sum(1 for e in self.exchanges if e.record.stream and e.record.status == 200 and not e.responded)

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started

    def serving(self) -> None:
        if self.state == "starting":
            self.state = "serving"

    def begin_drain(self, timeout: float) -> None:
        """Stop being ready, and end what is still running ``timeout`` seconds from now (once)."""
        self.state = "draining"
        if self._timer is not None:
            return
        log.info("draining: %d request(s) in flight, %d stream(s); unfinished ones are ended in %g s",
                 self.requests, self.streams, timeout)  # fmt: skip
        self._timer = asyncio.get_running_loop().call_later(timeout, self.end_remaining)

    def end_remaining(self) -> int:
        ended = [e for e in self.exchanges if not e.responded]
        for exchange in ended:
            exchange.end_for_drain()
        if ended:
            log.warning("drain timeout: ending %d unfinished request(s) with overloaded_error", len(ended))
        return len(ended)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
