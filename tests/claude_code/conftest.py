"""Fixtures for the real-CLI tests: the CLI itself (or a skip), a workspace, the scripted upstream.

The gateways are the session's ``gateway`` (backend kind openai-compatible) and
``openrouter_gateway`` from tests/conftest.py, both on the shared fake upstream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from claude_code.harness import VERSIONS, Script, Workspace, find_claude, version_of
from fake_upstream import FakeUpstream, Reply


@pytest.fixture(scope="session", params=VERSIONS)
def claude_version(request: pytest.FixtureRequest) -> str:
    """The CLI version this run of the suite is for; every real-CLI test runs once per version."""
    version: str = request.param
    return version


@pytest.fixture(scope="session")
def claude_bin(claude_version: str) -> Path:
    path, reason = find_claude(claude_version)
    if path is None:
        pytest.skip(reason)
    found = version_of(path)
    assert found == claude_version, f"{path} is Claude Code {found!r}, the tests want {claude_version}"
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
