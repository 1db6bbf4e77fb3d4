"""Provider prompt caching (pure): breakpoints that reach the upstream intact, a stable prefix, and a
sticky session key.

- ``Marks`` puts a client's ``cache_control`` on the upstream part that ends the same prefix, in the
  target's style (``backends.prompt_cache_style``): whole, without ``ttl``, or not at all.
- ``limit_breakpoints`` keeps the last four (Anthropic rejects more; the last one covers the
  longest prefix).
- Claude Code's attribution block (``x-anthropic-billing-header: …``, with a per-request ``cch=`` in
  some configurations) means nothing upstream and would change the prefix: ``is_attribution`` finds it.
- ``session_key``: the conversation's key for OpenRouter's sticky routing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from anthropic_gateway.backends import MAX_BREAKPOINTS, CacheStyle
from anthropic_gateway.schemas import CacheControl, MessagesRequest, TextBlock

ATTRIBUTION_PREFIX = "x-anthropic-billing-header:"
MAX_SESSION_ID = 128


def is_attribution(text: str) -> bool:
    return text.lstrip().startswith(ATTRIBUTION_PREFIX)


def system_without_attribution(system: str | list[TextBlock] | None) -> str | list[TextBlock] | None:
    """The request's system prompt without the attribution block (or line, in a string)."""
    if isinstance(system, str):
        if not is_attribution(system):
            return system
        _, _, rest = system.lstrip().partition("\n")
        return rest.lstrip("\n")
    if system and any(is_attribution(b.text) for b in system):
        return [b for b in system if not is_attribution(b.text)]
    return system


class Marks:
    """Where a target takes breakpoints, in its style."""

    def __init__(self, style: CacheStyle) -> None:
        self.style = style
        self.on = style != "off"

    def value(self, cache_control: CacheControl) -> CacheControl:
        if self.style == "breakpoints" and "ttl" in cache_control:
            return {k: v for k, v in cache_control.items() if k != "ttl"}
        return cache_control

    def put(self, target: dict[str, Any], cache_control: CacheControl | None) -> None:
        if cache_control is not None and self.on:
            target["cache_control"] = self.value(cache_control)

    def mark_last(self, message: dict[str, Any], cache_control: CacheControl | None) -> bool:
        """Breakpoint on the last block of an upstream message (a hoisted system message's mark stays
        on the conversation where it stood). False when the message has no block to carry it."""
        if cache_control is None or not self.on:
            return True
        if message["role"] == "tool":
            message.setdefault("cache_control", self.value(cache_control))
            return True
        content = message.get("content")
        if isinstance(content, str):
            if not content:
                return False
            message["content"] = content = [{"type": "text", "text": content}]
        if not isinstance(content, list) or not content:
            return False
        content[-1].setdefault("cache_control", self.value(cache_control))
        return True


def _marked(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every dict that carries a breakpoint, in prompt order (tools, then messages)."""
    found: list[dict[str, Any]] = [t for t in body.get("tools") or () if "cache_control" in t]
    for message in body.get("messages") or ():
        if "cache_control" in message:
            found.append(message)
        content = message.get("content")
        if isinstance(content, list):
            found.extend(p for p in content if isinstance(p, dict) and "cache_control" in p)
    return found


def limit_breakpoints(body: dict[str, Any]) -> int:
    """Drop the earliest breakpoints past Anthropic's four (the top-level one counts); returns how
    many were dropped."""
    marked = _marked(body)
    room = MAX_BREAKPOINTS - (1 if "cache_control" in body else 0)
    excess = max(len(marked) - room, 0)
    for target in marked[:excess]:
        del target["cache_control"]
    return excess


def session_key(req: MessagesRequest, header: str | None) -> str:
    """The conversation's key: the client's session id when sent (hashed when too long for
    OpenRouter), else a hash of the system prompt and the first user message - both are the same on
    every turn of a conversation."""
    if header:
        if len(header) <= MAX_SESSION_ID and header.isprintable():
            return header
        return hashlib.sha256(header.encode()).hexdigest()
    h = hashlib.sha256()
    system = system_without_attribution(req.system)
    if isinstance(system, str):
        h.update(system.encode())
    elif system:
        for sys_block in system:
            h.update(sys_block.text.encode())
            h.update(b"\x00")
    h.update(b"\x01")
    first = next((m for m in req.messages if m.role == "user"), None)
    if first is not None:
        if isinstance(first.content, str):
            h.update(first.content.encode())
        else:
            for block in first.content:
                if isinstance(block, TextBlock):
                    h.update(block.text.encode())
                    h.update(b"\x00")
    return "agw-" + h.hexdigest()[:40]
