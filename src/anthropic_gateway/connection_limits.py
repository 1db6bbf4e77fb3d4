"""Client connections, bounded: what uvicorn's httptools protocol does not limit by itself.

- a request's headers must arrive within ``header_timeout`` seconds (slowloris, silent sockets);
  a body that stops arriving for ``body_timeout`` seconds ends the request too (408, then closed);
- the request line and headers may not exceed ``max_header_bytes`` (431) - counted as the bytes
  arrive, so a 64 MB header is refused after the first 64 KB, not buffered;
- at most ``max_client_connections`` connections are open at once (default: half the file-descriptor
  limit, the other half being the upstream pool's); one over it gets a 529 and is closed at once,
  so idle sockets cannot use up the descriptors everyone else needs.

Each kind of refusal logs one warning per burst (then a count), not one per connection.
Keep-alive connections idle between requests are uvicorn's own ``timeout_keep_alive``.
Nothing here runs per response byte: only when request bytes arrive.

The protocol also tells the app when a request's client goes away (``ClientLeft``, in the request's
``scope["extensions"]``): the front door would otherwise keep a task per request waiting on
``receive()`` for the disconnect message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from anthropic_gateway.errors import error_body
from anthropic_gateway.settings import Settings

log = logging.getLogger("anthropic_gateway.connections")

IDLE, HEAD, BODY, APP = 0, 1, 2, 3  # phases of a connection: between requests, reading them, answering

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 529: b"Overloaded"}


def default_connection_cap() -> int:
    """Half the soft file-descriptor limit (the rest: upstream connections, files, the listener)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 1024
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 4096
    return max(16, (soft - 64) // 2)


class BurstWarning:
    """A warning logged at the first event of a burst; events within `window` seconds after it are
    counted and reported with the next one that is logged."""

    def __init__(self, what: str, window: float = 10.0) -> None:
        self.what = what
        self.window = window
        self.quiet_until = 0.0
        self.suppressed = 0

    def __call__(self, detail: str) -> None:
        now = time.monotonic()
        if now < self.quiet_until:
            self.suppressed += 1
            return
        before = f"; {self.suppressed} more since the last warning" if self.suppressed else ""
        log.warning("%s (%s)%s; more in the next %.0f s are counted, not logged", self.what, detail, before, self.window)
        self.quiet_until = now + self.window
        self.suppressed = 0


@dataclass
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    max_connections: int
    answer_half_closed: bool = False  # an EOF mid-request is a half-close to answer, not a client that left
    warn_timeout: BurstWarning = field(default_factory=lambda: BurstWarning("closing slow client connections"))
    warn_headers: BurstWarning = field(default_factory=lambda: BurstWarning("refusing requests with oversized headers"))
    warn_full: BurstWarning = field(default_factory=lambda: BurstWarning("refusing client connections over the limit"))


DISCONNECT = "anthropic_gateway.client_left"  # the scope extension holding the request's ClientLeft


class ClientLeft:
    """One request's disconnect notice: the app registers a callback once it has read the body
    (``watch``); the protocol calls it if the connection is lost before the response is complete.
    The callback is the app's to clear (``stop``) when the request ends."""

    __slots__ = ("callback", "flow")

    def __init__(self, flow: Any) -> None:
        self.flow = flow
        self.callback: Callable[[], None] | None = None

    def watch(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        # As uvicorn's receive() does before it waits: a read paused under a large body would not
        # see the client close its connection.
        self.flow.resume_reading()

    def stop(self) -> None:
        self.callback = None


class _HeadersTooLarge(Exception):
    pass


def _response(status: int, error_type: str, message: str) -> bytes:
    body = orjson.dumps(error_body(error_type, message))
    return b"".join((
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]), b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body,
    ))  # fmt: skip


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above (set `limits` on a subclass: protocol_class)."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = IDLE
        self._timer: asyncio.TimerHandle | None = None
        self._head_raw = 0  # bytes of reads that ended inside the headers
        self._head_fields = 0  # bytes of the URL and header fields parsed
        self._last_read = 0.0
        self._half_closed = False

    # --- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.limits.warn_full(f"{len(self.connections) - 1} open, limit {self.limits.max_connections}")
            self._refuse(529, "overloaded_error", "The gateway has too many open connections; retry shortly")
            return
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and cycle.disconnected:  # uvicorn's mark: lost before the response completed
            notice = cycle.scope.get("extensions", {}).get(DISCONNECT)
            if isinstance(notice, ClientLeft) and notice.callback is not None:
                notice.callback()

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client closed its sending side. By default that ends the connection (and a request in
        flight is cancelled: a client that left looks the same); with ``answer_half_closed`` a request
        in flight is still answered, and the connection closes after the answer."""
        cycle = self.cycle
        if self.limits.answer_half_closed and cycle is not None and not cycle.response_complete:
            self._half_closed = True
            return True
        return None

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._phase == IDLE:  # _start_head, written out (once per request)
            self._phase = HEAD
            self._head_raw = self._head_fields = 0
            self._arm(self.limits.header_timeout)
        elif self._phase == BODY:
            self._last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as err:
            if isinstance(err.__context__, _HeadersTooLarge):
                self._too_large()
                return
            self._invalid()
            return
        except httptools.HttpParserError:
            self._invalid()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._phase == HEAD:
            self._head_raw += len(data)
            if self._head_raw > self.limits.max_header_bytes:
                self._too_large()

    # --- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {DISCONNECT: ClientLeft(self.flow)}  # type: ignore[dict-item]
        if self._phase == APP:
            # Pipelined: the previous request is still being answered (uvicorn stops reading
            # meanwhile), so no clock runs for this one until that answer is complete.
            self._phase = HEAD
        self._head_raw = self._head_fields = 0

    def on_url(self, url: bytes) -> None:
        self._head_fields += len(url)  # _count, written out: a call per header field
        if self._head_fields > self.limits.max_header_bytes:
            raise _HeadersTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += len(name) + len(value) + 4
        if self._head_fields > self.limits.max_header_bytes:
            raise _HeadersTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = BODY
        self._last_read = self.loop.time()
        if self._timer is not None:  # not for a pipelined request (above)
            self._arm(self.limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = APP
        if self._timer is not None:  # _cancel_timer, written out
            self._timer.cancel()
            self._timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._phase == APP:
            self._phase = IDLE
        elif self._timer is None and not self.transport.is_closing():  # a pipelined request waits
            self._last_read = self.loop.time()
            self._arm(self.limits.header_timeout if self._phase == HEAD else self.limits.body_timeout)
        super().on_response_complete()
        if self._half_closed and not self.transport.is_closing():
            self.transport.close()  # nothing more can arrive on a half-closed connection

    # --- limits -------------------------------------------------------------------------------

    def _start_head(self) -> None:
        self._phase = HEAD
        self._head_raw = self._head_fields = 0
        self._arm(self.limits.header_timeout)

    def _arm(self, delay: float) -> None:
        if self._timer is not None:  # _cancel_timer, written out (twice per request)
            self._timer.cancel()
        self._timer = self.loop.call_later(delay, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._phase == HEAD:
            if self._head_raw == 0 and self._head_fields == 0:
                self.limits.warn_timeout("no request within the header timeout")
                self.transport.close()
                return
            self.limits.warn_timeout("headers not complete within the header timeout")
            self._refuse(408, "timeout_error", f"The request headers did not arrive within {self.limits.header_timeout:g} s")
        elif self._phase == BODY:
            idle = self.loop.time() - self._last_read
            if idle < self.limits.body_timeout:
                self._arm(self.limits.body_timeout - idle)
                return
            self.limits.warn_timeout("request body stalled")
            self._refuse(408, "timeout_error", f"The request body stopped arriving for {self.limits.body_timeout:g} s")

    def _too_large(self) -> None:
        self.limits.warn_headers(f"over {self.limits.max_header_bytes} bytes")
        self._refuse(431, "request_too_large", f"Request headers exceed the limit of {self.limits.max_header_bytes} bytes")

    def _invalid(self) -> None:
        self.logger.warning("Invalid HTTP request received.")
        self.send_400_response("Invalid HTTP request received.")

    def _refuse(self, status: int, error_type: str, message: str) -> None:
        self._cancel_timer()
        self._phase = IDLE
        if self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete:
            self.transport.close()  # an answer is under way: no second status line in its middle
            return
        self.transport.write(_response(status, error_type, message))
        self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for uvicorn.Config(http=...) enforcing `limits`."""
    return type("GatewayHttpProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


def protocol_for(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    return protocol_class(ConnectionLimits(
        settings.header_timeout, settings.body_timeout, settings.max_header_bytes,
        settings.max_client_connections or default_connection_cap(),
        answer_half_closed=settings.half_closed_clients == "answer",
    ))  # fmt: skip
