"""Identifiers the gateway mints: message ids, tool_use ids, request ids."""

from __future__ import annotations

import secrets

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _random62(n: int) -> str:
    # One urandom call per id; indexing by byte % 62 has a negligible bias for non-cryptographic ids.
    return "".join(_BASE62[b % 62] for b in secrets.token_bytes(n))


def message_id() -> str:
    return "msg_" + _random62(24)


def tool_use_id() -> str:
    return "toolu_" + _random62(24)


def request_id() -> str:
    return "req_" + _random62(24)
