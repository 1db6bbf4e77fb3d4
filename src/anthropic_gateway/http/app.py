"""The ASGI application: the front door over Starlette, and the lifetime of what the handlers use."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from anthropic_gateway import tokens
from anthropic_gateway.errors import GatewayError
from anthropic_gateway.http import errors
from anthropic_gateway.http.front import FrontDoor
from anthropic_gateway.http.gateway import Gateway
from anthropic_gateway.http.table import starlette_routes
from anthropic_gateway.ops import access_log
from anthropic_gateway.settings import Settings
from anthropic_gateway.store import StoreError

log = logging.getLogger("anthropic_gateway")

# The cyclic garbage collector, tuned for a server: a request allocates a few thousand objects, so
# the default young-generation threshold (700) ran a collection on nearly every request, and every
# full collection walked the ~60,000 objects of the loaded modules again. Those are frozen once the
# server is up (never scanned again); the young threshold is raised so a collection comes every
# few requests. Cycles are still collected; memory a request leaves behind is freed by refcount.
GC_THRESHOLDS = (10_000, 50, 100)


def _warm_up(model: str) -> None:
    # The compiled o200k counter makes no Python objects; tiktoken's build (no compiler at install,
    # or a cl100k default model) ends with a full collection (vocab._release_heap).
    tokens.warm_up(model)
    gc.freeze()  # what the tokenizer left too


def _start_warm_up(model: str, done: asyncio.Future[None]) -> threading.Thread:
    loop = done.get_loop()

    def finished() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        try:
            _warm_up(model)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop already closed: shutting down
                loop.call_soon_threadsafe(finished)

    thread = threading.Thread(target=run, name="tokenizer-warm-up", daemon=True)
    thread.start()
    return thread


def create_app(settings: Settings, gateway: Gateway | None = None) -> FrontDoor:
    gw = gateway or Gateway.build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.upstream.start()
        if gw.shared is not None:  # never fails start-up: Redis down is reported and retried
            await gw.shared.start()
        try:
            await gw.store.open()
            gw.ledger.start()
            try:
                await gw.keys.reload()
            except StoreError as err:  # a PostgreSQL store down at start: the periodic reload catches up
                log.error("gateway keys not loaded yet: %s", err)
            gw.keys.start()
            if gw.batches is not None:
                await gw.batches.start()
        except StoreError as err:  # the gateway serves without its ledger; /health/detailed says why
            log.error("%s: requests are served, but not recorded in the ledger", err)
        await gw.catalogue.start()  # the stored copy, then fetches in the background
        # Load the tokenizer (~0.25 s) in a thread once the server is up, so readiness is not delayed
        # by it; a count before then loads it on demand.
        loop = asyncio.get_running_loop()
        warmed: asyncio.Future[None] | None = None
        warm_up = None
        if settings.tokenizer_preload:
            warmed = loop.create_future()
            warm_up = loop.call_later(0.3, _start_warm_up, settings.sonnet_model, warmed)
        gw.prober.start(after=warmed)  # a probe's timeout is not spent waiting for the warm-up's GIL
        gw.lifecycle.serving()
        gc.freeze()  # no collection first: it would delay readiness; the warm-up's collection follows
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            yield
        finally:
            if warm_up is not None:
                warm_up.cancel()
            if gw.batches is not None:
                await gw.batches.close()
            gw.lifecycle.close()
            await gw.prober.close()
            await gw.catalogue.close()
            await gw.keys.close()
            await gw.ledger.close()
            await gw.store.close()
            if gw.shared is not None:
                await gw.shared.close()
            await gw.upstream.close()
            access_log.flush()

    app = Starlette(
        routes=starlette_routes(),
        exception_handlers={
            GatewayError: errors.on_gateway_error,
            HTTPException: errors.on_http_error,
            Exception: errors.on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return FrontDoor(app, gw)
