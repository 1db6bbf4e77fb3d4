"""The real Claude Code CLI, headless, through the gateway to the scripted fake upstream.

Each run is bounded (harness.RUN_TIMEOUT). "One upstream request per turn" is the check that Claude
Code accepted our stream: when it rejects one it silently re-sends the turn without streaming.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from claude_code.harness import Script, Workspace, final_text, requests_per_turn
from conftest import HAIKU, OPUS, SONNET, UPSTREAM_KEY, GatewayProcess, free_port
from fake_upstream import (
    FakeUpstream,
    Reply,
    StreamItem,
    error_body,
    finish_chunk,
    reasoning_chunk,
    text_chunk,
    tool_call_chunk,
    usage_chunk,
)

ScriptFn = Any  # the `script` fixture: Script -> Script


def write_call(index: int, call_id: str, path: Path, content: str) -> list[StreamItem]:
    """A streamed Write tool call whose arguments arrive in small fragments."""
    args = json.dumps({"file_path": str(path), "content": content})
    return [
        tool_call_chunk(index, id=call_id, name="Write", arguments=""),
        *(tool_call_chunk(index, arguments=args[i : i + 9]) for i in range(0, len(args), 9)),
    ]


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content)


def bodies(upstream: FakeUpstream) -> list[dict[str, Any]]:
    out = []
    for r in upstream.requests:
        assert isinstance(r.body, dict), r.raw[:200]
        out.append(r.body)
    return out


def test_write_file_via_streamed_tool_call(
    claude_bin: Path, gateway: GatewayProcess, upstream: FakeUpstream, workspace: Workspace, script: ScriptFn
) -> None:
    target = workspace.project / "hello.txt"
    script(Script([
        [text_chunk("I'll create the file."), *write_call(0, "call_w1", target, "hi"),
         finish_chunk("tool_calls"), usage_chunk(1200, 30)],
        final_text("Created hello.txt containing hi.", 1300, 9),
    ]))  # fmt: skip
    run = workspace.claude(claude_bin, gateway.url, "Create a file named hello.txt containing the word hi")

    assert run.returncode == 0, run.describe()
    assert target.read_text() == "hi"
    result = run.result
    assert (result["type"], result["subtype"], result["is_error"]) == ("result", "success", False)
    assert result["result"] == "Created hello.txt containing hi."
    assert result["num_turns"] == 2
    assert result["permission_denials"] == []
    assert (result["usage"]["input_tokens"], result["usage"]["output_tokens"]) == (1200 + 1300, 30 + 9)

    assert requests_per_turn(upstream.requests) == [1, 1], (
        "Claude Code re-sent a turn: it rejected our stream"
    )
    first, second = bodies(upstream)
    assert first["stream"] is True and second["stream"] is True
    assert first["model"] == OPUS  # the default main model, claude-opus-4-8, is in the opus tier
    # The mid-conversation role:"system" message ("Available agent types…") is hoisted into the one
    # leading system message.
    roles = [m["role"] for m in first["messages"]]
    assert roles == ["system", "user"]
    assert "agent types" in text_of(first["messages"][0]["content"]).lower()
    # Turn 2 carries our tool call and Claude Code's result for it.
    assistant = next(m for m in second["messages"] if m["role"] == "assistant")
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_w1"]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {
        "file_path": str(target), "content": "hi"
    }  # fmt: skip
    tool = next(m for m in second["messages"] if m["role"] == "tool")
    assert tool["tool_call_id"] == "call_w1"


def test_two_parallel_tool_calls_in_one_turn(
    claude_bin: Path, gateway: GatewayProcess, upstream: FakeUpstream, workspace: Workspace, script: ScriptFn
) -> None:
    a, b = workspace.project / "a.txt", workspace.project / "b.txt"
    first_call, second_call = write_call(0, "call_a", a, "one"), write_call(1, "call_b", b, "two")
    interleaved = [first_call[0], second_call[0], *first_call[1:], *second_call[1:]]
    script(Script([
        [text_chunk("Writing both files."), *interleaved, finish_chunk("tool_calls"), usage_chunk(1200, 60)],
        final_text("Wrote a.txt and b.txt."),
    ]))  # fmt: skip
    run = workspace.claude(claude_bin, gateway.url, "Create a.txt containing one and b.txt containing two")

    assert run.returncode == 0, run.describe()
    assert (a.read_text(), b.read_text()) == ("one", "two")
    assert run.result["subtype"] == "success"
    assert run.result["result"] == "Wrote a.txt and b.txt."
    assert requests_per_turn(upstream.requests) == [1, 1]
    second = bodies(upstream)[1]
    assistant = next(m for m in second["messages"] if m["role"] == "assistant")
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_a", "call_b"]
    assert sorted(m["tool_call_id"] for m in second["messages"] if m["role"] == "tool") == [
        "call_a",
        "call_b",
    ]


THOUGHT = "The user wants hello.txt; I will write it."
# The effort Claude Code asks for in -p runs: 2.1.197 sends none (adaptive thinking, read as high);
# 2.1.332 sends output_config.effort "medium" and thinking.display "omitted".
EFFORT = {"2.1.197": "high", "2.1.332": "medium"}


@pytest.mark.parametrize("gateway_name", ["gateway", "openrouter_gateway"])
def test_thinking_is_replayed_on_the_next_turn(
    claude_bin: Path,
    claude_version: str,
    gateway_name: str,
    request: pytest.FixtureRequest,
    upstream: FakeUpstream,
    workspace: Workspace,
    script: ScriptFn,
) -> None:
    gw: GatewayProcess = request.getfixturevalue(gateway_name)
    target = workspace.project / "hello.txt"
    details = [{"type": "reasoning.text", "text": THOUGHT, "format": "unknown", "index": 0}]
    script(Script([
        [reasoning_chunk(THOUGHT[:20], details=[{**details[0], "text": THOUGHT[:20]}]),
         reasoning_chunk(THOUGHT[20:], details=[{**details[0], "text": THOUGHT[20:]}]),
         *write_call(0, "call_t1", target, "hi"), finish_chunk("tool_calls"), usage_chunk(1200, 80)],
        final_text("Done."),
    ]))  # fmt: skip
    run = workspace.claude(claude_bin, gw.url, "Create a file named hello.txt containing the word hi")

    assert run.returncode == 0, run.describe()
    assert target.read_text() == "hi"
    assert requests_per_turn(upstream.requests) == [1, 1]
    first, second = bodies(upstream)
    assistant = next(m for m in second["messages"] if m["role"] == "assistant")
    effort = EFFORT[claude_version]
    if gateway_name == "gateway":  # openai-compatible: effort in, reasoning_content back
        assert first["reasoning_effort"] == effort
        assert assistant["reasoning_content"] == THOUGHT
    else:  # openrouter: the reasoning object in, the streamed reasoning_details back, in order
        # 2.1.332's display "omitted" asks for no reasoning text: a non-Claude target gets exclude.
        expected = {"effort": effort, **({"exclude": True} if claude_version == "2.1.332" else {})}
        assert first["reasoning"] == expected
        replayed = assistant["reasoning_details"]
        assert {d["type"] for d in replayed} == {"reasoning.text"}
        assert "".join(d["text"] for d in replayed) == THOUGHT


def test_rate_limited_turn_is_retried_by_claude_code(
    claude_bin: Path, gateway: GatewayProcess, upstream: FakeUpstream, workspace: Workspace, script: ScriptFn
) -> None:
    # The gateway does not retry: it answers the upstream's 429 with a 429 rate_limit_error carrying
    # the upstream's retry-after, and Claude Code's own loop retries after at least that long. So the
    # upstream sees two calls for the turn, and Claude Code sent two requests.
    limited = Reply.json(error_body(429, "Rate limit exceeded"), status=429, headers={"Retry-After": "1"})
    script(Script([final_text("Hello after the wait.")], errors={0: [limited]}))
    started = time.monotonic()
    run = workspace.claude(claude_bin, gateway.url, "Say hello")
    elapsed = time.monotonic() - started

    assert run.returncode == 0, run.describe()
    assert run.result["subtype"] == "success"
    assert run.result["result"] == "Hello after the wait."
    assert requests_per_turn(upstream.requests) == [2]
    assert elapsed >= 1.0  # Claude Code waited the retry-after second
    assert all(b["stream"] is True for b in bodies(upstream))


def test_context_overflow_reaches_claude_code_as_prompt_too_long(
    claude_bin: Path, gateway: GatewayProcess, upstream: FakeUpstream, workspace: Workspace, script: ScriptFn
) -> None:
    overflow = Reply.json(
        error_body(400, "This model's maximum context length is 128000 tokens. However, your messages "
                   "resulted in 130000 tokens. Please reduce the length of the messages."),
        status=400,
    )  # fmt: skip
    script(Script([final_text("unused")], errors={0: [overflow]}))
    run = workspace.claude(claude_bin, gateway.url, "Say hello")

    # The gateway's phrase "prompt is too long: 130000 tokens > 128000 maximum" is the one Claude Code
    # parses; on a first turn there is nothing to compact, so it stops with its own message.
    assert run.returncode == 1, run.describe()
    result = run.result
    assert result["is_error"] is True
    assert "prompt is too long" in result["result"].lower()
    assert "130000" in result["result"] and "128000" in result["result"]
    assert requests_per_turn(upstream.requests) == [1]


def test_launcher_runs_the_cli_and_routes_the_haiku_tier(
    claude_bin: Path, upstream: FakeUpstream, workspace: Workspace, script: ScriptFn
) -> None:
    """`anthropic-gateway claude …` with the real CLI: it starts a gateway, `--model haiku` reaches
    the configured ANTHROPIC_GATEWAY_HAIKU_MODEL, and the gateway is stopped afterwards."""
    script(Script([final_text("Hello from the haiku tier.")]))
    port = free_port()
    env = workspace.env(
        claude_bin,
        ANTHROPIC_GATEWAY_PORT=str(port),
        ANTHROPIC_GATEWAY_UPSTREAM_URL=upstream.base_url,
        ANTHROPIC_GATEWAY_UPSTREAM_KEY=UPSTREAM_KEY,
        ANTHROPIC_GATEWAY_OPUS_MODEL=OPUS,
        ANTHROPIC_GATEWAY_SONNET_MODEL=SONNET,
        ANTHROPIC_GATEWAY_HAIKU_MODEL=HAIKU,
        ANTHROPIC_GATEWAY_HEALTH_PROBE_INTERVAL="0",  # a probe would take the reply scripted for the CLI
    )
    del env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"]  # the launcher sets it
    cmd = [sys.executable, "-m", "anthropic_gateway", "claude", "-p", "Say hello", "--model", "haiku",
           "--output-format", "json"]  # fmt: skip
    run = workspace.run(cmd, env)

    assert run.returncode == 0, run.describe()
    assert run.result["result"] == "Hello from the haiku tier."
    # The launcher maps the configured haiku tier to the alias claude-haiku-4-5, which `--model haiku` uses.
    assert list(run.result["modelUsage"]) == ["claude-haiku-4-5"]
    assert [b["model"] for b in bodies(upstream)] == [HAIKU]
    assert f"started the gateway at http://127.0.0.1:{port}" in run.stderr
    assert UPSTREAM_KEY not in run.stdout + run.stderr
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
