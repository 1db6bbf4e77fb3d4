"""Remembered upstream refusals: an identical request is not sent again within a short window.

Claude Code 2.1.332 answers a generic 400 by re-sending the turn up to five times: twice with fewer
``anthropic-beta`` headers (the translated upstream body is the same), then with ``thinking.display``
dropped and with tool search off. Each identical retry would cost an upstream call that fails the same
way. So a 4xx that says the request itself is wrong is kept for ``negative_cache_ttl`` seconds under
the hash of (backend, upstream key, translated body), and an identical request gets the same error at
once. Not kept: 408/409/429 (retryable), 401/402/403 (the key's or the account's state, which can change
between two requests) and anything 5xx.

Nothing is hashed while the cache is empty, so a gateway whose upstream accepts its requests pays
nothing for this on its request path.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
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


class NegativeCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: OrderedDict[bytes, Refusal] = OrderedDict()

    def lookup(self, backend: str, upstream_key: str | None, body: dict[str, Any], payload: bytes) -> Refusal | None:
        """The remembered refusal of this very request, if any (nothing is hashed while empty)."""
        if not self._entries:
            return None
        key = make_key(backend, upstream_key, body, payload)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            del self._entries[key]
            return None
        return entry

    def remember(self, backend: str, upstream_key: str | None, body: dict[str, Any], payload: bytes,
                 status: int, raw: bytes, headers: Any) -> None:  # fmt: skip
        if self.ttl <= 0 or status not in REMEMBERED_STATUS or len(raw) > MAX_BODY:
            return
        now = time.monotonic()
        while self._entries:  # drop expired entries (and the oldest, past MAX_ENTRIES) from the old end
            oldest = next(iter(self._entries.values()))
            if oldest.expires > now and len(self._entries) < MAX_ENTRIES:
                break
            self._entries.popitem(last=False)
        key = make_key(backend, upstream_key, body, payload)
        self._entries[key] = Refusal(status, raw, headers, now + self.ttl)
        self._entries.move_to_end(key)


def make_key(backend: str, upstream_key: str | None, body: dict[str, Any], payload: bytes) -> bytes:
    """The hash of what the upstream was sent. OpenRouter's ``reasoning.exclude`` is left out: it
    only strips reasoning from OpenRouter's own answer (providers never see it), so it cannot make a
    request invalid, and 2.1.332's third retry differs from the first only there."""
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and "exclude" in reasoning:
        payload = _encode({**body, "reasoning": {k: v for k, v in reasoning.items() if k != "exclude"}})
    h = hashlib.blake2b(digest_size=20)
    for part in (backend.encode(), (upstream_key or "").encode(), payload):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()
