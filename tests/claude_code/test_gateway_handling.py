"""Claude Code requests the headless CLI cannot be made to send, replayed in the shape CLI 2.1.197
sends them (see /work/shared/reference/claude-code.md); these need no CLI."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from conftest import CLIENT_KEY, HAIKU, GatewayProcess
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk, usage_chunk

CLI_HEADERS = {
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
    "prompt-caching-scope-2026-01-05,structured-outputs-2025-12-15",
    "anthropic-dangerous-direct-browser-access": "true",
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.197 (external, cli)",
    "x-api-key": CLIENT_KEY,
}
TITLE_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}},
    "required": ["title"],
    "additionalProperties": False,
}
# Title generation: interactive sessions only, sent to the small/fast model, which the launcher
# points at the haiku tier (ANTHROPIC_SMALL_FAST_MODEL=claude-haiku-4-5) when that tier is configured.
TITLE_REQUEST: dict[str, Any] = {
    "model": "claude-haiku-4-5",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "Create hello.txt containing hi"}]}],
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.c5e; cc_entrypoint=cli;"},
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
         "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Generate a concise title for this coding session. Answer in JSON.",
         "cache_control": {"type": "ephemeral"}},
    ],
    "tools": [],
    "metadata": {"user_id": json.dumps({"device_id": "d", "account_uuid": "", "session_id": "s"})},
    "max_tokens": 32000,
    "thinking": {"type": "disabled"},
    "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": TITLE_SCHEMA}},
    "stream": True,
}  # fmt: skip


def test_title_request_json_schema_becomes_response_format(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.stream([text_chunk('{"title": "Create hello.txt"}'), finish_chunk("stop"),
                                  usage_chunk(300, 8)]))  # fmt: skip
    req = urllib.request.Request(
        gateway.url + "/v1/messages?beta=true", data=json.dumps(TITLE_REQUEST).encode(), headers=CLI_HEADERS
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        sse = resp.read().decode()
    events = [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: ")]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == '{"title": "Create hello.txt"}'
    assert events[-1]["type"] == "message_stop"

    body = upstream.last_body
    assert body["model"] == HAIKU
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "strict": True, "schema": TITLE_SCHEMA},
    }
    assert "tools" not in body
    assert "reasoning_effort" not in body and "reasoning" not in body  # thinking disabled: none asked


def test_head_root_prewarm_answers_200_without_auth(gateway: GatewayProcess) -> None:
    # Claude Code sends HEAD / with no auth headers at start-up to open a connection early.
    req = urllib.request.Request(gateway.url + "/", method="HEAD", headers={"user-agent": "Bun/1.4.0"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
        assert resp.read() == b""


def test_head_api_hello_prewarm_answers_200_without_auth(gateway: GatewayProcess) -> None:
    # Some Claude Code versions pre-warm with HEAD /api/hello instead of HEAD /.
    req = urllib.request.Request(gateway.url + "/api/hello", method="HEAD", headers={"user-agent": "Bun/1.4.0"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
        assert resp.read() == b""
