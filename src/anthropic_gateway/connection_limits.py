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
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from anthropic_gateway.errors import error_body
from anthropic_gateway.settings import Settings

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application

log = logging.getLogger("anthropic_gateway.connections")

IDLE, HEAD, BODY, APP = 0, 1, 2, 3  # phases of a connection: between requests, reading them, answering

_TASK_NAME = "request"  # every request's task (asyncio names each task "Task-<n>" otherwise, a format per request)
_EARLY = 0.001  # a timer that fires this close to its deadline has reached it (uvloop's timers count milliseconds)

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
        flow = self.flow
        if flow.read_paused:  # flow.resume_reading(), written out
            flow.resume_reading()

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
    """uvicorn's httptools protocol with the limits above (set `limits` on a subclass: protocol_class).

    uvicorn's per-request parser callbacks are written out here, each merged with the limits' part
    of it (one Python frame per callback instead of two: a request's headers are a call each), and
    the connection's clocks are one timer, armed lazily: ``_due(at)`` makes sure a timer fires by
    ``at``, and the timer, when it fires, checks the phase's own deadline and re-arms for what is
    left. A request whose headers and body arrive in one read arms no timer at all (it used to arm
    and cancel a header and a body timer, and uvicorn a keep-alive timer after the response); a
    keep-alive connection's timer fires about once per ``timeout_keep_alive`` and re-arms. The
    deadlines are the same: the headers within ``header_timeout`` of the request's first byte (of
    the previous answer's end for a pipelined request), no body read for ``body_timeout``, and an
    idle connection closed ``timeout_keep_alive`` after its last response."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = IDLE
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # the loop time the pending timer fires at
        self._head_at = 0.0  # HEAD: when the headers' clock started
        self._last_read = 0.0  # BODY: the last read of the body
        self._idle_at = 0.0  # IDLE: when the last response completed
        self._clock_off = False  # a pipelined request: no clock until the answer before it is complete
        self._head_raw = 0  # bytes of reads that ended inside the headers
        self._head_fields = 0  # bytes of the URL and header fields parsed
        self._half_closed = False
        self._named = self.loop.get_task_factory() is None and not getattr(self.config, "reset_contextvars", False)

    # --- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.limits.warn_full(f"{len(self.connections) - 1} open, limit {self.limits.max_connections}")
            self._refuse(529, "overloaded_error", "The gateway has too many open connections; retry shortly")
            return
        self._phase = HEAD
        self._head_raw = self._head_fields = 0
        self._head_at = now = self.loop.time()
        self._due(now + self.limits.header_timeout)

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
        # uvicorn's keep-alive timer is never armed (the IDLE phase's deadline is ours): nothing to unset.
        phase = self._phase
        if phase == IDLE:  # the first byte of a request: its headers' clock starts
            self._phase = HEAD
            self._head_raw = self._head_fields = 0
            self._head_at = self.loop.time()
        elif phase == BODY:
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
        phase = self._phase
        if phase == HEAD:
            self._head_raw += len(data)
            if self._head_raw > self.limits.max_header_bytes:
                self._too_large()
            elif not self._clock_off:
                self._due(self._head_at + self.limits.header_timeout)
        elif phase == BODY and not self._clock_off:
            self._due(self._last_read + self.limits.body_timeout)

    # --- parser callbacks (uvicorn's, with the limits' part) ----------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
            "extensions": {DISCONNECT: ClientLeft(self.flow)},  # type: ignore[dict-item]
        }
        if self._phase == APP:
            # Pipelined: the previous request is still being answered (uvicorn stops reading
            # meanwhile), so no clock runs for this one until that answer is complete.
            self._phase = HEAD
            self._clock_off = True
        self._head_raw = self._head_fields = 0

    def on_url(self, url: bytes) -> None:
        self._head_fields += len(url)
        if self._head_fields > self.limits.max_header_bytes:
            raise _HeadersTooLarge
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += len(name) + len(value) + 4
        if self._head_fields > self.limits.max_header_bytes:
            raise _HeadersTooLarge
        name = name.lower()
        # llhttp keeps trailing OWS, which https://www.rfc-editor.org/rfc/rfc9110#section-5.5 excludes from the value.
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._phase = BODY
        self._last_read = self.loop.time()
        parser = self.parser
        http_version = parser.get_http_version()
        self.scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            self.scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return
        parsed_url = httptools.parse_url(self.url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        root_path = self.root_path
        self.scope["path"] = root_path + path if root_path else path
        self.scope["raw_path"] = root_path.encode("ascii") + raw_path if root_path else raw_path
        self.scope["query_string"] = parsed_url.query or b""

        # Handle 503 responses when 'limit_concurrency' is exceeded.
        if self.limit_concurrency is not None and (
            len(self.connections) >= self.limit_concurrency or len(self.tasks) >= self.limit_concurrency
        ):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
        else:
            app = self.app

        existing_cycle = self.cycle
        self.cycle = cycle = RequestResponseCycle(
            scope=self.scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        if existing_cycle is None or existing_cycle.response_complete:
            self._start_asgi_task(cycle, app)  # type: ignore[arg-type]
        else:
            # Pipelined HTTP requests need to be queued up.
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, app))  # type: ignore[arg-type]

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        if self._named:  # a name given: asyncio (3.11) formats "Task-<n>" for each task without one
            task = asyncio.Task(cycle.run_asgi(app), loop=self.loop, name=_TASK_NAME)
        else:
            super()._start_asgi_task(cycle, app)
            return
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def on_message_complete(self) -> None:
        self._phase = APP  # a pending timer finds nothing to time in APP and lapses
        if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
            return
        self.cycle.more_body = False
        self.cycle.message_event.set()

    def on_response_complete(self) -> None:
        # Called by the cycle once the response is complete.
        self.server_state.total_requests += 1
        transport = self.transport
        if transport.is_closing():
            return
        phase = self._phase
        self._clock_off = False
        now = self.loop.time()
        if phase == HEAD:  # a pipelined request's headers: their clock starts now
            self._head_at = now
            self._due(now + self.limits.header_timeout)
        elif phase == BODY:
            self._last_read = now
            self._due(now + self.limits.body_timeout)
        else:  # APP, or IDLE after a pipelined request read whole: nothing more to read
            self._phase = IDLE
        flow = self.flow
        if flow.read_paused:  # flow.resume_reading(), written out
            flow.read_paused = False
            transport.resume_reading()
        # Unblock any pipelined events. If there are none, the keep-alive deadline instead.
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._phase == IDLE:
            self._idle_at = now
            self._due(now + self.timeout_keep_alive)
        if self._half_closed:
            transport.close()  # nothing more can arrive on a half-closed connection

    # --- limits -------------------------------------------------------------------------------

    def _due(self, at: float) -> None:
        """A timer fires at ``at`` at the latest (the one pending, when it comes first)."""
        timer = self._timer
        if timer is not None:
            if self._timer_at <= at:
                return
            timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_later(at - self.loop.time(), self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._clock_off:
            return
        now = self.loop.time()
        phase = self._phase
        if phase == HEAD:
            left = self._head_at + self.limits.header_timeout - now
            if left > _EARLY:
                self._due(now + left)
                return
            if self._head_raw == 0 and self._head_fields == 0:
                self.limits.warn_timeout("no request within the header timeout")
                self.transport.close()
                return
            self.limits.warn_timeout("headers not complete within the header timeout")
            self._refuse(408, "timeout_error", f"The request headers did not arrive within {self.limits.header_timeout:g} s")
        elif phase == BODY:
            left = self._last_read + self.limits.body_timeout - now
            if left > _EARLY:
                self._due(now + left)
                return
            self.limits.warn_timeout("request body stalled")
            self._refuse(408, "timeout_error", f"The request body stopped arriving for {self.limits.body_timeout:g} s")
        elif phase == IDLE and not self.pipeline and (self.cycle is None or self.cycle.response_complete):
            left = self._idle_at + self.timeout_keep_alive - now
            if left > _EARLY:
                self._due(now + left)
                return
            self.transport.close()  # uvicorn's timeout_keep_alive_handler

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
