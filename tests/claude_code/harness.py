"""Running the real Claude Code CLI headless against a gateway, and scripting the fake upstream.

The suite runs once per supported CLI version (``VERSIONS``: the oldest supported and the latest
pinned). Where each comes from, first match wins: ``CLAUDE_CODE_BIN_<version>`` (dots as underscores,
set by .ci/run after its pinned ``npm install``), ``CLAUDE_CODE_BIN`` when it is that version, the
cached install ``.cache/claude-code-<version>/node_modules/.bin/claude``, then the older
``.cache/claude-code`` install when it is that version. A version not found is skipped, with how to
install it; ``CLAUDE_CODE_UNAVAILABLE`` (set by .ci/run when the npm registry cannot be reached) is the
reason every version skips.

The upstream script answers by conversation state, not by arrival order: the main-loop request with
N assistant messages gets ``turns[N]`` whether it is streamed or not (``Reply.auto``), so a
non-streaming fallback would get a valid answer too, and only the request count gives it away.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fake_upstream import (
    AutoReply,
    JsonReply,
    RecordedRequest,
    Reply,
    StreamItem,
    StreamReply,
    finish_chunk,
    text_chunk,
    usage_chunk,
)

OLDEST, LATEST = "2.1.197", "2.1.332"
VERSIONS = (OLDEST, LATEST)  # the supported range, as the README states it
REPO = Path(__file__).resolve().parents[2]
LEGACY_BIN = REPO / ".cache" / "claude-code" / "node_modules" / ".bin" / "claude"
RUN_TIMEOUT = 30.0  # one CLI run takes ~1 s here; a hang fails the test instead of the suite

# Headless, as root, no traffic beyond the gateway (see /work/shared/reference/claude-code.md).
BASE_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_MAX_RETRIES": "2",
    "API_TIMEOUT_MS": "120000",
}
PERMISSIONS = ("--permission-mode", "acceptEdits", "--allowedTools", "Write,Bash")


def cache_dir(version: str) -> str:
    return f".cache/claude-code-{version}"


def install_command(version: str) -> str:
    return f"npm install --prefix {cache_dir(version)} @anthropic-ai/claude-code@{version}"


def version_of(path: Path) -> str | None:
    """The version ``claude --version`` reports ("2.1.332"), or None when it cannot run."""
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.split(" ", 1)[0].strip() or None


def find_claude(version: str) -> tuple[Path | None, str]:
    """(the CLI of that version, "") or (None, why it is unavailable)."""
    explicit = os.environ.get("CLAUDE_CODE_BIN_" + version.replace(".", "_"))
    if explicit:
        return Path(explicit), ""
    reason = os.environ.get("CLAUDE_CODE_UNAVAILABLE")
    if reason:
        return None, f"Claude Code CLI unavailable: {reason}"
    generic = os.environ.get("CLAUDE_CODE_BIN")
    cached = REPO / cache_dir(version) / "node_modules" / ".bin" / "claude"
    for candidate in (Path(generic) if generic else None, cached, LEGACY_BIN):
        if candidate is not None and candidate.exists() and version_of(candidate) == version:
            return candidate, ""
    return None, (
        f"Claude Code {version} not installed: run `bash .ci/run`, or `{install_command(version)}`, "
        f"or set CLAUDE_CODE_BIN_{version.replace('.', '_')}"
    )


@dataclass
class CLIRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data

    def describe(self) -> str:
        return f"exit {self.returncode}\nstdout: {self.stdout[-3000:]}\nstderr: {self.stderr[-3000:]}"


@dataclass
class Workspace:
    """An empty project directory and a private HOME / config dir for one CLI run."""

    root: Path

    @property
    def project(self) -> Path:
        return self.root / "project"

    def env(self, claude: Path, **extra: str) -> dict[str, str]:
        home = self.root / "home"
        return {
            "PATH": f"{claude.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            **BASE_ENV,
            **extra,
        }

    def run(self, cmd: list[str], env: dict[str, str], timeout: float = RUN_TIMEOUT) -> CLIRun:
        self.project.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(cmd, env=env, cwd=self.project, capture_output=True, text=True, timeout=timeout)
        return CLIRun(proc.returncode, proc.stdout, proc.stderr)

    def claude(self, claude: Path, base_url: str, prompt: str, *args: str, **env: str) -> CLIRun:
        """``claude -p PROMPT --output-format json`` with the root-safe permission flags."""
        full_env = self.env(claude, ANTHROPIC_BASE_URL=base_url, ANTHROPIC_AUTH_TOKEN="test-key", **env)
        cmd = [str(claude), "-p", prompt, *PERMISSIONS, "--output-format", "json", *args]
        return self.run(cmd, full_env)


# --- the upstream script -----------------------------------------------------------------------


def final_text(text: str, prompt_tokens: int = 1200, completion_tokens: int = 9) -> list[StreamItem]:
    return [text_chunk(text), finish_chunk("stop"), usage_chunk(prompt_tokens, completion_tokens)]


@dataclass
class Script:
    """``turns[n]``: the reply to a main-loop request carrying n assistant messages.
    ``errors[n]``: replies served, in order, to the first requests of turn n before ``turns[n]``."""

    turns: list[list[StreamItem]]
    errors: dict[int, list[JsonReply]] = field(default_factory=dict)

    def __call__(self, record: RecordedRequest) -> JsonReply | StreamReply | AutoReply:
        turn = turn_of(record)
        pending = self.errors.get(turn)
        if pending:
            return pending.pop(0)
        return Reply.auto(self.turns[min(turn, len(self.turns) - 1)])


def turn_of(record: RecordedRequest) -> int:
    body = record.body if isinstance(record.body, dict) else {}
    return sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")


def requests_per_turn(records: list[RecordedRequest]) -> list[int]:
    counts: dict[int, int] = {}
    for r in records:
        counts[turn_of(r)] = counts.get(turn_of(r), 0) + 1
    return [counts.get(i, 0) for i in range(max(counts, default=-1) + 1)]
