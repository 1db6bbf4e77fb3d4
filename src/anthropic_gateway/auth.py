"""Incoming authentication and the choice of upstream key.

Modes: no gateway keys configured → open (start-up refuses a non-loopback bind unless the network is
declared trusted); gateway keys configured → the client must present one (x-api-key or Bearer),
compared in constant time; passthrough → a client whose key is not one of the gateway's keys has that
key used as the upstream key, for every backend: it can never spend a key the gateway holds.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from anthropic_gateway.errors import AuthenticationError, PermissionDeniedError
from anthropic_gateway.keys import missing_key_error
from anthropic_gateway.routing import Backend
from anthropic_gateway.settings import Settings
from anthropic_gateway.upstream_errors import NO_RETRY

if TYPE_CHECKING:
    from anthropic_gateway.quota.keys import KeyStore
    from anthropic_gateway.quota.policy import KeyLimits


def client_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


@dataclass(frozen=True, slots=True)
class Client:
    """Who is calling. `trusted` clients may spend the upstream keys the gateway holds; a passthrough
    client (its key is not one of the gateway's) only ever spends its own `key`."""

    trusted: bool
    key: str | None = None
    # Who owns server-held state (threads): a digest of the key presented, "" when none was.
    partition: str = ""
    label: str = "open"  # names the caller in logs, metrics and the ledger; never the key itself
    limits: KeyLimits | None = None  # the key's allowed models, rate limits and budgets


@functools.lru_cache(maxsize=4096)  # per request, over a handful of keys: hashed once each
def key_label(prefix: str, key: str) -> str:
    """A stable, non-secret name for a key: a prefix and 8 hex digits of its SHA-256."""
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


@functools.lru_cache(maxsize=4096)
def partition_of(key: str) -> str:
    """Who owns server-held state for a presented key: 32 hex digits of a domain-separated SHA-256."""
    return hashlib.sha256(b"anthropic-gateway partition\0" + key.encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=4096)  # a Client is immutable: one per key an open gateway is shown
def _open_client(presented: str) -> Client:
    """An open gateway's caller who presented a key (spent nowhere: only its partition counts)."""
    return Client(trusted=True, partition=partition_of(presented))


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.passthrough = settings.passthrough_auth
        self.keys = [k.encode() for k in settings.client_keys()]
        self.admin_keys = [k.encode() for k in settings.admin_key_list()]
        self.labelled = [(label, key.encode(), limits) for label, key, limits in settings.gateway_keys()]
        self.stored: KeyStore | None = None  # keys created with `anthropic-gateway keys create`

    @property
    def requires_key(self) -> bool:
        return bool(self.keys or self.labelled or (self.stored is not None and self.stored.by_hash))

    def _member(self, presented: str) -> Client | None:
        """The client a gateway key names, or None. Configured keys are compared in constant time,
        all of them; stored keys are found by their hash."""
        if self.keys and _matches(presented, self.keys):
            return Client(trusted=True, label=key_label("key", presented))
        given = presented.encode()
        found: Client | None = None
        for label, key, limits in self.labelled:
            if hmac.compare_digest(given, key):
                found = Client(trusted=True, label=label, limits=limits if limits.limited or limits.models else None)
        if found is None and self.stored is not None:
            hit = self.stored.lookup(presented)
            if hit is not None:
                label, limits = hit
                found = Client(trusted=True, label=label, limits=limits if limits.limited or limits.models else None)
        return found

    def check(self, headers: Mapping[str, str]) -> Client:
        presented = client_key(headers)
        if presented and not self.passthrough and not self.admin_keys and not self.requires_key:
            return _open_client(presented)  # what _check and the partition below give an open gateway
        client = self._check(presented)
        if presented:
            client = Client(client.trusted, client.key, partition_of(presented), client.label, client.limits)
        return client

    def _check(self, presented: str | None) -> Client:
        member = self._member(presented) if presented and self.requires_key else None
        if member is not None:
            return member
        if self.admin_keys and presented and _matches(presented, self.admin_keys):
            return Client(trusted=True, label="admin")
        if self.passthrough:
            if not presented:
                raise AuthenticationError(
                    "This gateway passes your key to the upstream: send it as x-api-key or Authorization: Bearer",
                    headers=NO_RETRY,
                )
            return Client(trusted=False, key=presented, label=key_label("passthrough", presented))
        if self.requires_key:
            raise AuthenticationError("Invalid API key for this gateway", headers=NO_RETRY)
        return Client(trusted=True)  # an open gateway (loopback, or a network declared trusted)


    @property
    def admin_open(self) -> bool:
        """An open gateway (no keys of any kind, loopback or a trusted network): admin routes too."""
        return not self.requires_key and not self.admin_keys and not self.passthrough

    def check_admin(self, headers: Mapping[str, str]) -> None:
        """Admin routes: open on an open gateway; otherwise an admin key (401 without any key, 403
        with a client key that is not an admin key)."""
        if self.admin_open:
            return
        presented = client_key(headers)
        if presented and self.admin_keys and _matches(presented, self.admin_keys):
            return
        if not presented:
            raise AuthenticationError("This route needs an admin key (x-api-key or Authorization: Bearer)",
                                      headers=NO_RETRY)  # fmt: skip
        if not self.admin_keys:
            raise PermissionDeniedError("This route needs an admin key, and the gateway has none: set "
                                        "ANTHROPIC_GATEWAY_ADMIN_KEYS", headers=NO_RETRY)  # fmt: skip
        raise PermissionDeniedError("This route needs an admin key; the key given is not one", headers=NO_RETRY)


def _matches(presented: str | None, keys: list[bytes]) -> bool:
    given = (presented or "").encode()
    # Compare against every key so the time taken does not say which one nearly matched.
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given, key)
    return ok


def upstream_key(backend: Backend, client: Client) -> tuple[str | None, bool]:
    """(the key for this backend or None for a backend that takes none, whether it is the client's own)."""
    if not client.trusted:
        assert client.key is not None
        return client.key, True
    if backend.key is not None:
        return backend.key.get_secret_value(), False
    if backend.kind.requires_key:
        raise missing_key_error(backend)
    return None, False
