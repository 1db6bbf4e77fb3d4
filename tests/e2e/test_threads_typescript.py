"""Message threads with the TypeScript SDK's real tool runner (`client.beta.messages.toolRunner`, which
threads by default), streamed and not: the same turns, and the upstream sees the whole conversation.
Skipped where Node or the pinned SDK (.ci/run installs it in .cache/anthropic-sdk-ts) is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import CLIENT_KEY, GatewayProcess
from e2e.test_threads import CALL, DONE, SYSTEM, upstream_turn_two
from fake_upstream import FakeUpstream, Reply

SCRIPT = Path(__file__).parent / "ts" / "tool_runner.mjs"
REPO = Path(__file__).parents[2]


def _sdk_modules() -> Path:
    given = os.environ.get("ANTHROPIC_TS_SDK_DIR")
    base = Path(given) if given else REPO / ".cache" / "anthropic-sdk-ts"
    modules = base / "node_modules"
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (modules / "@anthropic-ai" / "sdk" / "package.json").is_file():
        pytest.skip(f"the TypeScript SDK is not installed in {base} (.ci/run installs it)")
    return modules


@pytest.mark.parametrize("mode", ["plain", "stream"])
def test_the_typescript_tool_runner_threads(gateway: GatewayProcess, upstream: FakeUpstream, mode: str) -> None:
    modules = _sdk_modules()
    upstream.expect(Reply.auto(CALL), Reply.auto(DONE))
    done = subprocess.run(["node", str(SCRIPT), gateway.url, CLIENT_KEY, mode], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "NODE_PATH": str(modules)}, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    replies, (first, second) = out["replies"], out["sent"]
    assert [r["stop_reason"] for r in replies] == ["tool_use", "end_turn"]
    assert replies[-1]["content"][0]["text"] == "It is sunny in Paris."
    assert first["thread"] == {"type": "create"} and first["system"] == SYSTEM
    assert second["thread"] == {"type": "continue", "previous_message_id": replies[0]["id"]}
    assert "system" not in second and "tools" not in second
    assert [m["role"] for m in second["messages"]] == ["user"]
    upstream_turn_two(upstream.bodies[1])  # type: ignore[arg-type]
