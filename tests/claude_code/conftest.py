"""Fixtures for the real-CLI tests: the CLI itself (or a skip), a workspace, the scripted upstream.

The gateways are the session's ``gateway`` (backend kind openai-compatible) and
``openrouter_gateway`` from tests/conftest.py, both on the shared fake upstream.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from claude_code.harness import VERSION, Script, Workspace, find_claude
from fake_upstream import FakeUpstream, Reply


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    path, reason = find_claude()
    if path is None:
        pytest.skip(reason)
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError as err:
        pytest.fail(f"cannot run the Claude Code CLI at {path}: {err}")
    assert out.startswith(VERSION), f"{path} is Claude Code {out.strip()!r}, the tests pin {VERSION}"
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


@pytest.fixture
def script(upstream: FakeUpstream) -> Iterator[Callable[[Script], Script]]:
    """``script(Script(...))`` makes the fake upstream answer by that script for this test."""

    def install(s: Script) -> Script:
        upstream.always(Reply.dynamic(s))
        return s

    yield install
