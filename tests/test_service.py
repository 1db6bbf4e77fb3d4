"""The service's counts off the event loop: in the counter's own threads, not the default executor."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from anthropic_gateway import service
from anthropic_gateway.auth import Client
from anthropic_gateway.errors import APIError
from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.routing import Router
from anthropic_gateway.schemas import MessagesRequest, decode_count_tokens_request, decode_messages_request
from anthropic_gateway.service import COUNT_IN_THREAD_BYTES, MessagesService
from anthropic_gateway.settings import Settings, load_settings
from anthropic_gateway.tokens import count_request_tokens
from anthropic_gateway.upstream import UpstreamClient

MODEL = "gpt-4o"  # o200k


def big_request() -> tuple[bytes, int]:
    body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "word " * 80_000}]})
    assert len(body) > COUNT_IN_THREAD_BYTES
    return body, len(body)


@pytest.fixture
def messages_service() -> Iterator[MessagesService]:
    settings = Settings()
    yield MessagesService(settings, Router(settings), UpstreamClient(settings))


def test_large_counts_leave_the_default_executor_free(messages_service: MessagesService) -> None:
    # Every count thread busy (a hostile text holds one for seconds): the default executor, which
    # resolves upstream host names, still answers at once; and the other way round.
    body, size = big_request()
    req = decode_count_tokens_request(body)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        release = threading.Event()
        busy = [loop.run_in_executor(service.count_pool(), release.wait, 30) for _ in range(service.COUNT_THREADS)]
        try:
            assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 5) == "free"
            counting = asyncio.ensure_future(messages_service.count(req, MODEL, size))
            await asyncio.sleep(0.2)
            assert not counting.done()  # queued behind the busy count threads
        finally:
            release.set()
            await asyncio.gather(*busy)
        assert await asyncio.wait_for(counting, 30) == count_request_tokens(req, MODEL)

        default_release = threading.Event()
        blocked = [asyncio.ensure_future(asyncio.to_thread(default_release.wait, 30)) for _ in range(64)]
        try:
            assert await asyncio.wait_for(messages_service.count(req, MODEL, size), 30) > 80_000
        finally:
            default_release.set()
            await asyncio.gather(*blocked)

    asyncio.run(main())


# --- the answer's plumbing: what runs inline and what goes through count(), edit_context(), acquire() --


ROUTED = "openai/gpt-4o"  # a Messages model the default routing serves (o200k)
HELD_KEY = {"ANTHROPIC_GATEWAY_UPSTREAM_KEY": "sk-held-key", "ANTHROPIC_GATEWAY_RETRIES": "0"}


class _Stop(Exception):
    """Raised by the stubbed dispatch once it has seen what the service hands it."""


def _messages_request(**extra: object) -> MessagesRequest:
    return decode_messages_request(orjson.dumps({"model": ROUTED, "max_tokens": 5, **extra,
                                                 "messages": [{"role": "user", "content": "hi there"}]}))  # fmt: skip


@pytest.mark.parametrize(
    ("size", "ready", "via_count"),
    [(100, True, False), (COUNT_IN_THREAD_BYTES, True, False), (COUNT_IN_THREAD_BYTES + 1, True, True),
     (100, False, True)],
    ids=["small", "at-the-threshold", "over-it", "tokenizer-not-loaded"],
)  # fmt: skip
def test_the_estimate_is_counted_inline_exactly_where_count_would_count_it_inline(
    messages_service: MessagesService, monkeypatch: pytest.MonkeyPatch, size: int, ready: bool, via_count: bool
) -> None:
    seen: dict[str, int] = {}

    async def count(self: MessagesService, req: object, model: str, size: int) -> int:
        seen["count"] = size
        return 7

    async def send(req: object, route: object, *, estimate: int | Callable[[], int], **kwargs: object) -> None:
        # counted inline: handed over as the count itself, which dispatch runs once the request is sent
        seen["estimate"] = estimate if isinstance(estimate, int) else -estimate()
        raise _Stop

    monkeypatch.setattr(MessagesService, "count", count)
    monkeypatch.setattr(service.dispatch, "send", send)
    monkeypatch.setattr(service, "is_ready", lambda model: ready)
    req = _messages_request()
    with pytest.raises(_Stop):
        asyncio.run(messages_service.answer(req, client=Client(trusted=True), record=RequestRecord("r", "POST", "/"),
                                            stream=False, size=size))  # fmt: skip
    assert seen == ({"count": size, "estimate": 7} if via_count else {"estimate": -count_request_tokens(req, ROUTED)})


@pytest.mark.parametrize("edits", [False, True])
def test_context_editing_runs_only_for_a_request_that_asks_for_it(
    messages_service: MessagesService, monkeypatch: pytest.MonkeyPatch, edits: bool
) -> None:
    seen: list[int] = []
    real = MessagesService.edit_context

    async def edit_context(self: MessagesService, req: Any, route: Any, tokens: int, size: int) -> Any:
        seen.append(tokens)
        return await real(self, req, route, tokens, size)

    async def send(req: object, route: object, *, estimate: int, **kwargs: object) -> None:
        raise _Stop

    monkeypatch.setattr(MessagesService, "edit_context", edit_context)
    monkeypatch.setattr(service.dispatch, "send", send)
    extra = {"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}} if edits else {}
    req = _messages_request(**extra)
    with pytest.raises(_Stop):
        asyncio.run(messages_service.answer(req, client=Client(trusted=True), record=RequestRecord("r", "POST", "/"),
                                            stream=False, size=100))  # fmt: skip
    assert seen == ([count_request_tokens(req, ROUTED)] if edits else [])


@pytest.mark.parametrize("limit", [None, 2])
def test_an_upstream_slot_is_taken_only_from_a_backend_with_a_concurrency_limit(
    monkeypatch: pytest.MonkeyPatch, limit: int | None
) -> None:
    settings = load_settings(environ=HELD_KEY)
    router = Router(settings)
    upstream = UpstreamClient(settings)
    route = router.resolve(ROUTED)
    route = dataclasses.replace(route, backend=dataclasses.replace(route.backend, max_concurrency=limit))
    acquired: list[str] = []
    real_acquire = UpstreamClient.acquire

    async def acquire(self: UpstreamClient, backend: Any) -> Any:
        acquired.append(backend.name)
        return await real_acquire(self, backend)

    async def post(self: UpstreamClient, backend: Any, body: bytes, key: str | None, *, stream: bool, **_: Any) -> Any:
        raise APIError("no upstream here", status=502)

    monkeypatch.setattr(UpstreamClient, "acquire", acquire)
    monkeypatch.setattr(UpstreamClient, "post", post)
    with pytest.raises(APIError, match="no upstream here"):
        asyncio.run(service.dispatch.send(_messages_request(), route, stream=False, estimate=3, client=Client(trusted=True),
                                          router=router, upstream=upstream, settings=settings))  # fmt: skip
    assert acquired == ([] if limit is None else [route.backend.name])
    if limit is not None:  # the slot went back after the failed call
        assert upstream._limits[route.backend.name]._value == limit


def test_a_passthrough_key_echoed_in_an_upstream_error_is_redacted_without_a_key_nothing_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(environ=HELD_KEY)
    router = Router(settings)
    route = router.resolve(ROUTED)

    async def post(self: UpstreamClient, backend: Any, body: bytes, key: str | None, *, stream: bool, **_: Any) -> Any:
        raise APIError(f"bad key {key} and sk-or-other", status=502)

    monkeypatch.setattr(UpstreamClient, "post", post)
    for client, message in [(Client(trusted=False, key="sk-client-secret-123"), "bad key [redacted] and sk-or-other"),
                            (Client(trusted=True), "bad key sk-held-key and")]:  # the held key: redacted where rendered
        with pytest.raises(APIError) as caught:
            asyncio.run(service.dispatch.send(_messages_request(), route, stream=False, estimate=3, client=client,
                                              router=router, upstream=UpstreamClient(settings), settings=settings))  # fmt: skip
        assert caught.value.message.startswith(message)


class _Sent(Exception):
    """Raised by the stubbed post once the request is (notionally) written and on_sent has run."""


@pytest.mark.parametrize("window", [None, 1000])
def test_a_deferred_estimate_is_counted_once_after_the_request_is_sent_unless_a_window_clamps_first(
    monkeypatch: pytest.MonkeyPatch, window: int | None
) -> None:
    settings = load_settings(environ=HELD_KEY)
    router = Router(settings)
    route = dataclasses.replace(router.resolve(ROUTED), context_window=window)
    events: list[str] = []
    bodies: list[dict[str, Any]] = []

    def count() -> int:
        events.append("counted")
        return 997

    async def post(self: UpstreamClient, backend: Any, body: Any, key: str | None, *, stream: bool,
                   on_sent: Callable[[], object] | None = None) -> Any:  # fmt: skip
        bodies.append(orjson.loads(body if isinstance(body, bytes) else body.json))
        events.append("sent")
        if on_sent is not None:
            on_sent()
        raise APIError("no upstream here", status=502)

    monkeypatch.setattr(UpstreamClient, "post", post)
    req = _messages_request()
    with pytest.raises(APIError, match="no upstream here"):
        asyncio.run(service.dispatch.send(req, route, stream=False, estimate=count, client=Client(trusted=True),
                                          router=router, upstream=UpstreamClient(settings), settings=settings))  # fmt: skip
    # With a window the clamp needs it before the body is built (1000 - 997 leaves 3 of the 5 asked);
    # without one it is counted once, right after the request is written, while the upstream works.
    assert events == (["counted", "sent"] if window else ["sent", "counted"])
    assert bodies[0].get("max_tokens", bodies[0].get("max_completion_tokens")) == (3 if window else 5)
