"""A thread's stored state (threads/protocol.py): written after each answer, read by the next turn."""

from __future__ import annotations

from anthropic_gateway.schemas import NO_SCHEMA
from anthropic_gateway.threads.protocol import continued, state_after
from unit.helpers import request

WEB = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
CUSTOM = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}


def test_tools_without_input_schema_survive_the_stored_state() -> None:
    """An Anthropic-defined tool has no input_schema: the state must still be JSON, and read back
    as the same tools (it once held `"input_schema":,`, and the next turn failed to read it)."""
    first = request(tools=[WEB, CUSTOM])
    stored = state_after(first, {"content": [{"type": "text", "text": "Sunny."}]})
    turn = request(messages=[{"role": "user", "content": "And tomorrow?"}])
    full = continued(turn, stored)
    assert full.tools is not None
    assert [(t.name, t.type, t.max_uses) for t in full.tools] == [("web_search", "web_search_20250305", 2),
                                                                   ("get_weather", None, None)]  # fmt: skip
    assert bytes(full.tools[1].input_schema) == b'{"type":"object","properties":{}}'
    assert [m.role for m in full.messages] == ["user", "assistant", "user"]
    assert first.tools is not None and first.tools[0].input_schema is NO_SCHEMA
