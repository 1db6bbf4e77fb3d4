"""Identifiers the gateway mints: message ids, tool_use ids, request ids.

They must be unique, not secret, so a per-process generator seeded from the OS replaces a system
call per id (urandom showed up at ~4% of a non-streamed request's CPU).
"""

from __future__ import annotations

import binascii
import os
import random

_rng = random.Random(os.urandom(32))
# base64, with its two non-alphanumerics mapped so ids stay within [a-zA-Z0-9] (the same ids as
# base64url's "-_" mapped the same way, without base64's and random's Python-level wrappers).
_TO_BASE62 = bytes.maketrans(b"+/", b"xz")
_getrandbits = _rng.getrandbits
_b64 = binascii.b2a_base64


def _random_id(prefix: str) -> str:
    return prefix + _b64(_getrandbits(144).to_bytes(18, "little"), newline=False).translate(_TO_BASE62).decode()


def message_id() -> str:
    return "msg_" + _b64(_getrandbits(144).to_bytes(18, "little"), newline=False).translate(_TO_BASE62).decode()


def tool_use_id() -> str:
    return _random_id("toolu_")


def server_tool_use_id() -> str:
    return _random_id("srvtoolu_")


def request_id() -> str:
    return "req_" + _b64(_getrandbits(144).to_bytes(18, "little"), newline=False).translate(_TO_BASE62).decode()


def reseed_after_fork() -> None:
    """Forked workers must not share the parent's sequence."""
    _rng.seed(os.urandom(32))


os.register_at_fork(after_in_child=reseed_after_fork)
