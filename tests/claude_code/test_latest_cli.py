"""What Claude Code 2.1.332 sends that 2.1.197 did not, through the gateway with the real CLI.

Every test runs on both versions; expectations that differ say which version they are for. The
shapes were captured from 2.1.332 with a fake Anthropic API (tests/data/claude-code-2.1.332-*.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from claude_code.harness import Script, Workspace, final_text, requests_per_turn
from conftest import GATEWAY_ENV, SpawnGateway
from fake_upstream import (
    FakeUpstream,
    Reply,
    error_body,
    finish_chunk,
    text_chunk,
    tool_call_chunk,
    usage_chunk,
)

ScriptFn = Any
LATEST = "2.1.332"
GENERIC_400 = "Provider returned error: invalid value for a field"

# Upstream calls for one turn the upstream answers with a generic 400, by (version, kind, memory):
# 2.1.197 does not retry a 400. 2.1.332 sends six requests (fewer betas twice: the same upstream
# body; no thinking.display; tool search off, then fewer betas and no display again), which the
# remembered refusal turns into two upstream calls, on either backend kind.
FAILING_TURN_CALLS = {
    ("2.1.197", "openai-compatible", "0"): 1,
    ("2.1.197", "openai-compatible", "60"): 1,
    ("2.1.197", "openrouter", "60"): 1,
    ("2.1.332", "openai-compatible", "0"): 6,
    ("2.1.332", "openai-compatible", "60"): 2,
    ("2.1.332", "openrouter", "60"): 2,
}


def tool_names(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools", [])]


@pytest.mark.parametrize(
    ("kind", "ttl"), [("openai-compatible", "0"), ("openai-compatible", "60"), ("openrouter", "60")]
)
def test_a_failing_turn_costs_at_most_two_upstream_calls(
    claude_bin: Path, claude_version: str, kind: str, ttl: str, spawn_gateway: SpawnGateway,
    upstream: FakeUpstream, workspace: Workspace,
) -> None:  # fmt: skip
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_BACKEND_KIND": kind,
                        "ANTHROPIC_GATEWAY_NEGATIVE_CACHE_TTL": ttl})  # fmt: skip
    upstream.always(Reply.json(error_body(400, GENERIC_400), status=400))
    run = workspace.claude(claude_bin, gw.url, "Say hello")

    assert run.returncode == 1, run.describe()
    result = run.result
    assert (result["is_error"], result["api_error_status"]) == (True, 400)
    assert result["result"] == f"API Error: 400 Upstream error: {GENERIC_400}"
    assert len(upstream.requests) == FAILING_TURN_CALLS[(claude_version, kind, ttl)]


def test_deferred_tools_reach_the_model_only_once_tool_search_loads_them(
    claude_bin: Path, claude_version: str, gateway: Any, upstream: FakeUpstream, workspace: Workspace,
    script: ScriptFn,
) -> None:  # fmt: skip
    if claude_version == LATEST:  # tool search is on: load WebFetch, then answer
        first = [tool_call_chunk(0, id="call_ts", name="ToolSearch", arguments='{"query": "select:WebFetch"}'),
                 finish_chunk("tool_calls"), usage_chunk(1200, 20)]  # fmt: skip
        script(Script([first, final_text("WebFetch is loaded.")]))
    else:  # 2.1.197 disables tool search for a non-Anthropic host and sends every tool
        script(Script([final_text("WebFetch is loaded.")]))
    run = workspace.claude(claude_bin, gateway.url, "Load the WebFetch tool", "--allowedTools", "ToolSearch")

    assert run.returncode == 0, run.describe()
    assert run.result["result"] == "WebFetch is loaded."
    bodies = [r.body for r in upstream.requests]
    assert all(isinstance(b, dict) for b in bodies)
    if claude_version == LATEST:
        assert requests_per_turn(upstream.requests) == [1, 1]
        first_tools, second_tools = tool_names(bodies[0]), tool_names(bodies[1])
        # The placeholder ("never call this tool") and the unloaded tools are not callable.
        assert "DeferredToolPlaceholder" not in first_tools + second_tools
        assert "ToolSearch" in first_tools and "WebFetch" not in first_tools
        assert len(first_tools) == 11
        # The ToolSearch result holds a tool_reference to WebFetch: from now on it is a function.
        assert "WebFetch" in second_tools and len(second_tools) == 12
        tool_msg = next(m for m in bodies[1]["messages"] if m["role"] == "tool")
        assert tool_msg["tool_call_id"] == "call_ts" and "WebFetch" in tool_msg["content"]
    else:
        assert requests_per_turn(upstream.requests) == [1]
        assert "WebFetch" in tool_names(bodies[0]) and "ToolSearch" not in tool_names(bodies[0])
        assert len(tool_names(bodies[0])) == 24


def test_max_tokens_is_clamped_to_the_alias_limit(
    claude_bin: Path, claude_version: str, spawn_gateway: SpawnGateway, upstream: FakeUpstream,
    workspace: Workspace, script: ScriptFn,
) -> None:  # fmt: skip
    # 2.1.332 asks claude-opus-5-5 for max_tokens 128000; 2.1.197 asks claude-opus-4-8 for 64000.
    models = {"claude-opus-*": {"model": "test/opus", "max_output_tokens": 32000}}
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_MODELS": json.dumps(models)})
    script(Script([[text_chunk("Hello."), finish_chunk("stop"), usage_chunk(1200, 2)]]))
    run = workspace.claude(claude_bin, gw.url, "Say hello")

    assert run.returncode == 0, run.describe()
    assert run.result["result"] == "Hello."
    (body,) = [r.body for r in upstream.requests]
    assert isinstance(body, dict)
    assert body["model"] == "test/opus"
    assert body["max_tokens"] == 32000


# --- WebSearch --------------------------------------------------------------------------------------

SEARCH_TEXT = "The gateway speaks Anthropic. It runs on OpenRouter."
DOCS_URL, OR_URL = "https://example.com/gateway", "https://docs.example.org/openrouter"
SEARCH_COMPLETION = {
    "id": "gen-search", "object": "chat.completion", "created": 1, "model": "fake/upstream-model",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": SEARCH_TEXT, "annotations": [
            {"type": "url_citation", "url_citation": {"url": DOCS_URL, "title": "Gateway docs",
                                                      "content": "It speaks Anthropic.", "start_index": 0,
                                                      "end_index": 29}},
            {"type": "url_citation", "url_citation": {"url": OR_URL, "title": "OpenRouter", "start_index": 30,
                                                      "end_index": len(SEARCH_TEXT)}}]}}],
    "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320,
              "server_tool_use": {"web_search_requests": 1}},
}  # fmt: skip
FINAL = f"It speaks Anthropic ([Gateway docs]({DOCS_URL})) and runs on OpenRouter ([OpenRouter]({OR_URL}))."


def test_web_search_runs_on_openrouters_web_plugin(
    claude_bin: Path, claude_version: str, openrouter_gateway: Any, upstream: FakeUpstream, workspace: Workspace
) -> None:
    main = Script([
        [tool_call_chunk(0, id="call_ws", name="WebSearch", arguments='{"query": "gateway test query"}'),
         finish_chunk("tool_calls"), usage_chunk(1200, 20)],
        final_text(FINAL),
    ])  # fmt: skip

    def answer(record: Any) -> Any:
        body = record.body if isinstance(record.body, dict) else {}
        return Reply.json(SEARCH_COMPLETION) if "plugins" in body else main(record)

    upstream.always(Reply.dynamic(answer))
    run = workspace.claude(claude_bin, openrouter_gateway.url, "Search the web for gateway test query",
                           "--allowedTools", "WebSearch")  # fmt: skip

    assert run.returncode == 0, run.describe()
    assert run.result["result"] == FINAL
    bodies = [r.body for r in upstream.requests]
    assert all(isinstance(b, dict) for b in bodies)
    searches = [b for b in bodies if "plugins" in b]
    loop = [b for b in bodies if "plugins" not in b]
    assert len(searches) == 1 and len(loop) == 2, [sorted(b) for b in bodies]
    (search,) = searches
    assert search["plugins"] == [{"id": "web", "max_results": 8}]
    assert "tools" not in search and "stream" not in search
    assert "gateway test query" in json.dumps(search["messages"])
    # What Claude Code kept from our answer: each result's title and URL, and the text.
    tool_msg = next(m for m in loop[1]["messages"] if m["role"] == "tool")
    assert tool_msg["tool_call_id"] == "call_ws"
    links = f'[{{"title":"Gateway docs","url":"{DOCS_URL}"}},{{"title":"OpenRouter","url":"{OR_URL}"}}]'
    assert tool_msg["content"] == (
        f'Web search results for query: "gateway test query"\n\nLinks: {links}\n\n{SEARCH_TEXT}\n\n\n'
        "REMINDER: You MUST include the sources above in your response to the user using markdown hyperlinks."
    )  # an answer without server_tool_use would say "Did no searches"


def test_web_search_runs_on_the_searxng_backend_for_other_kinds(
    claude_bin: Path, spawn_gateway: SpawnGateway, upstream: FakeUpstream, workspace: Workspace
) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_WEB_SEARCH_URL": upstream.base_url + "/search"})
    main = Script([
        [tool_call_chunk(0, id="call_ws", name="WebSearch", arguments='{"query": "gateway test query"}'),
         finish_chunk("tool_calls"), usage_chunk(1200, 20)],
        final_text(FINAL),
    ])  # fmt: skip
    results = {"results": [{"url": DOCS_URL, "title": "Gateway docs", "content": "It speaks Anthropic."}]}

    def answer(record: Any) -> Any:
        if record.method == "GET":
            return Reply.json(results)
        body = record.body if isinstance(record.body, dict) else {}
        if "tools" not in body:  # the search sub-request, its results added as context
            return Reply.json({**SEARCH_COMPLETION, "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": f"It speaks Anthropic ({DOCS_URL})."}}]})  # fmt: skip
        return main(record)

    upstream.always(Reply.dynamic(answer))
    run = workspace.claude(claude_bin, gw.url, "Search the web for gateway test query", "--allowedTools", "WebSearch")

    assert run.returncode == 0, run.describe()
    assert run.result["result"] == FINAL
    assert [r.method for r in upstream.requests].count("GET") == 1
    loop_last = upstream.requests[-1].body
    tool_msg = next(m for m in loop_last["messages"] if m["role"] == "tool")
    links = f'[{{"title":"Gateway docs","url":"{DOCS_URL}"}}]'
    assert tool_msg["content"].startswith(
        f'Web search results for query: "gateway test query"\n\nLinks: {links}\n\nIt speaks Anthropic ({DOCS_URL}).'
    )
