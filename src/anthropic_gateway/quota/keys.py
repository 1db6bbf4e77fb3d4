"""Gateway keys: configured ones (the key in an environment variable) and stored ones (a hash).

A stored key is ``agw-`` and 40 random base62 characters; the store keeps its SHA-256 and a short
prefix for listing, never the key. The authenticator looks a presented key up by its hash in an
in-memory table, reloaded from the store every few seconds (and at once after a change through the
admin route), so `anthropic-gateway keys revoke` takes effect within that interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any

import orjson

from anthropic_gateway.quota.policy import KeyLimits
from anthropic_gateway.store import Store

log = logging.getLogger(__name__)

_ALPHABET = string.ascii_letters + string.digits
RELOAD_SECONDS = 5.0


def new_key() -> str:
    return "agw-" + "".join(secrets.choice(_ALPHABET) for _ in range(40))


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredKey:
    label: str
    prefix: str
    created_at: float
    revoked_at: float | None
    limits: KeyLimits

    def public(self) -> dict[str, Any]:
        return {"label": self.label, "prefix": self.prefix, "created_at": self.created_at,
                "revoked_at": self.revoked_at, "limits": self.limits.summary()}  # fmt: skip


class KeyError_(Exception):
    """A key operation that cannot be done (duplicate or unknown label); the message says why."""


class KeyStore:
    """The stored keys, and the in-memory table the authenticator reads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_hash: dict[str, tuple[str, KeyLimits]] = {}
        self._task: asyncio.Task[None] | None = None

    async def reload(self) -> None:
        rows = await self.store.fetchall("SELECT key_hash, label, limits FROM gateway_keys WHERE revoked_at IS NULL")
        self.by_hash = {h: (label, KeyLimits.model_validate(orjson.loads(limits))) for h, label, limits in rows}

    def start(self) -> None:
        self._task = asyncio.create_task(self._reload_periodically())

    async def _reload_periodically(self) -> None:
        while True:
            try:
                await self.reload()
            except Exception as err:  # a store hiccup keeps the last table
                log.warning("reloading the gateway keys failed: %s", err)
            await asyncio.sleep(RELOAD_SECONDS)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def create(self, label: str, limits: KeyLimits) -> str:
        key = new_key()
        try:
            await self.store.execute(
                "INSERT INTO gateway_keys (label, key_hash, prefix, created_at, revoked_at, limits) "
                "VALUES (?, ?, ?, ?, NULL, ?)",
                (label, key_hash(key), key[:8], time.time(), orjson.dumps(limits.summary()).decode()),
            )
        except Exception as err:
            if "UNIQUE" in str(err).upper():
                raise KeyError_(f"a key labelled '{label}' exists already: choose another label") from None
            raise
        await self.reload()
        return key

    async def update(self, label: str, limits: KeyLimits) -> None:
        n = await self.store.execute("UPDATE gateway_keys SET limits = ? WHERE label = ? AND revoked_at IS NULL",
                                     (orjson.dumps(limits.summary()).decode(), label))  # fmt: skip
        if n == 0:
            raise KeyError_(f"no active key labelled '{label}'")
        await self.reload()

    async def revoke(self, label: str) -> None:
        n = await self.store.execute("UPDATE gateway_keys SET revoked_at = ? WHERE label = ? AND revoked_at IS NULL",
                                     (time.time(), label))  # fmt: skip
        if n == 0:
            raise KeyError_(f"no active key labelled '{label}'")
        await self.reload()

    async def get(self, label: str) -> StoredKey | None:
        rows = [k for k in await self.list(include_revoked=True) if k.label == label]
        return rows[0] if rows else None

    async def list(self, include_revoked: bool = False) -> list[StoredKey]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        rows = await self.store.fetchall(
            f"SELECT label, prefix, created_at, revoked_at, limits FROM gateway_keys{where} ORDER BY created_at, label"
        )
        return [StoredKey(label, prefix, created, revoked, KeyLimits.model_validate(orjson.loads(limits)))
                for label, prefix, created, revoked, limits in rows]  # fmt: skip

    def lookup(self, presented: str) -> tuple[str, KeyLimits] | None:
        return self.by_hash.get(key_hash(presented))
