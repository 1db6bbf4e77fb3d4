"""The Message Batches routes (Anthropic's ``/v1/messages/batches…``) and the seed's streamed batch.

Ownership: where gateway keys are configured a batch belongs to the key that created it (its label,
never the key); only that key and admin keys see it. Anyone else gets the 404 an unknown id gets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from anthropic_gateway.auth import Client
from anthropic_gateway.batches import db
from anthropic_gateway.batches.envelope import parse_envelope
from anthropic_gateway.batches.objects import Batch, result_line
from anthropic_gateway.errors import APIError, InvalidRequestError, NotFoundError, shown
from anthropic_gateway.http.body import JSONResponse, page_limit, read_body
from anthropic_gateway.http.gateway import gateway_of, record_of

if TYPE_CHECKING:
    from anthropic_gateway.batches.engine import BatchEngine
    from anthropic_gateway.http.gateway import Gateway

JSONL = "application/x-jsonl"
BATCH_ID_HEADER = "anthropic-gateway-batch-id"
FLUSH_BYTES = 64 * 1024
ADMIN = "admin"


def _caller(request: Request) -> tuple[Gateway, Client, BatchEngine]:
    gw = gateway_of(request)
    client = gw.auth.check(request.headers)
    record_of(request).key_label = client.label
    engine = gw.batches
    if engine is None or not engine.running:
        raise APIError("Message Batches need the gateway's store, which is not open (see /health/detailed "
                       "or the start-up log)", status=503)  # fmt: skip
    return gw, client, engine


async def _owned(request: Request, engine: BatchEngine, client: Client) -> Batch:
    batch_id = request.path_params["batch_id"]
    batch = await db.get(engine.store, batch_id)
    if batch is None or (client.label != ADMIN and batch.owner != client.label):
        raise NotFoundError(f"message_batch: no batch with id '{shown(batch_id, 80)}'")
    return batch


async def _create(request: Request) -> tuple[Batch, BatchEngine]:
    gw, client, engine = _caller(request)
    if not client.trusted:
        raise InvalidRequestError(
            "Message Batches run after this request has ended, so they need an upstream key the gateway "
            "holds; in passthrough mode the gateway never stores your key. Send a gateway key "
            "(ANTHROPIC_GATEWAY_API_KEYS) instead of your upstream key to create a batch")  # fmt: skip
    body = await read_body(request, gw.settings.batch_max_body_bytes)
    envelope = parse_envelope(body, gw.settings.batch_max_requests)
    del body  # the envelope's raw slices keep it alive only until they are stored
    batch = await engine.create(client.label, envelope)
    return batch, engine


async def create_batch(request: Request) -> Response:
    batch, _ = await _create(request)
    return JSONResponse(batch.to_json())


async def retrieve_batch(request: Request) -> Response:
    _, client, engine = _caller(request)
    return JSONResponse((await _owned(request, engine, client)).to_json())


async def list_batches(request: Request) -> Response:
    _, client, engine = _caller(request)
    q = request.query_params
    limit = page_limit(q)
    owner = None if client.label == ADMIN else client.label
    batches, more = await db.page(engine.store, owner, limit, q.get("after_id"), q.get("before_id"))
    return JSONResponse({
        "data": [b.to_json() for b in batches], "has_more": more,
        "first_id": batches[0].id if batches else None, "last_id": batches[-1].id if batches else None,
    })  # fmt: skip


async def cancel_batch(request: Request) -> Response:
    _, client, engine = _caller(request)
    batch = await _owned(request, engine, client)
    return JSONResponse((await engine.cancel(batch)).to_json())


async def delete_batch(request: Request) -> Response:
    _, client, engine = _caller(request)
    batch = await _owned(request, engine, client)
    if batch.status != "ended":
        raise InvalidRequestError(f"Batch {batch.id} cannot be deleted while it is {batch.status}; "
                                  "cancel it first and delete it once processing_status is 'ended'")  # fmt: skip
    await db.delete(engine.store, batch.id)
    return JSONResponse({"id": batch.id, "type": "message_batch_deleted"})


async def batch_results(request: Request) -> Response:
    _, client, engine = _caller(request)
    batch = await _owned(request, engine, client)
    if batch.status != "ended":
        raise InvalidRequestError(f"Batch {batch.id} has not finished processing (processing_status "
                                  f"'{batch.status}'); its results are available once it has ended")  # fmt: skip
    return StreamingResponse(_results(engine, batch.id), media_type=JSONL)


async def _results(engine: BatchEngine, batch_id: str) -> AsyncIterator[bytes]:
    buf: list[bytes] = []
    size = 0
    async for custom_id, state, result in db.results(engine.store, batch_id):
        line = result_line(custom_id, state, result)
        buf.append(line)
        size += len(line)
        if size >= FLUSH_BYTES:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)


# --- the seed's endpoints -------------------------------------------------------------------------


async def run_batch(request: Request) -> Response:
    """Create a batch and stream its results as JSON Lines as each request finishes. The batch does
    not depend on this response: a client that goes away leaves it running, its results retrievable."""
    batch, engine = await _create(request)
    return StreamingResponse(_as_finished(engine, batch), media_type=JSONL, headers={BATCH_ID_HEADER: batch.id})


async def _as_finished(engine: BatchEngine, batch: Batch) -> AsyncIterator[bytes]:
    sent, last = 0, 0
    with engine.watch(batch.id) as changed:
        while sent < batch.total:
            changed.clear()
            rows = await db.finished_since(engine.store, batch.id, last)
            if rows:
                last = rows[-1][0]
                sent += len(rows)
                yield b"".join(result_line(cid, state, result) for _, cid, state, result in rows)
                continue
            if await db.get(engine.store, batch.id) is None:
                return  # deleted meanwhile
            with contextlib.suppress(TimeoutError):  # a safety net: commits here set the event (other
                # replicas' commits are seen by this poll)
                await asyncio.wait_for(changed.wait(), timeout=1.0 if engine.shared else 5.0)


async def batch_status(request: Request) -> Response:
    _, client, engine = _caller(request)
    batch = await _owned(request, engine, client)
    body = batch.to_json()
    body["progress"] = {"total": batch.total, **await engine.live_counts(batch.id)}
    return JSONResponse(body)
