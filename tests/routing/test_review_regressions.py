"""Regressions for defects a second review found in configuration, policy, token counting and tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.schemas import decode_count_tokens_request, decode_messages_request
from anthropic_gateway.settings import SettingsError, load_settings
from anthropic_gateway.tokens import count_request_tokens, count_text_tokens, media
from anthropic_gateway.translate.policy import gemini_schema, prepare_request
from routing.helpers import route_of, settings_of


def _count(content: Any) -> int:
    body = {"model": "a/b", "messages": [{"role": "user", "content": content}]}
    return count_request_tokens(decode_count_tokens_request(json.dumps(body).encode()), "a/b")


def test_a_million_spaces_are_counted_not_a_crash() -> None:
    assert 5_000 < count_text_tokens(" " * 1_000_000, "a/b") < 300_000


def test_long_text_counts_as_in_one_piece_within_a_token_or_two() -> None:
    text = "hello world, this is a sentence. " * 5_000
    whole = count_text_tokens(text[:30_000], "a/b") * 5 + count_text_tokens(text[150_000:], "a/b")
    assert abs(count_text_tokens(text, "a/b") - whole) <= 10


def test_unterminated_pdf_streams_are_scanned_linearly() -> None:
    assert media.pdf_page_count(b"%PDF-1.4 " + b"stream\n" * 40_000) == 1


def test_a_huge_pdf_count_is_capped() -> None:
    assert media.pdf_page_count(b"%PDF-1.4 /Count " + b"9" * 5_000) == 1
    assert media.pdf_page_count(b"%PDF-1.4 /Type /Pages /Count 12") == 12


def test_tool_input_orjson_cannot_encode_is_still_counted() -> None:
    block = {"type": "tool_use", "id": "t1", "name": "n", "input": {"x": 10**22}}
    body = {"model": "a/b", "messages": [{"role": "assistant", "content": [block]}]}
    assert count_request_tokens(decode_count_tokens_request(json.dumps(body).encode()), "a/b") > 10


def test_an_unhashable_inner_block_type_is_a_400_not_a_500() -> None:
    block = {"type": "tool_result", "tool_use_id": "t", "content": [{"type": ["a"]}]}
    body = {"model": "a/b", "max_tokens": 5, "messages": [{"role": "user", "content": [block, {"type": "zzz"}]}]}
    with pytest.raises(InvalidRequestError):
        decode_messages_request(json.dumps(body).encode())


def test_deeply_nested_json_is_a_400() -> None:
    body = '{"model":"a/b","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"n","input":' + "{\"a\":" * 5000 + "1" + "}" * 5001 + "]}]}"
    with pytest.raises(InvalidRequestError, match="nested too deeply"):
        decode_messages_request(body.encode())


def test_gemini_stripping_tolerates_an_enum_that_is_not_a_list() -> None:
    assert gemini_schema({"type": "object", "properties": {"x": {"type": "integer", "enum": 5}}}) == {
        "type": "object", "properties": {"x": {"type": "integer"}},
    }  # fmt: skip


def test_defaults_never_turn_on_reasoning_and_transforms_become_plugins() -> None:
    route = route_of("m", {"model": "x/y", "defaults": {"reasoning": {"effort": "low"}, "transforms": ["middle-out"]}})
    req = decode_messages_request(json.dumps({"model": "m", "max_tokens": 10,
                                              "messages": [{"role": "user", "content": "hi"}]}).encode())  # fmt: skip
    body, _ = prepare_request(req, route, stream=False)
    assert "reasoning" not in body
    assert body["plugins"] == [{"id": "context-compression"}] and "transforms" not in body


def test_a_fallback_served_by_a_pattern_or_tier_validates() -> None:
    s = settings_of({"claude-*sonnet*": {"model": "x/s"}, "claude-*haiku*": {"model": "x/h", "fallbacks": ["claude-sonnet-4-5"]}})
    assert s.models["claude-*haiku*"].fallbacks == ["claude-sonnet-4-5"]
    with pytest.raises(SettingsError, match="'nowhere' is not another configured model alias"):
        settings_of({"a": {"model": "x/a", "fallbacks": ["nowhere"]}})


def test_error_lines_never_print_keys_or_headers(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('api_keys = ["client-key-SECRET-1"]\n[backends.x]\nheaders = { Authorization = "Bearer sk-hdr-SECRET" }\n')
    with pytest.raises(SettingsError) as err:
        load_settings(environ={}, config_path=cfg)
    assert "SECRET" not in str(err.value)


def test_unrelated_dotenv_variables_do_not_stop_start_up_and_key_env_may_live_there(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "FOO=bar\nOPENAI_API_KEY=sk-from-dotenv\nANTHROPIC_GATEWAY_PORT=9123\n"
        'ANTHROPIC_GATEWAY_BACKENDS={"oa": {"url": "http://127.0.0.1:9/v1", "key_env": "OPENAI_API_KEY"}}\n'
    )
    code = ("from anthropic_gateway.settings import load_settings; s = load_settings(); "
            "print(s.port, s.backend_key('oa').get_secret_value())")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_GATEWAY_", "OPENAI_", "OPENROUTER_"))}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["9123", "sk-from-dotenv"]
