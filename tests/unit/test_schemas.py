"""Tests."""

from __future__ import annotations

import json

import pytest

from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.schemas import decode_messages_request


def test_an_unhashable_inner_block_type_is_a_400_not_a_500() -> None:
    block = {"type": "tool_result", "tool_use_id": "t", "content": [{"type": ["a"]}]}
    body = {"model": "a/b", "max_tokens": 5, "messages": [{"role": "user", "content": [block, {"type": "zzz"}]}]}
    with pytest.raises(InvalidRequestError):
        decode_messages_request(json.dumps(body).encode())


def test_deeply_nested_json_is_a_400() -> None:
    body = '{"model":"a/b","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"n","input":' + "{\"a\":" * 5000 + "1" + "}" * 5001 + "]}]}"
    with pytest.raises(InvalidRequestError, match="nested too deeply"):
        decode_messages_request(body.encode())
