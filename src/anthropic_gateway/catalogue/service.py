"""The model catalogue of the gateway's OpenRouter backends: fetched, stored, fed to routing.

After start-up (a second later, so start-up is not slowed) and then every ``catalogue_refresh_hours``
each OpenRouter backend's ``GET {url}/models`` is fetched (without a key: the list is public, and
no key leaves the gateway for it). A good answer replaces the stored copy (the ``kv`` table,
namespace ``catalogue``, one row per URL), so a restart without network uses the last good copy; a
failed fetch keeps the copy and is retried sooner (1 minute, doubling to an hour).

Each copy feeds the router: output limits through ``Router.feed_output_limits`` (the clamp and the
max_tokens ceiling of output_limits.py), context windows and capabilities through
``Router.feed_model_hints``. An alias's own ``max_output_tokens``, ``context_window`` and
``capabilities`` win over the catalogue's. Prices are read by ops.cost for each request's cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from anthropic_gateway.catalogue.facts import ModelFacts, Prices, lookup, parse_models
from anthropic_gateway.routing import ModelHint, Router
from anthropic_gateway.store import Store
from anthropic_gateway.upstream import UpstreamClient, read_capped

log = logging.getLogger(__name__)

NAMESPACE = "catalogue"
FIRST_FETCH_DELAY = 1.0
RETRY_FIRST, RETRY_MAX = 60.0, 3600.0
FETCH_TIMEOUT = 30.0
MAX_ANSWER_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class Source:
    """One catalogue URL (backends with the same URL share it) and its last good copy."""

    url: str
    backends: list[str]
    models: dict[str, ModelFacts] = field(default_factory=dict)
    fetched_at: float | None = None  # when the copy in use was fetched (wall clock)
    last_attempt: float | None = None
    last_error: str | None = None
    origin: str = "none"  # none | store | fetched

    def status(self) -> dict[str, Any]:
        age = None if self.fetched_at is None else round(time.time() - self.fetched_at, 1)
        return {"url": self.url, "backends": self.backends, "models": len(self.models), "origin": self.origin,
                "fetched_at": self.fetched_at, "age_seconds": age, "last_error": self.last_error}  # fmt: skip


def _encode(models: dict[str, ModelFacts], fetched_at: float) -> bytes:
    return orjson.dumps({"fetched_at": fetched_at, "models": [
        [m.id, [m.prices.input, m.prices.output, m.prices.cache_read, m.prices.cache_write], m.context_length,
         m.max_completion_tokens, None if m.capabilities is None else sorted(m.capabilities)]
        for m in models.values()]})  # fmt: skip


def _decode(raw: bytes) -> tuple[dict[str, ModelFacts], float]:
    data = orjson.loads(raw)
    models = {}
    for mid, prices, context, max_out, caps in data["models"]:
        models[mid] = ModelFacts(mid, Prices(*prices), context, max_out, None if caps is None else frozenset(caps))
    return models, float(data["fetched_at"])


class Catalogue:
    def __init__(self, router: Router, store: Store, refresh_hours: float, upstream: UpstreamClient) -> None:
        self.router = router
        self.store = store
        self.upstream = upstream  # its background pool makes the GET
        self.refresh = refresh_hours * 3600
        self.sources: dict[str, Source] = {}
        self._by_backend: dict[str, Source] = {}
        for backend in router.backends.values():
            if backend.kind.name != "openrouter":
                continue
            url = backend.base_url.rstrip("/") + "/models"
            source = self.sources.setdefault(url, Source(url, []))
            source.backends.append(backend.name)
            self._by_backend[backend.name] = source
        self._task: asyncio.Task[None] | None = None

    # --- what requests read -----------------------------------------------------------------

    def facts(self, backend: str | None, model: str | None) -> ModelFacts | None:
        source = self._by_backend.get(backend) if backend is not None else None
        if source is None or model is None or not source.models:
            return None
        return lookup(source.models, model)

    def prices(self, backend: str | None, model: str | None) -> Prices | None:
        facts = self.facts(backend, model)
        return facts.prices if facts is not None else None

    # --- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the stored copies (at once: they are small) and start the background fetches."""
        if not self.sources:
            return
        await self.load()
        if self.refresh > 0:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def load(self) -> None:
        for source in self.sources.values():
            try:
                row = await self.store.fetchone("SELECT value FROM kv WHERE namespace = ? AND key = ?",
                                                (NAMESPACE, source.url))  # fmt: skip
                if row is None:
                    continue
                models, fetched_at = _decode(bytes(row[0]))
            except Exception as err:  # a store that is down or a damaged row: fetch instead
                log.warning("model catalogue: the stored copy of %s cannot be read: %s", source.url, err)
                continue
            self._use(source, models, fetched_at, "store")

    async def _run(self) -> None:
        await asyncio.sleep(FIRST_FETCH_DELAY)
        retry = RETRY_FIRST
        while True:
            if all([await self.fetch(s) for s in self.sources.values()]):
                wait, retry = self.refresh, RETRY_FIRST
            else:
                wait, retry = min(retry, self.refresh), min(retry * 2, RETRY_MAX)
            await asyncio.sleep(wait)

    async def fetch(self, source: Source) -> bool:
        """One fetch of one source: True when a good copy was stored and is in use."""
        source.last_attempt = time.time()
        try:
            answer = await _get_json(self.upstream, source.url)
            models = parse_models(answer)
        except Exception as err:
            source.last_error = f"{type(err).__name__}: {err}"[:300]
            log.warning("model catalogue: fetching %s failed (%s); %s", source.url, source.last_error,
                        "keeping the copy in use" if source.models else "no copy yet")  # fmt: skip
            return False
        fetched_at = time.time()
        source.last_error = None
        self._use(source, models, fetched_at, "fetched")
        try:
            await self.store.execute(
                "INSERT INTO kv (namespace, key, value, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (namespace, key) "
                "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (NAMESPACE, source.url, _encode(models, fetched_at), fetched_at),
            )  # fmt: skip
        except Exception as err:
            log.warning("model catalogue: storing the copy of %s failed: %s", source.url, err)
        log.info("model catalogue: %d models from %s", len(models), source.url)
        return True

    def _use(self, source: Source, models: dict[str, ModelFacts], fetched_at: float, origin: str) -> None:
        source.models, source.fetched_at, source.origin = models, fetched_at, origin
        self.router.feed_output_limits({m.id: m.max_completion_tokens for m in models.values()
                                        if m.max_completion_tokens is not None})  # fmt: skip
        hints = {m.id: ModelHint(m.context_length, m.capabilities) for m in models.values()}
        for backend in source.backends:
            self.router.feed_model_hints(backend, hints)

    def status(self) -> dict[str, Any]:
        """For /health/detailed: each source's size, origin and age."""
        return {"refresh_hours": self.refresh / 3600, "sources": [s.status() for s in self.sources.values()]}


async def _get_json(upstream: UpstreamClient, url: str) -> Any:
    resp = await upstream.get(url, {"Accept": "application/json"}, timeout=FETCH_TIMEOUT)
    try:
        if resp.status != 200:
            raise ValueError(f"HTTP {resp.status}")
        body, complete = await read_capped(resp, MAX_ANSWER_BYTES)
        if not complete:
            raise ValueError("the answer exceeds 32 MB")
    finally:
        resp.release()
    # A ~1 MB answer parses in a few ms; in a thread all the same, so streams keep flowing.
    return await asyncio.to_thread(orjson.loads, body)
