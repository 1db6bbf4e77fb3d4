"""Hypothesis against the real gateway: requests drawn from the Messages request schema (valid and
nearly valid), and mutations of the real Claude Code bodies in tests/data (values replaced, keys
dropped or added, types changed, bytes truncated or corrupted)."""

from __future__ import annotations

import pytest

pytest.importorskip("hypothesis", reason="a dev dependency: pip install -e '.[dev]' (.ci/run does)")

import copy
import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import httpx2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import GatewayProcess
from fake_upstream import FakeUpstream
from fuzz import check, examples
from paths import CLAUDE_CODE_FIXTURE, CLAUDE_CODE_LATEST_FIXTURE

PATHS = ("/v1/messages", "/v1/messages/count_tokens", "/v1/messages/stream")
HEADERS = {"content-type": "application/json", "x-api-key": "fuzz-key", "anthropic-version": "2023-06-01"}
SETTINGS = {"deadline": None, "database": None, "derandomize": False, "print_blob": True,
            "suppress_health_check": list(HealthCheck)}  # fmt: skip


# --- strategies from the request schema ------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=40)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                          max_leaves=12)  # fmt: skip
odd_text = st.text(max_size=60) | st.sampled_from(["", " ", "\x00", "\ud7ff\ue000", "a" * 5000, "<script>", "%s%n"])
b64 = st.sampled_from(["iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
                       "AAAA", "not base64!", "", "JVBERi0xLjQK"])  # fmt: skip
cache_control = st.none() | st.just({"type": "ephemeral"}) | st.dictionaries(st.text(max_size=8), json_leaf, max_size=2)


def _block(kind: str, **fields: Any) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"type": st.just(kind), **fields}, optional={"cache_control": cache_control})


tool_id = st.from_regex(r"\A[a-zA-Z0-9_-]{1,30}\Z") | odd_text
text_block = _block("text", text=odd_text)
image_block = _block("image", source=st.fixed_dictionaries({
    "type": st.sampled_from(["base64", "url", "file", "other"]),
    "media_type": st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp", "image/tiff", "application/pdf"]),
    "data": b64, "url": st.just("https://example.test/a.png"), "file_id": odd_text}))  # fmt: skip
document_block = _block("document", source=st.fixed_dictionaries({
    "type": st.sampled_from(["base64", "text", "url", "content"]), "media_type": st.sampled_from(["application/pdf", "text/plain"]),
    "data": b64 | odd_text, "url": st.just("https://example.test/a.pdf"),
    "content": odd_text | st.lists(text_block, max_size=2)}))  # fmt: skip
tool_use_block = _block("tool_use", id=tool_id, name=odd_text, input=st.dictionaries(st.text(max_size=8), json_value, max_size=3))
tool_result_block = _block("tool_result", tool_use_id=tool_id,
                           content=st.none() | odd_text | st.lists(text_block | image_block, max_size=3),
                           is_error=st.none() | st.booleans())  # fmt: skip
thinking_block = _block("thinking", thinking=odd_text, signature=odd_text)
other_block = st.fixed_dictionaries({"type": st.sampled_from(["redacted_thinking", "server_tool_use", "web_search_tool_result",
                                                              "mid_conv_system", "future_block_type", 7, None])},
                                    optional={"data": odd_text, "id": tool_id, "name": odd_text, "content": json_value,
                                              "tool_use_id": tool_id, "input": json_value})  # fmt: skip
any_block = text_block | image_block | document_block | tool_use_block | tool_result_block | thinking_block | other_block
message = st.fixed_dictionaries({
    "role": st.sampled_from(["user", "assistant", "system", "tool", ""]),
    "content": odd_text | st.lists(any_block, max_size=4)})  # fmt: skip
tool_def = st.fixed_dictionaries({"name": odd_text}, optional={
    "description": odd_text, "type": st.sampled_from(["custom", "bash_20250124", "web_search_20250305", "x_tool"]),
    "input_schema": st.just({"type": "object", "properties": {"p": {"type": "string"}}}) | st.dictionaries(st.text(max_size=8), json_value, max_size=3),
    "strict": st.booleans()})  # fmt: skip
request_fields = {
    "stream": st.booleans() | json_leaf,
    "system": odd_text | st.lists(text_block, max_size=2),
    "tools": st.lists(tool_def, max_size=3),
    "tool_choice": st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "tool", "none", "other"])},
                                         optional={"name": odd_text, "disable_parallel_tool_use": st.booleans()}),
    "thinking": st.fixed_dictionaries({"type": st.sampled_from(["enabled", "disabled", "adaptive", "x"])},
                                      optional={"budget_tokens": st.integers(-10, 300_000), "display": odd_text}),
    "temperature": st.floats(-1, 3) | json_leaf,
    "top_p": st.floats(-1, 2), "top_k": st.integers(-5, 500),
    "stop_sequences": st.lists(odd_text, max_size=5),
    "metadata": st.fixed_dictionaries({}, optional={"user_id": odd_text}),
    "output_config": st.fixed_dictionaries({}, optional={"effort": st.sampled_from(["low", "high", "max", "huge"])}),
    "service_tier": odd_text, "context_management": json_value, "mcp_servers": st.lists(json_value, max_size=1),
    "provider": st.dictionaries(st.sampled_from(["order", "sort", "zdr", "bogus"]), json_value, max_size=2),
    "unknown_field": json_value,
}  # fmt: skip
requests = st.fixed_dictionaries(
    {"model": st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "vendor/model", "nope"]) | odd_text,
     "max_tokens": st.integers(1, 70_000) | st.integers(-(2**66), 2**66) | json_leaf,
     "messages": st.lists(message, min_size=1, max_size=4) | json_value},
    optional=request_fields,
)  # fmt: skip


def post(client: httpx2.Client, path: str, content: bytes) -> httpx2.Response:
    return client.post(path, content=content, headers=HEADERS)


def test_requests_from_the_schema(fuzz_gateway: GatewayProcess, answering: FakeUpstream) -> None:
    with httpx2.Client(base_url=fuzz_gateway.url, timeout=60) as client:

        @settings(max_examples=examples(250), **SETTINGS)
        @given(body=requests, path=st.sampled_from(PATHS))
        def run(body: dict[str, Any], path: str) -> None:
            check(post(client, path, json.dumps(body).encode()), f"POST {path} {json.dumps(body)[:300]}")

        run()


# --- mutations of real Claude Code bodies -------------------------------------------------------------


@cache
def claude_code_bodies() -> tuple[dict[str, Any], ...]:
    bodies: list[dict[str, Any]] = []
    for path in (CLAUDE_CODE_FIXTURE, CLAUDE_CODE_LATEST_FIXTURE):
        data = json.loads(path.read_text())
        bodies += [v for k, v in data.items() if isinstance(v, dict) and "messages" in v]
    return tuple(bodies)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@cache
def body_paths(n: int) -> tuple[tuple[Any, ...], ...]:
    return tuple(p for p in _paths(claude_code_bodies()[n]) if p)


WRONG = st.sampled_from([None, True, 0, -1, 1.5, 10**30, "", "x" * 100_000, [], {}, [None], {"type": "?"}])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(0, len(claude_code_bodies()) - 1))
    body = copy.deepcopy(claude_code_bodies()[n])
    body["stream"] = draw(st.booleans())
    paths = body_paths(n)
    for _ in range(draw(st.integers(1, 3))):
        path = paths[draw(st.integers(0, len(paths) - 1))]
        parent: Any = body
        try:
            for key in path[:-1]:
                parent = parent[key]
            last = path[-1]
            parent[last]
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(parent, dict | list):  # an earlier mutation made a string of a container
            continue
        action = draw(st.sampled_from(["replace", "wrong", "delete", "add", "duplicate"]))
        if action == "replace":
            parent[last] = draw(json_value)
        elif action == "wrong":
            parent[last] = draw(WRONG)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(json_value)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
    raw = json.dumps(body).encode()
    corruption = draw(st.sampled_from(["none", "none", "none", "truncate", "bytes"]))
    if corruption == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif corruption == "bytes":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xed\xa0\x80", b'"', b"\\", b"}"])) + raw[at:]
    return raw


def test_mutated_claude_code_bodies(fuzz_gateway: GatewayProcess, answering: FakeUpstream) -> None:
    assert len(claude_code_bodies()) >= 7
    with httpx2.Client(base_url=fuzz_gateway.url, timeout=60) as client:

        @settings(max_examples=examples(200), **SETTINGS)
        @given(raw=mutated(), path=st.sampled_from(PATHS))
        def run(raw: bytes, path: str) -> None:
            check(post(client, path, raw), f"POST {path} {raw[:300]!r}")

        run()


def test_the_unmutated_bodies_are_answered(fuzz_gateway: GatewayProcess, answering: FakeUpstream) -> None:
    """The mutations start from bodies the gateway serves: the fuzzing reaches translation."""
    with httpx2.Client(base_url=fuzz_gateway.url, timeout=60) as client:
        for body in claude_code_bodies():
            resp = post(client, "/v1/messages", json.dumps({**body, "stream": False}).encode())
            assert resp.status_code == 200, resp.text[:500]
