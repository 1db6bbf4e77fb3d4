"""Anthropic's web_search server tool through the real gateway (websearch/), with the SDK.

OpenRouter backends: the web plugin runs the search and its url_citation annotations become the
search blocks and citations. Other kinds: the gateway's SearXNG-compatible backend, or a 400.
The request shape is Claude Code 2.1.332's WebSearch sub-request (tests/data fixture).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest

from conftest import CLIENT_KEY, GATEWAY_ENV, GatewayProcess, SpawnGateway
from fake_upstream import FakeUpstream, Reply
from paths import CLAUDE_CODE_LATEST_FIXTURE

SUBREQUEST: dict[str, Any] = json.loads(CLAUDE_CODE_LATEST_FIXTURE.read_text())["websearch_subrequest"]
ANSWER = "The gateway speaks Anthropic. It runs on OpenRouter."
A_URL, B_URL = "https://example.com/gateway", "https://docs.example.org/openrouter"
ANNOTATIONS = [
    {"type": "url_citation", "url_citation": {"url": A_URL, "title": "Gateway docs", "content": "It speaks Anthropic.",
                                              "start_index": 0, "end_index": 29}},
    {"type": "url_citation", "url_citation": {"url": B_URL, "title": "OpenRouter", "start_index": 30,
                                              "end_index": len(ANSWER)}},
]  # fmt: skip


def completion(content: str = ANSWER, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if annotations is not None:
        msg["annotations"] = annotations
    return {"id": "gen-1", "object": "chat.completion", "created": 1, "model": "fake/model",
            "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 900, "completion_tokens": 20, "total_tokens": 920,
                      "server_tool_use": {"web_search_requests": 1}}}  # fmt: skip


@dataclass
class Resp:
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def post(gw: GatewayProcess, body: dict[str, Any]) -> Resp:
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    req = urllib.request.Request(gw.url + "/v1/messages?beta=true", data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return Resp(r.status, r.read().decode())
    except urllib.error.HTTPError as err:
        return Resp(err.code, err.read().decode())


def check_search_answer(content: list[dict[str, Any]], query: str) -> None:
    use, result, first, second = content
    assert use["type"] == "server_tool_use" and use["name"] == "web_search"
    assert use["id"].startswith("srvtoolu_") and use["input"] == {"query": query}
    assert result["type"] == "web_search_tool_result" and result["tool_use_id"] == use["id"]
    assert [(r["type"], r["url"], r["title"]) for r in result["content"]] == [
        ("web_search_result", A_URL, "Gateway docs"), ("web_search_result", B_URL, "OpenRouter")]  # fmt: skip
    assert all(r["encrypted_content"] for r in result["content"])
    assert first["text"] + second["text"] == ANSWER  # the space between the spans stays with the first
    (c1,), (c2,) = first["citations"], second["citations"]
    assert (c1["type"], c1["url"], c1["title"], c1["cited_text"]) == (
        "web_search_result_location", A_URL, "Gateway docs", "The gateway speaks Anthropic.")  # fmt: skip
    assert (c2["url"], c2["cited_text"]) == (B_URL, "It runs on OpenRouter.")
    assert c1["encrypted_index"] and c2["encrypted_index"]


@pytest.mark.parametrize("choice", [{"type": "auto"}, {"type": "tool", "name": "web_search"}])
def test_openrouter_web_plugin_answer_becomes_search_blocks(
    choice: dict[str, Any], openrouter_gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.json(completion(annotations=ANNOTATIONS)))
    body = {**SUBREQUEST, "stream": False, "tool_choice": choice,
            "tools": [{**SUBREQUEST["tools"][0], "allowed_domains": ["example.com", "example.org"]}]}  # fmt: skip
    resp = post(openrouter_gateway, body)
    assert resp.status_code == 200, resp.text
    message = resp.json()
    check_search_answer(message["content"], "gateway test query")
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["server_tool_use"] == {"web_search_requests": 1}

    sent = upstream.last_body
    assert sent["plugins"] == [{"id": "web", "max_results": 8, "include_domains": ["example.com", "example.org"]}]
    assert "tools" not in sent and "tool_choice" not in sent
    assert "stream" not in sent  # read whole: the results come with the end of the answer


def test_streamed_search_answer_is_anthropics_event_sequence(
    openrouter_gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.json(completion(annotations=ANNOTATIONS)))
    client = anthropic.Anthropic(base_url=openrouter_gateway.url, api_key=CLIENT_KEY, max_retries=0)
    params = {k: v for k, v in SUBREQUEST.items() if k not in ("stream", "metadata", "output_config")}
    with client.messages.stream(**params) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message().model_dump(exclude_none=True)
    check_search_answer(final["content"], "gateway test query")
    assert final["usage"]["server_tool_use"]["web_search_requests"] == 1
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert events.count("citation") == 2 and events.count("content_block_stop") == 4


def test_replayed_search_blocks_go_back_as_text(openrouter_gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.json(completion(annotations=ANNOTATIONS)), Reply.json(completion("Thanks.")))
    first = post(openrouter_gateway, {**SUBREQUEST, "stream": False}).json()
    later = {"model": "claude-opus-5-5", "max_tokens": 100, "messages": [
        SUBREQUEST["messages"][0], {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "Summarise that"}]}  # fmt: skip
    resp = post(openrouter_gateway, later)
    assert resp.status_code == 200, resp.text
    sent = upstream.last_body
    assert "plugins" not in sent  # no search asked this time
    assistant = next(m for m in sent["messages"] if m["role"] == "assistant")
    text = assistant["content"] if isinstance(assistant["content"], str) else "".join(
        p["text"] for p in assistant["content"])  # fmt: skip
    assert '[web_search called with {"query":"gateway test query"}]' in text
    assert f"- Gateway docs {A_URL}\n  It speaks Anthropic." in text
    assert f"- OpenRouter {B_URL}" in text
    assert text.endswith(f"- OpenRouter {B_URL}\n" + ANSWER)


def test_other_kinds_without_a_search_backend_get_a_400_naming_the_setting(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    resp = post(gateway, {**SUBREQUEST, "stream": True})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["message"].startswith("tools.0: 'web_search_20250305' (web search) runs on OpenRouter's web plugin")
    assert "ANTHROPIC_GATEWAY_WEB_SEARCH_URL" in err["message"]
    assert upstream.requests == []


SEARXNG = {"query": "gateway test query", "results": [
    {"url": A_URL, "title": "Gateway docs", "content": "It speaks Anthropic.", "publishedDate": "2026-11-01"},
    {"url": "https://blocked.example.net/x", "title": "Blocked", "content": "no"},
    {"url": B_URL, "title": "OpenRouter", "content": "It runs on OpenRouter."},
]}  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
def test_searxng_backend_runs_the_search_for_other_kinds(
    stream: bool, spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_WEB_SEARCH_URL": upstream.base_url + "/search"})
    upstream.expect(Reply.json(SEARXNG), Reply.json(completion(f"See {A_URL}: it speaks Anthropic.")))
    body = {**SUBREQUEST, "stream": stream,
            "tools": [{**SUBREQUEST["tools"][0], "blocked_domains": ["blocked.example.net"]}]}  # fmt: skip
    resp = post(gw, body)
    assert resp.status_code == 200, resp.text
    if stream:
        data = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")]
        assert [d["type"] for d in data][:2] == ["message_start", "content_block_start"]
        assert data[1]["content_block"]["type"] == "server_tool_use"
        assert data[-1]["type"] == "message_stop"
        assert data[-2]["usage"]["server_tool_use"] == {"web_search_requests": 1}
    else:
        use, result, text = resp.json()["content"]
        assert use["input"] == {"query": "gateway test query"}
        assert [(r["url"], r["page_age"]) for r in result["content"]] == [(A_URL, "2026-11-01"), (B_URL, None)]
        assert text["text"] == f"See {A_URL}: it speaks Anthropic."
        assert [c["url"] for c in text["citations"]] == [A_URL]

    search, chat = upstream.requests
    assert search.method == "GET" and search.path == "/v1/search?q=gateway+test+query&format=json"
    sent = chat.body
    assert "tools" not in sent and "plugins" not in sent
    context = sent["messages"][-1]["content"]
    context = context if isinstance(context, str) else "\n".join(p["text"] for p in context)
    assert f"[1] Gateway docs\n{A_URL}\nIt speaks Anthropic." in context and "Blocked" not in context
