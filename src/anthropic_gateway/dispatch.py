"""Sending one client request upstream: the model's route, then its fallbacks, with bounded retries.

A candidate is retried (same backend) or abandoned for the next fallback on 429, 5xx, timeouts and
connection errors - only before any byte went to the client, which is always the case here because
this runs before the response starts. Waits honour Retry-After, back off with jitter, and their total
is capped (settings.retry_max_wait): past it the last error goes back to the client, whose SDK retries
on its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from anthropic_gateway.auth import Client, upstream_key
from anthropic_gateway.errors import GatewayError
from anthropic_gateway.httpclient import Response
from anthropic_gateway.keys import key_hint
from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.routing import Route, Router
from anthropic_gateway.schemas import MessagesRequest
from anthropic_gateway.settings import Settings
from anthropic_gateway.shared_history import SharedHistory
from anthropic_gateway.translate.context import RequestContext
from anthropic_gateway.translate.policy import prepare_request
from anthropic_gateway.upstream import Payload, UpstreamClient, encode_body, no_slot, read_capped
from anthropic_gateway.upstream_errors import CallInfo, from_response, redact

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 1 << 20  # an error body is read only this far: its message is all we need
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 524, 529})


@dataclass(slots=True)
class Answer:
    """A 2xx upstream response, and what translating it back needs."""

    response: Response
    ctx: RequestContext
    route: Route
    info: CallInfo
    release_slot: Any
    key: str | None  # the key the call used (None: the backend takes none), redacted from anything sent back
    estimate: int = 0  # the request's input-token estimate (message_start's, a usage the upstream left out)


def _size_hint(req: MessagesRequest) -> int:
    """The client's body length when known (a remembered long history's), with an eighth more: the
    translated body is about as long (0 otherwise: small bodies are encoded as bytes)."""
    messages = req.messages
    if isinstance(messages, SharedHistory):
        size = len(messages.entry.body)
        return size + size // 8
    return 0


def _call_info(req: MessagesRequest, candidate: Route, estimate: int, client_key_used: bool, key: str | None) -> CallInfo:
    return CallInfo(input_estimate=estimate, max_tokens=req.max_tokens, client_key_used=client_key_used,
                    context_window=candidate.context_window,
                    key_sent=key is not None, key_hint=key_hint(candidate.backend))  # fmt: skip


class _Sent:
    """``Pool.request``'s ``on_sent``: the call's CallInfo (and so the estimate, counted then if it
    was not yet), made once the request is written; ``info`` stays None until it is called."""

    __slots__ = ("candidate", "client_key_used", "counted", "info", "key", "req")

    def __init__(self, req: MessagesRequest, candidate: Route, counted: Callable[[], int], client_key_used: bool,
                 key: str | None) -> None:  # fmt: skip
        self.req, self.candidate, self.counted = req, candidate, counted
        self.client_key_used, self.key = client_key_used, key
        self.info: CallInfo | None = None

    def __call__(self) -> CallInfo:
        info = self.info = _call_info(self.req, self.candidate, self.counted(), self.client_key_used, self.key)
        return info


def _retry_after(err: GatewayError) -> float | None:
    value = err.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def send(
    req: MessagesRequest,
    route: Route,
    *,
    stream: bool,
    estimate: int | Callable[[], int],
    client: Client,
    router: Router,
    upstream: UpstreamClient,
    settings: Settings,
    record: RequestRecord | None = None,
    session: str | None = None,
) -> Coroutine[Any, Any, Answer]:
    """The first 2xx answer among the route and its fallbacks, or the error to send back.

    ``estimate`` is the request's input-token estimate, or the function that counts it: then it is
    counted once, when first needed - before the call for a candidate whose context window
    clamps max_tokens to what the input leaves, else right after the request is written, while the
    upstream works on it (off the request's critical path), or for an error that quotes it. Whatever
    an upstream echoed, the client's own key (passthrough) never reaches a response or a log line;
    the keys the gateway holds are redacted where errors are rendered. Without a client key there
    is nothing to redact: the answer is ``_send``'s coroutine itself, no coroutine around it."""
    answer = _send(req, route, stream=stream, estimate=estimate, client=client, router=router, upstream=upstream,
                   settings=settings, record=record or RequestRecord("-", "POST", "-"), session=session)  # fmt: skip
    return _redacted(answer, client.key) if client.key else answer


async def _redacted(answer: Coroutine[Any, Any, Answer], key: str) -> Answer:
    try:
        return await answer
    except GatewayError as err:
        err.message = redact(err.message, key)
        raise


async def _send(
    req: MessagesRequest,
    route: Route,
    *,
    stream: bool,
    estimate: int | Callable[[], int],
    client: Client,
    router: Router,
    upstream: UpstreamClient,
    settings: Settings,
    record: RequestRecord,
    session: str | None,
) -> Answer:
    router.output_limits.check(req.max_tokens, req.model)
    count = None if isinstance(estimate, int) else estimate
    known = estimate if isinstance(estimate, int) else None

    def counted() -> int:
        nonlocal known
        if known is None:
            known = count() if count is not None else 0
        return known

    candidates = [route, *(router.resolve(name) for name in route.fallbacks)] if route.fallbacks else (route,)
    waited = 0.0
    last: GatewayError | None = None
    no_key: GatewayError | None = None  # a candidate without its key: the fallbacks are tried first
    for n, candidate in enumerate(candidates):
        try:
            body, ctx = prepare_request(  # the estimate only clamps to a context window
                req, candidate, stream=stream, default_params=settings.default_params, session=session,
                input_estimate=counted() if candidate.context_window is not None else known or 0,
            )
        except GatewayError:
            if n == 0:
                raise
            continue  # a fallback that cannot serve this request is skipped
        if n:
            record.fallbacks.append(candidate.alias or candidate.upstream_model)
        record.backend, record.upstream_model = candidate.backend.name, candidate.upstream_model
        try:
            key, client_key_used = upstream_key(candidate.backend, client)
        except GatewayError as err:
            no_key = no_key or err
            continue
        payload = encode_body(body, _size_hint(req))
        json = payload.json if isinstance(payload, Payload) else payload
        refused = upstream.refusals.lookup(candidate.backend.name, key, body, json)
        if refused is not None:
            log.info("upstream %s/%s refused this same request within %g s: its error again, no call",
                     candidate.backend.name, candidate.upstream_model, upstream.refusals.ttl)  # fmt: skip
            raise from_response(refused.status, refused.body, refused.headers,
                                _call_info(req, candidate, counted(), client_key_used, key))  # fmt: skip
        for attempt in range(settings.retries + 1):
            if attempt:
                record.retries += 1
            # No max_concurrency: acquire() would answer at once with its no-op release (no coroutine here)
            slot = no_slot if candidate.backend.max_concurrency is None else await upstream.acquire(candidate.backend)
            # The estimate (when still to count) and the call's CallInfo are made right after the
            # request's write, while the upstream works: not between its answer and the client's.
            sent = _Sent(req, candidate, counted, client_key_used, key)
            try:
                response = await upstream.post(candidate.backend, payload, key, stream=stream, on_sent=sent)
            except GatewayError as err:
                slot()
                last = err
            else:
                record.upstream_status = response.status
                info = sent.info or sent()
                if 200 <= response.status < 300:
                    return Answer(response, ctx, candidate, info, slot, key, info.input_estimate)
                try:
                    raw, _ = await read_capped(response, MAX_ERROR_BODY)
                except Exception:  # a body we cannot read still has a status to map
                    raw = b""
                finally:
                    response.release()
                    slot()
                last = from_response(response.status, raw, response.headers, info)
                if response.status not in RETRYABLE_STATUS:
                    upstream.refusals.remember(candidate.backend.name, key, body, json, response.status, raw,
                                               response.headers)  # fmt: skip
                    raise last
            log.info("upstream %s/%s failed (%s); attempt %d", candidate.backend.name, candidate.upstream_model,
                     last.http_status, attempt + 1)  # fmt: skip
            if attempt == settings.retries:
                break
            delay = max(min(0.5 * 2**attempt, 8.0) * random.uniform(0.75, 1.0), _retry_after(last) or 0.0)
            if waited + delay > settings.retry_max_wait:
                break  # the next candidate (if any) is tried at once; else the client retries itself
            await asyncio.sleep(delay)
            waited += delay
    raise last or no_key or AssertionError("no candidate was tried")
