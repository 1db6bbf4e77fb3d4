"""The front door: every HTTP request passes here, once.

It gives the request an id (the client's ``x-request-id`` when valid, else a new one) and a
:class:`RequestRecord`, sends the POSTs of the Messages routes straight to their handler (the fast
lane: no framework middleware around each SSE write) and everything else through Starlette, renders
errors with one function, puts ``request-id`` on every response, and emits the record once, after the
last byte. A fast-lane answer in one piece (JSON, an error) goes to the client in one write under
uvicorn's httptools protocol (``direct_write.write_whole``: the bytes uvicorn's two sends would write). One watcher per request, started once the body is read, notices the client going away and
cancels the request's task, which cancels the upstream call in whatever phase it is. Under the
gateway's own server protocol the watcher is the protocol's notice (``connection_limits.ClientLeft``):
no task per request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from anthropic_gateway import ids
from anthropic_gateway.connection_limits import DISCONNECT, ClientLeft
from anthropic_gateway.errors import APIError, GatewayError, error_body
from anthropic_gateway.http.body import ClientDisconnected, JSONResponse
from anthropic_gateway.http.direct_write import write_whole
from anthropic_gateway.http.errors import error_response
from anthropic_gateway.http.gateway import Gateway
from anthropic_gateway.http.table import fast_lane
from anthropic_gateway.ops.lifecycle import drained_error
from anthropic_gateway.ops.record import RequestRecord

log = logging.getLogger("anthropic_gateway")

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_WHOLE = (JSONResponse, Response)  # a body in one piece, sent by Response.__call__ as start + body
DISCONNECTED = 499  # the record's status for a request whose client left before the answer (nginx's)


def _identify(scope: Scope) -> tuple[str, str | None]:
    """(the request id, the key the request presents - kept only to be redacted wherever it is echoed)."""
    rid = presented = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            rid = value.decode() if _REQUEST_ID.match(value) else None
        elif name == b"x-api-key":
            presented = value.decode("latin-1")
        elif name == b"authorization" and value[:7].lower() == b"bearer " and presented is None:
            presented = value[7:].decode("latin-1").strip()
    return rid or ids.request_id(), presented


class _Headers(Headers):
    """Starlette's ``Headers`` of a fast-lane request, each lookup one dict probe: Starlette's scans the
    list per lookup and raises a KeyError for an absent name (a Messages request asks for five,
    three of them usually absent: ~7 µs). A repeated name gives its first value, as Starlette's."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:  # no super().__init__: it would only set _list
        self._list = raw
        self._map = dict(reversed(raw))  # the first of a repeated name stored last: it wins

    def get(self, key: str, default: Any = None) -> Any:
        value = self._map.get(key.lower().encode("latin-1"))
        return default if value is None else value.decode("latin-1")

    def __getitem__(self, key: str) -> str:
        value = self._map.get(key.lower().encode("latin-1"))
        if value is None:
            raise KeyError(key)
        return value.decode("latin-1")

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower().encode("latin-1") in self._map


class Exchange:
    """One request's disconnect watcher. ``watch()`` starts it (once the body is read: until then
    the handler itself is reading ``receive``); ``responded`` is set once the answer is complete, so
    the server's end-of-response disconnect message is not taken for the client leaving.
    ``end_for_drain()`` (a drain that timed out) cancels the request the same way, marked ``drained``
    so the handler or the SSE response answers with an overloaded_error. With the server's notice
    (``notice``: the gateway's protocol) the server calls ``_left`` itself; without it (another ASGI
    server) a task waits on ``receive`` for the disconnect message."""

    __slots__ = ("disconnected", "drained", "notice", "receive", "record", "responded", "task", "watcher")

    def __init__(self, receive: Receive, record: RequestRecord, notice: ClientLeft | None = None) -> None:
        self.receive = receive
        self.record = record
        self.notice = notice
        self.task: asyncio.Task[None] | None = None
        self.watcher: asyncio.Task[None] | None = None
        self.disconnected = False
        self.drained = False
        self.responded = False

    def watch(self) -> None:
        if self.task is None:
            self.task = _CURRENT_TASKS.get(asyncio.get_running_loop()) if _CURRENT_TASKS is not None else (
                asyncio.current_task())  # type: ignore[assignment]
            notice = self.notice
            if notice is not None:  # notice.watch(self._left), written out
                notice.callback = self._left
                flow = notice.flow
                if flow.read_paused:  # as uvicorn's receive() does before it waits (ClientLeft.watch)
                    flow.resume_reading()
            else:
                self.watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self._left()

    def _left(self) -> None:
        if self.responded or self.task is None:
            return
        self.disconnected = True
        self.task.cancel()

    def stop(self) -> None:
        if self.notice is not None:
            self.notice.callback = None  # notice.stop(): its callback refers to this exchange (and so to uvicorn's cycle)
        if self.watcher is not None:
            self.watcher.cancel()
            # The cancelled watcher's frame refers to this exchange: without this, every request left
            # a cycle (uvicorn's cycle and the record included) for the garbage collector to find.
            self.watcher = None

    def end_for_drain(self) -> None:
        if self.task is not None and not (self.responded or self.disconnected or self.drained):
            self.drained = True
            self.task.cancel()


class FrontDoor:
    def __init__(self, app: Starlette, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self.fast = fast_lane()
        self.life = gateway.lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (and websockets, which Starlette refuses)
            await self.app(scope, receive, send)
            return
        rid, presented = _identify(scope)
        record = RequestRecord(rid, scope["method"], scope["path"])
        if presented is not None and len(presented) >= 12:  # shorter is no real key, and would mangle words
            record.secret = presented
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["record"] = record
        state["gateway"] = self.gateway  # gateway_of: without Request.app and Starlette's State.__getattr__
        handler = self.fast.get(scope["path"]) if scope["method"] == "POST" else None
        life = self.life
        life.requests += 1
        try:
            if handler is not None:
                record.route = scope["path"]
                await self._fast(handler, scope, receive, send, record)
            else:
                await self._slow(scope, receive, send, record)
        finally:
            life.requests -= 1
            self.gateway.recorder.emit(record)

    async def _fast(self, handler: object, scope: Scope, receive: Receive, send: Send, record: RequestRecord) -> None:
        scope["app"] = self.app
        exchange = Exchange(receive, record, scope.get("extensions", {}).get(DISCONNECT))
        scope["state"]["exchange"] = exchange
        exchanges = self.life.exchanges
        exchanges.add(exchange)
        request = Request(scope, receive)
        request._headers = _Headers(scope["headers"])
        try:
            response: Response
            try:
                response = await handler(request)  # type: ignore[operator]
            except GatewayError as err:
                response = error_response(request, err)
            except ClientDisconnected:
                self._left(record)
                return
            except asyncio.CancelledError:
                if not exchange.drained:
                    raise
                _uncancel()
                response = error_response(request, drained_error())
            except Exception:
                log.exception("unhandled error (request %s)", record.request_id)
                response = error_response(request, APIError(f"Internal gateway error (request {record.request_id})"))
            if isinstance(response, Response):
                response.raw_headers.append((b"request-id", record.request_id.encode()))
                if not record.status:
                    record.status = response.status_code
                exchange.responded = True  # nothing upstream is left to cancel
            if type(response) not in _WHOLE or response.background is not None or not write_whole(
                send, response.status_code, response.raw_headers, response.body  # type: ignore[arg-type]
            ):
                await response(scope, receive, send)
        except asyncio.CancelledError:
            if not exchange.disconnected:
                raise
            _uncancel()
            self._left(record)
        finally:
            exchanges.discard(exchange)
            exchange.stop()
            # scope -> state -> exchange -> receive (uvicorn's cycle, bound) -> scope: without this, each
            # request's cycle, record and task waited for the garbage collector (~650 at a time at c=128).
            del scope["state"]["exchange"]

    def _left(self, record: RequestRecord) -> None:
        record.client_disconnected = True
        if not record.status:
            record.status = DISCONNECTED
        log.info("client disconnected; request abandoned (request %s)", record.request_id)

    async def _slow(self, scope: Scope, receive: Receive, send: Send, record: RequestRecord) -> None:
        header = (b"request-id", record.request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                record.status = record.status or message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
            route = scope.get("route")  # the Starlette route matched: its path is the template
            record.route = getattr(route, "path", None)
        except ClientDisconnected:
            self._left(record)
        except Exception:
            log.exception("unhandled error (request %s)", record.request_id)
            if not started:
                message = f"Internal gateway error (request {record.request_id})"
                record.set_error(500, "api_error", message)
                body = orjson.dumps(error_body("api_error", message, record.request_id))
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"), header]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})


# Python 3.11's asyncio.current_task is a Python function over this dict of the C accelerator's
# (3.12 has the function in C): the dict looked up directly is the same answer without the call.
_CURRENT_TASKS: dict[Any, asyncio.Task[Any]] | None = (
    getattr(asyncio.tasks, "_current_tasks", None) if sys.version_info < (3, 12) else None
)


def _uncancel() -> None:
    """The cancellation was ours (the client left, or the drain ended the request): handled here."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
