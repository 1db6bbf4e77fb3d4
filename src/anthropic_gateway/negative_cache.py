"""Remembered upstream refusals: an identical request is not sent again within a short window.

Claude Code 2.1.332 answers a generic 400 by re-sending the turn up to five times: twice with fewer
``anthropic-beta`` headers (the translated upstream body is the same), then with ``thinking.display``
dropped and with tool search off. Each identical retry would cost an upstream call that fails the same
way. So a 4xx that says the request itself is wrong is kept for ``negative_cache_ttl`` seconds under
the hash of (backend, upstream key, translated body), and an identical request gets the same error at
once. Not kept: 408/409/429 (retryable), 401/402/403 (the key's or the account's state, which can change
between two requests) and anything 5xx.

Nothing is hashed while the cache is empty, nor for a request whose (normalised) body length no
remembered refusal has, so a gateway whose upstream accepts its requests pays almost nothing for this
on its request path, even in the minute after a refusal.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

REMEMBERED_STATUS = frozenset(range(400, 500)) - {401, 402, 403, 408, 409, 429}
MAX_ENTRIES = 1024
MAX_BODY = 64 * 1024  # an error body longer than this is not kept (its message is at the start)
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    body: bytes
    headers: Any  # the upstream response's (case-insensitive) headers
    expires: float
    length: int  # normal_length of the request


class NegativeCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: OrderedDict[bytes, Refusal] = OrderedDict()
        self._lengths: Counter[int] = Counter()  # normalised body lengths of the entries
        # Told of each refusal remembered here (key, refusal): with redis_url, the other replicas
        # are sent it (shared/refusals.py), and ``adopt`` takes theirs.
        self.listener: Callable[[bytes, Refusal], None] | None = None

    def lookup(self, backend: str, upstream_key: str | None, body: dict[str, Any], payload: bytes | memoryview) -> Refusal | None:
        """The remembered refusal of this very request, if any (nothing is hashed while empty)."""
        if not self._entries or self._lengths[normal_length(body, payload)] == 0:
            return None
        key = make_key(backend, upstream_key, body, payload)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            self._drop(key)
            return None
        return entry

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self._lengths[entry.length] -= 1
        if not self._lengths[entry.length]:
            del self._lengths[entry.length]

    def remember(self, backend: str, upstream_key: str | None, body: dict[str, Any], payload: bytes | memoryview,
                 status: int, raw: bytes, headers: Any) -> None:  # fmt: skip
        if self.ttl <= 0 or status not in REMEMBERED_STATUS or len(raw) > MAX_BODY:
            return
        now = time.monotonic()
        while self._entries:  # drop expired entries (and the oldest, past MAX_ENTRIES) from the old end
            oldest = next(iter(self._entries.values()))
            if oldest.expires > now and len(self._entries) < MAX_ENTRIES:
                break
            self._drop(next(iter(self._entries)))
        key = make_key(backend, upstream_key, body, payload)
        if key in self._entries:
            self._drop(key)
        length = normal_length(body, payload)
        refusal = Refusal(status, raw, headers, now + self.ttl, length)
        self._insert(key, refusal)
        if self.listener is not None:
            self.listener(key, refusal)

    def _insert(self, key: bytes, refusal: Refusal) -> None:
        if key in self._entries:
            self._drop(key)
        while len(self._entries) >= MAX_ENTRIES:
            self._drop(next(iter(self._entries)))
        self._entries[key] = refusal
        self._lengths[refusal.length] += 1

    def adopt(self, key: bytes, status: int, raw: bytes, headers: Any, ttl: float, length: int) -> None:
        """A refusal another replica remembered, for the ``ttl`` seconds it has left there."""
        if self.ttl <= 0 or status not in REMEMBERED_STATUS or len(raw) > MAX_BODY or ttl <= 0:
            return
        self._insert(key, Refusal(status, raw, headers, time.monotonic() + min(ttl, self.ttl), length))


def _without_exclude(body: dict[str, Any]) -> dict[str, Any] | None:
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and "exclude" in reasoning:
        return {k: v for k, v in reasoning.items() if k != "exclude"}
    return None


def normal_length(body: dict[str, Any], payload: bytes | memoryview) -> int:
    """The length of the payload make_key hashes, without encoding the body again."""
    stripped = _without_exclude(body)
    if stripped is None:
        return len(payload)
    return len(payload) - (len(_encode(body["reasoning"])) - len(_encode(stripped)))


def make_key(backend: str, upstream_key: str | None, body: dict[str, Any], payload: bytes | memoryview) -> bytes:
    """The hash of what the upstream was sent. OpenRouter's ``reasoning.exclude`` is left out: it
    only strips reasoning from OpenRouter's own answer (providers never see it), so it cannot make a
    request invalid, and 2.1.332's third retry differs from the first only there."""
    stripped = _without_exclude(body)
    if stripped is not None:
        payload = _encode({**body, "reasoning": stripped})
    h = hashlib.blake2b(digest_size=20)
    for part in (backend.encode(), (upstream_key or "").encode(), payload):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()
