"""The one function that answers a validated Messages request, with no HTTP in it.

    MessagesService.answer(request, caller, record, stream=…)
        route (model → backend) → token estimate → dispatch (translate, send, retries, fallbacks)
        → a Completed message, or an AnswerStream of Anthropic SSE bytes

The HTTP handlers call it, and so do the batch workers and the response cache; it is built once at
start-up with what it needs. The non-streamed answer is read here, in the same layer as the streamed
one. Cancelling the calling task (a client that went away) cancels the upstream call in any phase:
connect, waiting for headers, back-off between retries, reading the body.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import msgspec
import orjson

from anthropic_gateway import dispatch, ids
from anthropic_gateway.auth import Client
from anthropic_gateway.errors import APIError, GatewayError
from anthropic_gateway.httpclient import HTTPClientError
from anthropic_gateway.ops.cost import Pricer, upstream_cost
from anthropic_gateway.ops.param_stats import ParamStats
from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.routing import Route, Router
from anthropic_gateway.schemas import CountTokensRequest, MessagesRequest
from anthropic_gateway.settings import Settings
from anthropic_gateway.threads.keeper import ThreadedStream, ThreadKeeper
from anthropic_gateway.tokens import count_request_tokens, is_ready, warm_up
from anthropic_gateway.translate.context_management import (
    apply_edits,
    parse_context_management,
    takes_context_management,
)
from anthropic_gateway.translate.response import to_anthropic_message
from anthropic_gateway.translate.stream import StreamTranslator
from anthropic_gateway.upstream import UpstreamClient, connection_error, read_capped
from anthropic_gateway.websearch.plan import find_web_search

log = logging.getLogger(__name__)

MAX_COMPLETION_BYTES = 64 * 1024 * 1024
# Counting is ~1 ms for Claude Code's 78 KB body uncached, but grows with the text (~13 ms a MB with the
# compiled counter, ~60 ms with tiktoken): past this size it runs in a thread so other streams and their
# pings keep flowing (both counters release the GIL while they count a long text).
COUNT_IN_THREAD_BYTES = 256 * 1024
# Those threads are the counter's own, one per core: a hostile text (32 MB of long one-class words)
# costs up to ~0.25 µs a byte, ~8 s of a core, and in the default executor a few such counts would
# hold every thread that resolves upstream host names and runs the other off-loop work.
COUNT_THREADS = os.cpu_count() or 1
_count_pool: ThreadPoolExecutor | None = None


def count_pool() -> ThreadPoolExecutor:
    global _count_pool
    if _count_pool is None:
        _count_pool = ThreadPoolExecutor(COUNT_THREADS, thread_name_prefix="count")
    return _count_pool


def _in_count_pool(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Awaitable[T]:
    return asyncio.get_running_loop().run_in_executor(count_pool(), functools.partial(fn, *args, **kwargs))

Write = Callable[[bytes], Awaitable[None]]


class DirectWrite(Protocol):
    """Synchronous body writes with the client transport's flow control (http/direct_write.py):
    ``paused`` once the client's buffer is full, ``drain()`` until it is not. What the writer holds
    (the response's head, see ``start_chunked``, and bytes given to ``hold``) goes out before the next
    ``write``'s in the same system call, or with ``flush()``, or with the response's end."""

    @property
    def paused(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def hold(self, data: bytes) -> None: ...

    def flush(self) -> None: ...

    async def drain(self) -> None: ...

R = TypeVar("R", bound=CountTokensRequest)
T = TypeVar("T")


@dataclass(slots=True)
class Completed:
    """A whole answer: the Anthropic Message."""

    message: dict[str, Any]


class AnswerStream:
    """A streamed answer: Anthropic SSE bytes from one upstream stream, through a StreamTranslator.

    ``start()`` gives message_start; ``pump(write)`` writes one chunk per upstream read and returns
    the tail (the closing events, or an error event); ``close()`` gives the connection back to the
    pool when the upstream finished cleanly and closes it otherwise. Usage lands in the record.
    """

    def __init__(self, answer: dispatch.Answer, translator: StreamTranslator, record: RequestRecord,
                 pricer: Pricer | None = None) -> None:  # fmt: skip
        self.answer = answer
        self.translator = translator
        self.record = record
        self.pricer = pricer
        self.writes = 0  # chunks written: the SSE response's ping timer watches it
        self._upstream_from = record.upstream_seconds  # time already spent before the stream
        self._dispatched_at = time.perf_counter()
        self._closed = False

    def start(self) -> bytes:
        return self.translator.start()

    async def pump(self, write: Write, direct: DirectWrite | None = None) -> bytes:
        """Translate and write the upstream's stream until its end: through ``direct`` when the
        server offers synchronous writes (from the upstream socket's callback, no task wake-up per
        chunk), else through the awaited ``write``."""
        translator = self.translator
        record = self.record
        rid = record.request_id
        try:
            if direct is not None:
                await self._pump_direct(direct)
            else:
                await self._pump(write)
        except HTTPClientError as err:
            log.warning("upstream stream failed (request %s): %r", rid, err)
            return self._end(translator.fail(connection_error(err)))
        except Exception:  # a translator bug must still end the stream with an error event
            log.exception("stream translation failed (request %s)", rid)
            return self._end(translator.fail(APIError(f"Internal gateway error (request {rid})")))
        try:
            return self._end(translator.finish())
        except Exception:
            log.exception("stream translation failed (request %s)", rid)
            return self._end(translator.fail(APIError(f"Internal gateway error (request {rid})")))

    async def _pump(self, write: Write) -> None:
        translator, record, upstream = self.translator, self.record, self.answer.response
        while True:
            chunk = await upstream.readany()
            if not chunk:
                return
            out = translator.feed(chunk)
            if out:
                if self.writes == 0:
                    record.first_token_at = time.perf_counter()
                self.writes += 1
                await write(out)
            if translator.done:
                return

    async def _pump_direct(self, direct: DirectWrite) -> None:
        """The upstream response's sink translates each body chunk inside the socket's callback and
        writes it to the client at once; this coroutine only waits for the end, a failure, the
        translator's stop, or the client's buffer to drain (meanwhile the upstream is not read)."""
        translator, record, upstream = self.translator, self.record, self.answer.response
        failure: list[Exception] = []
        feed, feed_run, template, write = translator.feed_parts, translator.feed_run, translator.run_template, direct.write

        def sink(parts: list[bytes], run: bytes | None = None, k: int = 0) -> None:
            try:
                out = feed(parts) if run is None else feed_run(run, k, parts)
                done = translator.done
                upstream.run = None if done else template()
                if out:
                    if self.writes == 0:
                        record.first_token_at = time.perf_counter()
                    self.writes += 1
                    if done:  # the answer's last events: written with its tail, in one write
                        direct.hold(out)
                    else:
                        write(out)
                        if direct.paused:  # the client's buffer is full: the upstream waits until it drains
                            upstream.pause()
                            upstream.wake()
            except Exception as err:  # a translator bug: the pump ends the stream with an error event
                failure.append(err)
                upstream.sink = upstream.run = None
                upstream.pause()
                upstream.wake()
                return
            if done:
                upstream.sink = None  # what follows stays buffered: close() reads it or drops it
                upstream.wake()

        pending = upstream.take_parts()
        upstream.sink = upstream.run_sink = sink
        try:
            if pending:
                sink(pending)
            if not translator.done:
                direct.flush()  # the head, if the first read did not take it: before the pump waits
            while True:
                if failure:
                    raise failure[0]
                if translator.done:
                    return
                if direct.paused:
                    await direct.drain()
                    continue
                upstream.resume()  # (if the sink paused it)
                if upstream.error is not None:
                    raise upstream.error
                if upstream.ended:
                    return
                await upstream.wait()
        finally:
            # (the sink holds the upstream response: left set, the two would stay in a reference
            # cycle until the garbage collector's next pass)
            upstream.sink = upstream.run_sink = upstream.run = None

    def end(self, err: GatewayError) -> bytes:
        """End the stream now with an error event (the drain timed out); ``close()`` follows."""
        self.record.extras["drained"] = True
        return self._end(self.translator.fail(err))

    def _end(self, tail: bytes) -> bytes:
        t, record = self.translator, self.record
        record.upstream_seconds = self._upstream_from + (time.perf_counter() - self._dispatched_at)
        usage = t.final_usage()
        record.set_usage(usage)
        record.stop_reason = t.stop_reason_sent
        if t.error is not None:
            record.error_type = t.error.error_type
            record.error_message = t.error.message
        record.upstream_cost_usd = upstream_cost(t.usage)
        if self.pricer is not None:
            self.pricer.price(record)
        return tail

    async def close(self) -> None:
        """Release the upstream: after [DONE] its body is read to the end (≤ 2 s) so the connection
        can be reused; anything else (errors, early stops, cancellation) closes it."""
        if self._closed:
            return
        self._closed = True
        self.answer.release_slot()
        t, upstream = self.translator, self.answer.response
        reusable = t.saw_done and t.error is None and t.stop_sequence is None
        if reusable and not upstream.at_eof():  # (the body's end usually came with [DONE]: no timer then)
            try:
                async with asyncio.timeout(2.0):
                    while not upstream.at_eof():
                        if not await upstream.readany():
                            break
            except (HTTPClientError, TimeoutError):
                reusable = False
            except BaseException:
                upstream.close()
                raise
        if reusable:
            upstream.release()
        else:
            upstream.close()  # abandons the connection: the upstream sees the cancel

    def abort(self) -> None:
        """Close at once (the client went away): no drain."""
        if not self._closed:
            self._closed = True
            self.answer.release_slot()
            self.answer.response.close()


class MessagesService:
    def __init__(
        self, settings: Settings, router: Router, upstream: UpstreamClient, threads: ThreadKeeper | None = None, *,
        pricer: Pricer | None = None, param_stats: ParamStats | None = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.router = router
        self.upstream = upstream
        self.threads = threads or ThreadKeeper(settings, None)
        self.pricer = pricer or Pricer(settings.prices)
        self.param_stats = param_stats or ParamStats()

    async def count(self, req: CountTokensRequest, model: str, size: int) -> int:
        if not is_ready(model):
            # The first count may have to build the tokenizer (~12 ms, ~0.3 s with tiktoken): off the event loop.
            await _in_count_pool(warm_up, model)
        if size > COUNT_IN_THREAD_BYTES:
            return await _in_count_pool(count_request_tokens, req, model)
        return count_request_tokens(req, model)

    async def edit_context(self, req: R, route: Route, tokens: int, size: int) -> tuple[R, int, dict[str, Any] | None]:
        """The request's context editing applied here (unless its target takes it natively): the
        edited request, its token count, and the response's `context_management` (None: not asked)."""
        plan = parse_context_management(req.context_management)
        if plan is None or takes_context_management(route):
            return req, tokens, None
        count = functools.partial(_count_as, model=route.upstream_model)
        if size > COUNT_IN_THREAD_BYTES:
            edited = await _in_count_pool(apply_edits, req, plan, tokens=tokens, count=count)
        else:
            edited = apply_edits(req, plan, tokens=tokens, count=count)
        return edited.request, edited.tokens, edited.report()

    def resolve(self, model: str, record: RequestRecord) -> Route:
        route = self.router.resolve(model)
        record.model = model
        record.alias, record.backend, record.upstream_model = route.alias, route.backend.name, route.upstream_model
        return route

    def answer(
        self, req: MessagesRequest, *, client: Client, record: RequestRecord, stream: bool, size: int,
        web_search: bool = True,
        session: str | None = None,
    ) -> Coroutine[Any, Any, Completed | AnswerStream]:
        """Answer one validated request; a threaded one (`thread`) as the full request it stands for,
        keeping the conversation under the answer's id (threads/). An unthreaded request's answer is
        ``_answer``'s coroutine itself: no coroutine of its own around it, which every resumption of
        the request's task would pass through."""
        if req.thread is None:
            return self._answer(req, client=client, record=record, stream=stream, size=size,
                                web_search=web_search, session=session)  # fmt: skip
        return self._answer_threaded(req, client=client, record=record, stream=stream, size=size,
                                     web_search=web_search, session=session)  # fmt: skip

    async def _answer_threaded(
        self, req: MessagesRequest, *, client: Client, record: RequestRecord, stream: bool, size: int,
        web_search: bool, session: str | None,
    ) -> Completed | AnswerStream:
        turn = await self.threads.begin(req, client)
        if turn is None:
            return await self._answer(req, client=client, record=record, stream=stream, size=size,
                                      web_search=web_search, session=session)  # fmt: skip
        full = msgspec.structs.replace(turn.request, thread=None)
        try:
            result = await self._answer(full, client=client, record=record, stream=stream, size=size,
                                        web_search=web_search, session=session)  # fmt: skip
        except BaseException:
            self.threads.end(turn)
            raise
        if isinstance(result, Completed):
            try:
                await self.threads.commit(turn, result.message)
            finally:
                self.threads.end(turn)
            return result
        return cast(AnswerStream, ThreadedStream(result, turn, self.threads))  # the same interface

    async def _answer(
        self, req: MessagesRequest, *, client: Client, record: RequestRecord, stream: bool, size: int,
        web_search: bool = True, session: str | None = None,
    ) -> Completed | AnswerStream:
        """Answer one validated request. ``size`` is the request body's size in bytes (it decides
        whether the token estimate runs in a thread); ``session`` the client's conversation id. A
        request for Anthropic's web search goes through websearch/ (which calls back with
        ``web_search=False``)."""
        if web_search and req.tools and find_web_search(req) is not None:
            from anthropic_gateway.websearch.service import answer_search

            return await answer_search(self, req, client=client, record=record, stream=stream, size=size)
        record.stream = stream
        route = self.resolve(req.model, record)
        self.param_stats.count(req, route.backend.kind)
        # The estimate fills message_start (the real figure follows in message_delta), sizes the
        # context-window clamp, and numbers context-overflow errors whose upstream text has none.
        # count()'s usual case (inline, without its coroutine) is counted by dispatch once the request
        # is on its way upstream, unless a context window's clamp needs it first.
        model = route.upstream_model
        inline = size <= COUNT_IN_THREAD_BYTES and is_ready(model)
        estimate: int | Callable[[], int]
        edits = None
        if inline and req.context_management is None:
            estimate = functools.partial(count_request_tokens, req, model)
        else:
            tokens = count_request_tokens(req, model) if inline else await self.count(req, model, size)
            if req.context_management is not None:
                req, tokens, edits = await self.edit_context(req, route, tokens, size)
            estimate = tokens
        started = time.perf_counter()
        try:
            answer = await dispatch.send(
                req, route, stream=stream, estimate=estimate, client=client,
                router=self.router, upstream=self.upstream, settings=self.settings, record=record,
                session=session,
            )  # fmt: skip
        finally:
            record.upstream_seconds += time.perf_counter() - started
        answer.ctx.context_management = edits
        if stream:
            translator = StreamTranslator(answer.ctx, ids.message_id(), answer.estimate, secret=answer.key)
            return AnswerStream(answer, translator, record, self.pricer)
        started = time.perf_counter()
        try:
            raw = await _read_completion(answer)
        finally:
            record.upstream_seconds += time.perf_counter() - started
        message = _to_message(raw, answer, record)
        self.pricer.price(record)
        return Completed(message)


def _count_as(req: CountTokensRequest, *, model: str) -> int:
    return count_request_tokens(req, model)


async def _read_completion(answer: dispatch.Answer) -> bytes:
    upstream = answer.response
    try:
        raw, complete = await read_capped(upstream, MAX_COMPLETION_BYTES)
        if not complete:
            raise APIError("The upstream answer exceeds 64 MB", status=502)
    except GatewayError:
        upstream.close()
        raise
    except Exception as err:
        upstream.close()
        raise connection_error(err) from None
    except BaseException:  # cancelled: the client went away; closing stops the upstream's work
        upstream.close()
        raise
    finally:
        answer.release_slot()
    upstream.release()
    return raw


def _to_message(raw: bytes, answer: dispatch.Answer, record: RequestRecord) -> dict[str, Any]:
    try:
        completion = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise APIError("The upstream returned a body that is not JSON", status=502) from None
    try:
        message = to_anthropic_message(completion, answer.ctx, ids.message_id(), answer.info)
    except (AttributeError, TypeError, KeyError, ValueError):  # fields of the wrong JSON type
        log.warning("malformed upstream completion (request %s)", record.request_id, exc_info=True)
        raise APIError("The upstream returned a malformed completion", status=502) from None
    record.set_usage(message["usage"])
    record.stop_reason = message.get("stop_reason")
    if isinstance(completion, dict):
        model = completion.get("model")
        record.response_model = model if isinstance(model, str) else None
        record.upstream_cost_usd = upstream_cost(completion.get("usage"))
    return message
