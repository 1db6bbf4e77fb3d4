"""The cache key: a documented contract (a golden value), what changes it and what does not."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from anthropic_gateway.cache.key import cache_key, canonical
from unit.helpers import request, route

BASE: dict[str, Any] = {
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [{"role": "user", "content": "What is 2+2?"}],
    "temperature": 0,
}
GOLDEN = "b0d2d55383727d4e755208dd829d9a455131bdd0d8b11e4d5182cc8d65419c41"
ATTRIBUTION = {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.934; cch=1a2b3;"}


def key(partition: str = "key-1", model: str = "claude-opus-4", **changes: Any) -> str:
    fields = {**BASE, **changes}
    return cache_key(request(model=model, **fields), route(model), partition)


def test_canonical_json_is_the_documented_document() -> None:
    raw = canonical(request(model="claude-opus-4", **BASE), route("claude-opus-4"), "key-1")
    assert raw == orjson.dumps({
        "backend": "default", "partition": "key-1",
        "request": {"max_tokens": 1024, "messages": [{"content": "What is 2+2?", "role": "user"}],
                    "system": [{"text": "Be brief.", "type": "text"}], "temperature": 0.0},
        "upstream_model": "anthropic/claude-opus-4.5", "v": 1,
    }, option=orjson.OPT_SORT_KEYS)  # fmt: skip
    assert key() == hashlib.sha256(raw).hexdigest()
    # Stable across processes and releases: a change here invalidates every shared cache.
    assert key() == GOLDEN


def test_fields_that_cannot_change_the_answer_leave_the_key_alone() -> None:
    assert key(stream=True) == key()
    assert key(metadata={"user_id": "someone"}) == key()
    assert key(system=[ATTRIBUTION, *BASE["system"]]) == key()
    assert key(system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]) == key()
    assert key(model="claude-opus-4-8") == key()  # another name for the same upstream model
    assert key(context_management={"edits": []}) == key()


def test_everything_that_can_change_the_answer_changes_the_key() -> None:
    tool = {"name": "t", "description": "d", "input_schema": {"type": "object"}}
    variants = [
        key(partition="key-2"),
        key(model="claude-haiku-4"),
        key(temperature=0.5),
        key(top_p=0.9),
        key(top_k=5),
        key(max_tokens=10),
        key(stop_sequences=["\n"]),
        key(seed=7),
        key(system="Be verbose."),
        key(messages=[{"role": "user", "content": "What is 3+3?"}]),
        key(tools=[tool]),
        key(tools=[tool], tool_choice={"type": "any"}),
        key(thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=4096),
        key(output_config={"effort": "low"}),
    ]
    assert len({key(), *variants}) == len(variants) + 1


def test_integers_past_64_bits_are_keyed_exactly() -> None:
    """JSON allows them in a tool's input; read as floats, 2**70 and 2**70 + 1 would share a key."""

    def with_input(n: int) -> str:
        return key(messages=[
            {"role": "user", "content": "Go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {"n": n}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]},
        ])  # fmt: skip

    assert with_input(2**70) != with_input(2**70 + 1)
    assert with_input(2**70) == with_input(2**70)
    assert with_input(5) != with_input(6)


def test_an_anthropic_defined_tool_without_input_schema_is_keyed() -> None:
    """Such a tool has no input_schema; an empty raw value was once encoded as no JSON at all, and
    every cached request carrying one (web search, bash, text editor) failed on its key."""
    web = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    bash = {"type": "bash_20250124", "name": "bash"}
    assert key(tools=[web]) == key(tools=[web])
    assert len({key(), key(tools=[web]), key(tools=[bash]), key(tools=[web, bash])}) == 4
