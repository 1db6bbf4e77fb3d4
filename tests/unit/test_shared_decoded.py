"""Decoded tools and system prompts are shared by every request that sent the same bytes
(``schemas.tools_cache`` and ``system_cache``): whatever runs on a request afterwards - translation for
each kind of upstream, the token estimate - must leave those shared objects as they were decoded, or
one request's edits would reach the next."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from anthropic_gateway.schemas import SharedList, decode_messages_request, system_cache, tools_cache
from anthropic_gateway.tokens import count_request_tokens
from anthropic_gateway.translate.request import to_openai_request
from paths import CLAUDE_CODE_FIXTURE, CLAUDE_CODE_LATEST_FIXTURE
from unit.helpers import Kind, route

BODIES = [
    json.dumps(body).encode()
    for path in (CLAUDE_CODE_FIXTURE, CLAUDE_CODE_LATEST_FIXTURE)
    for name, body in json.loads(path.read_text()).items()
    if not name.startswith(("headers", "_")) and isinstance(body, dict) and body.get("tools")
]

ROUTES: list[tuple[Kind, dict[str, str]]] = [
    ("openrouter", {"sonnet_model": "anthropic/claude-sonnet-4.5"}),  # cache_control marks, breakpoints
    ("openrouter", {"sonnet_model": "google/gemini-2.5-pro"}),  # Gemini's schema rewrite
    ("openai", {"sonnet_model": "gpt-4o"}),
    ("openai-compatible", {}),
]


def _searches(body: bytes) -> bool:
    # Anthropic's web search tool is OpenRouter's plugin; elsewhere websearch/ answers it (not here).
    return any(str(t.get("type", "")).startswith("web_search") for t in json.loads(body)["tools"])


def _snapshot(req: Any) -> tuple[bytes, bytes]:
    return msgspec.json.encode(req.tools), msgspec.json.encode(req.system)


@pytest.mark.parametrize(("kind", "env"), ROUTES)
def test_translating_and_counting_leave_the_shared_tools_and_system_prompt_as_decoded(
    kind: Kind, env: dict[str, str]
) -> None:
    assert len(BODIES) >= 4
    tools_cache.clear()
    system_cache.clear()
    for body in BODIES:
        if kind != "openrouter" and _searches(body):
            continue
        first = decode_messages_request(body)
        assert isinstance(first.tools, SharedList)
        before = _snapshot(first)
        r = route("claude-sonnet-5", kind, **env)
        for stream in (False, True):
            req = decode_messages_request(body)
            to_openai_request(req, r, stream=stream)
            count_request_tokens(req, r.upstream_model)
        again = decode_messages_request(body)
        assert isinstance(again.tools, SharedList) and again.tools.entry is first.tools.entry  # still shared
        assert _snapshot(again) == before
