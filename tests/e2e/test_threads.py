"""Message threads (issue 12 §1) with the Python SDK's real tool runner, which threads by default: turn 1
`create`s, turn 2 `continue`s with only the tool result. What reaches the upstream on every turn is the
whole conversation, with the tools and the system prompt. The rejections are the ones the SDK's
thread code recovers from (anthropic/lib/threads/_thread_state.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import ThreadUnsupportedRequestError

from conftest import CLIENT_KEY, GATEWAY_ENV, GatewayProcess
from e2e import MODEL
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk, tool_call_chunk, usage_chunk

QUESTION: Any = [{"role": "user", "content": "Weather in Paris?"}]
SYSTEM = "You answer weather questions."
CALL = [tool_call_chunk(0, id="call_w", name="get_weather", arguments='{"city": "Paris"}'), finish_chunk("tool_calls"),
        usage_chunk(40, 9)]  # fmt: skip
DONE = [text_chunk("It is sunny in Paris."), finish_chunk("stop"), usage_chunk(60, 7)]


@anthropic.beta_tool
def get_weather(city: str) -> str:
    """Current weather for a city.

    Args:
        city: The city.
    """
    return f"sunny in {city}"


class Sent:
    """The bodies the SDK sent to the gateway, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def hook(self, request: httpx2.Request) -> None:
        if request.url.path.endswith("/v1/messages"):
            self.bodies.append(json.loads(request.content))


def sdk_client(gw: GatewayProcess, sent: Sent, key: str = CLIENT_KEY) -> anthropic.Anthropic:
    http = httpx2.Client(event_hooks={"request": [sent.hook]})
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, http_client=http)


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def sdk(gateway: GatewayProcess, upstream: FakeUpstream, sent: Sent) -> Iterator[anthropic.Anthropic]:
    with sdk_client(gateway, sent) as c:
        yield c


def run(client: anthropic.Anthropic, stream: bool) -> list[Any]:
    runner = client.beta.messages.tool_runner(model=MODEL, max_tokens=200, system=SYSTEM, messages=QUESTION,
                                              tools=[get_weather], stream=stream)  # fmt: skip
    if stream:
        return [s.get_final_message() for s in runner]
    return list(runner)


def upstream_turn_two(body: dict[str, Any]) -> None:
    """The second upstream call carries the whole conversation, the tools and the system prompt."""
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool"]
    assert msgs[0]["content"] == SYSTEM
    assert msgs[1]["content"] == "Weather in Paris?"
    assert msgs[2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_w", "content": "sunny in Paris"}
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]


@pytest.mark.parametrize("stream", [False, True])
def test_the_tool_runner_threads_and_the_upstream_sees_everything(
    sdk: anthropic.Anthropic, upstream: FakeUpstream, sent: Sent, stream: bool
) -> None:
    upstream.expect(Reply.auto(CALL), Reply.auto(DONE))
    messages = run(sdk, stream)
    assert [m.stop_reason for m in messages] == ["tool_use", "end_turn"]
    assert messages[-1].content[0].text == "It is sunny in Paris."
    # What the SDK sent: a create with everything, then a continue with only the tool result.
    first, second = sent.bodies
    assert first["thread"] == {"type": "create"} and first["system"] == SYSTEM and "tools" in first
    assert second["thread"] == {"type": "continue", "previous_message_id": messages[0].id}
    assert "system" not in second and "tools" not in second
    assert [m["role"] for m in second["messages"]] == ["user"]
    assert second["messages"][0]["content"][0]["type"] == "tool_result"
    # What the upstream received.
    assert [m["role"] for m in upstream.bodies[0]["messages"]] == ["system", "user"]  # type: ignore[index]
    upstream_turn_two(upstream.bodies[1])  # type: ignore[arg-type]
    assert "thread" not in upstream.bodies[1]  # type: ignore[operator]


def test_threads_off_the_runner_resends_the_history_itself(
    spawn_gateway: Any, upstream: FakeUpstream, sent: Sent
) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_THREADS": "false"})
    upstream.expect(Reply.auto(CALL), Reply.auto(DONE))
    with sdk_client(gw, sent) as client:
        messages = run(client, stream=False)
    assert [m.stop_reason for m in messages] == ["tool_use", "end_turn"]
    # create refused → the same turn again without `thread`, and every later turn with the full history.
    assert [("thread" in b, len(b["messages"])) for b in sent.bodies] == [(True, 1), (False, 1), (False, 3)]
    assert len(upstream.requests) == 2
    upstream_turn_two(upstream.bodies[1])  # type: ignore[arg-type]


def _raw(gw: GatewayProcess, body: dict[str, Any], key: str = CLIENT_KEY, path: str = "/v1/messages") -> httpx2.Response:
    return httpx2.post(gw.url + path, json=body, headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                       timeout=30)  # fmt: skip


def _create(gw: GatewayProcess, upstream: FakeUpstream, key: str = CLIENT_KEY) -> str:
    upstream.expect(Reply.auto(DONE))
    r = _raw(gw, {"model": MODEL, "max_tokens": 50, "system": SYSTEM, "messages": QUESTION, "thread": {"type": "create"}},
             key)  # fmt: skip
    assert r.status_code == 200, r.text
    message_id: str = r.json()["id"]
    return message_id


def _continue(gw: GatewayProcess, previous: str, key: str = CLIENT_KEY, **extra: Any) -> httpx2.Response:
    return _raw(gw, {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "And tomorrow?"}],
                     "thread": {"type": "continue", "previous_message_id": previous}, **extra}, key)  # fmt: skip


def _error(r: httpx2.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


def test_a_continue_sends_the_whole_conversation_upstream(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    first = _create(gateway, upstream)
    upstream.expect(Reply.auto([text_chunk("Rain."), finish_chunk("stop")]))
    r = _continue(gateway, first)
    assert r.status_code == 200, r.text
    assert [(m["role"], m["content"]) for m in upstream.last_body["messages"]] == [
        ("system", SYSTEM), ("user", "Weather in Paris?"), ("assistant", "It is sunny in Paris."),
        ("user", "And tomorrow?"),
    ]  # fmt: skip


def test_unknown_previous_id_is_thread_not_found(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    r = _continue(gateway, "msg_does_not_exist")
    assert r.status_code == 404
    assert _error(r)["type"] == "not_found_error"
    assert _error(r)["details"] == {"error_code": "thread_not_found"}
    assert upstream.requests == []


def test_another_callers_thread_is_not_found(spawn_gateway: Any, upstream: FakeUpstream) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_API_KEYS": "key-a,key-b"})
    first = _create(gw, upstream, key="key-a")
    r = _continue(gw, first, key="key-b")
    assert (r.status_code, _error(r)["details"]) == (404, {"error_code": "thread_not_found"})
    upstream.expect(Reply.auto(DONE))
    assert _continue(gw, first, key="key-a").status_code == 200


def test_an_expired_thread_is_not_found(spawn_gateway: Any, upstream: FakeUpstream) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_THREAD_TTL": "0.2"})
    first = _create(gw, upstream)
    time.sleep(0.4)
    r = _continue(gw, first)
    assert (r.status_code, _error(r)["details"]) == (404, {"error_code": "thread_not_found"})


def test_a_position_is_continued_once(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    first = _create(gateway, upstream)
    upstream.expect(Reply.auto(DONE))
    assert _continue(gateway, first).status_code == 200
    r = _continue(gateway, first)
    assert (r.status_code, _error(r)["details"]) == (400, {"error_code": "thread_already_continued"})
    assert _error(r)["type"] == "invalid_request_error"


def test_a_continue_repeating_tools_is_unsupported(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    first = _create(gateway, upstream)
    r = _continue(gateway, first, tools=[{"name": "x", "input_schema": {"type": "object"}}])
    assert r.status_code == 400
    assert _error(r)["details"] == {"error_code": "thread_unsupported_request", "unsupported": ["tools"]}


def test_threads_off_is_thread_unsupported_request(spawn_gateway: Any, upstream: FakeUpstream) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_THREADS": "false"})
    r = _raw(gw, {"model": MODEL, "max_tokens": 50, "messages": QUESTION, "thread": {"type": "create"}})
    assert r.status_code == 400
    assert _error(r)["details"] == {"error_code": "thread_unsupported_request"}
    with sdk_client(gw, Sent()) as client, pytest.raises(ThreadUnsupportedRequestError):
        client.beta.messages.create(model=MODEL, max_tokens=50, messages=QUESTION, thread={"type": "create"})


def test_a_bad_thread_field_names_it(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    r = _raw(gateway, {"model": MODEL, "max_tokens": 50, "messages": QUESTION, "thread": {"type": "continue"}})
    assert (r.status_code, _error(r)["type"]) == (400, "invalid_request_error")
    assert _error(r)["message"].startswith("thread.previous_message_id:")


def test_count_tokens_counts_the_whole_thread(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    first = _create(gateway, upstream)
    counted = _raw(gateway, {"model": MODEL, "messages": [{"role": "user", "content": "And tomorrow?"}],
                             "thread": {"type": "continue", "previous_message_id": first}},
                   path="/v1/messages/count_tokens").json()["input_tokens"]  # fmt: skip
    full = _raw(gateway, {"model": MODEL, "system": SYSTEM, "messages": [
        *QUESTION, {"role": "assistant", "content": [{"type": "text", "text": "It is sunny in Paris."}]},
        {"role": "user", "content": "And tomorrow?"}]}, path="/v1/messages/count_tokens").json()["input_tokens"]  # fmt: skip
    assert counted == full
    # Counting changes nothing: the position can still be continued.
    upstream.expect(Reply.auto(DONE))
    assert _continue(gateway, first).status_code == 200
