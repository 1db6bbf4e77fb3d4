"""Incoming authentication and the choice of upstream key.

Modes: no gateway keys configured → open (start-up refuses a non-loopback bind unless the network is
declared trusted); gateway keys configured → the client must present one (x-api-key or Bearer),
compared in constant time; passthrough → the client's key is the upstream key (for backends that have
no key of their own configured).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from anthropic_gateway.errors import APIError, AuthenticationError
from anthropic_gateway.routing import Backend
from anthropic_gateway.settings import UPSTREAM_KEY_VARS, Settings

NO_RETRY = {"x-should-retry": "false"}


def client_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.passthrough = settings.passthrough_auth
        self.keys = [k.encode() for k in settings.client_keys()]
        self.upstream_key = settings.upstream_key.get_secret_value() if settings.upstream_key else None

    def check(self, headers: Mapping[str, str]) -> str | None:
        """Authenticate the client; returns its key when it is to be passed through upstream."""
        presented = client_key(headers)
        if self.passthrough:
            if not presented:
                raise AuthenticationError(
                    "This gateway passes your key to the upstream: send it as x-api-key or Authorization: Bearer",
                    headers=NO_RETRY,
                )
            return presented
        if self.keys:
            given = (presented or "").encode()
            # Compare against every key so the time taken does not say which one nearly matched.
            ok = False
            for key in self.keys:
                ok |= hmac.compare_digest(given, key)
            if not ok:
                raise AuthenticationError("Invalid API key for this gateway", headers=NO_RETRY)
        return None


def upstream_key(backend: Backend, passthrough_key: str | None) -> tuple[str, bool]:
    """(the key for this backend, whether it is the client's own)."""
    if backend.key is not None and not (passthrough_key and backend.name == "default"):
        return backend.key.get_secret_value(), False
    if passthrough_key:
        return passthrough_key, True
    if backend.name == "default":
        hint = f"{UPSTREAM_KEY_VARS[0]} (or {UPSTREAM_KEY_VARS[1]})"
    else:
        hint = f"the variable named by backends.{backend.name}.key_env ({backend.key_env})"
    raise APIError(f"The gateway has no upstream API key for backend '{backend.name}': set {hint} and restart it",
                   headers=NO_RETRY)  # fmt: skip
