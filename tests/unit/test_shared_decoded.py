"""Decoded tools, system prompts and long histories are shared by every request that sent the same bytes
(``schemas.tools_cache`` and ``system_cache``): whatever runs on a request afterwards - translation for
each kind of upstream, the token estimate - must leave those shared objects as they were decoded, or
one request's edits would reach the next."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from anthropic_gateway.schemas import SharedList, decode_messages_request, system_cache, tools_cache
from anthropic_gateway.shared_history import histories
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


def _long_history() -> list[bytes]:
    """Claude Code's second turn grown past shared_history.SMALLEST by repeating its turns, and the
    next turn (one more user message): the second shares the first's messages."""
    body = json.loads(CLAUDE_CODE_FIXTURE.read_text())["second_turn"]
    body.pop("context_management", None)  # clearing would replace the old tool results
    turns = body["messages"][1:]
    while len(json.dumps(body)) < 200_000:
        body["messages"] = body["messages"] + turns
    first = json.dumps(body).encode()
    body["messages"] = [*body["messages"], {"role": "assistant", "content": "ok"}, {"role": "user", "content": "go on"}]
    return [first, json.dumps(body).encode()]


@pytest.mark.parametrize(("kind", "env"), ROUTES)
def test_translating_and_counting_leave_a_shared_history_as_decoded(kind: Kind, env: dict[str, str]) -> None:
    histories.clear()
    first, second = _long_history()
    earlier = decode_messages_request(first)
    before = msgspec.json.encode(list(earlier.messages))
    r = route("claude-sonnet-5", kind, **env)
    for stream in (False, True):
        req = decode_messages_request(second)
        assert req.messages[0] is earlier.messages[0]  # shared
        to_openai_request(req, r, stream=stream)
        count_request_tokens(req, r.upstream_model)
    again = decode_messages_request(second)
    assert again.messages[0] is earlier.messages[0]
    assert msgspec.json.encode(list(again.messages[: len(earlier.messages) - 1])) == msgspec.json.encode(
        list(earlier.messages[:-1])
    )
    assert msgspec.json.encode(list(earlier.messages)) == before
    histories.clear()
