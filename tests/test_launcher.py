"""`anthropic-gateway claude` and `anthropic-gateway env`.

The CLI tests run the real command in a subprocess with a fake `claude` first on PATH: a script that
records its argv, its environment and what `GET $ANTHROPIC_BASE_URL/` answered, writes one line to
stdout and one to stderr, then exits with $FAKE_CLAUDE_EXIT (or kills itself with $FAKE_CLAUDE_SIGNAL).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from anthropic_gateway.launcher import (
    DUMMY_TOKEN,
    INSTALL_HINT,
    TIER_ALIASES,
    base_url,
    claude_env,
    claude_model_env,
)
from anthropic_gateway.settings import load_settings
from conftest import GatewayProcess, free_port, start_gateway, stop_gateway

UPSTREAM_SECRET = "sk-or-v1-launcher-secret"

FAKE_CLAUDE = """\
import json, os, signal, sys, urllib.request
try:
    with urllib.request.urlopen(os.environ["ANTHROPIC_BASE_URL"] + "/", timeout=5) as r:
        probe = [r.status, json.loads(r.read())["name"]]
except Exception as e:
    probe = repr(e)
with open(os.environ["FAKE_CLAUDE_RECORD"], "w") as f:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "probe": probe}, f)
print("fake claude stdout", flush=True)
print("fake claude stderr", file=sys.stderr, flush=True)
if os.environ.get("FAKE_CLAUDE_SIGNAL"):
    os.kill(os.getpid(), getattr(signal, "SIG" + os.environ["FAKE_CLAUDE_SIGNAL"]))
sys.exit(int(os.environ.get("FAKE_CLAUDE_EXIT", "0")))
"""


class Launcher:
    """Runs `python -m anthropic_gateway …` in a clean environment with the fake claude on PATH."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        script = self.bin / "claude"
        script.write_text(f"#!{sys.executable}\n{FAKE_CLAUDE}")
        script.chmod(0o755)
        self.record_path = tmp_path / "record.json"
        self.port = free_port()

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(self.tmp / "home"),
            "ANTHROPIC_GATEWAY_PORT": str(self.port),
            "ANTHROPIC_GATEWAY_HEALTH_PROBE_INTERVAL": "0",  # no background probe of the (real) default URL
            "FAKE_CLAUDE_RECORD": str(self.record_path),
            **extra,
        }

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "anthropic_gateway", *args],
            env=self.env() if env is None else env, cwd=self.tmp, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    @property
    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.record_path.read_text())
        return data

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False


@pytest.fixture
def launcher(tmp_path: Path) -> Launcher:
    return Launcher(tmp_path)


# --- the environment (pure) --------------------------------------------------------------------


def test_model_env_is_empty_when_no_tier_was_configured() -> None:
    settings = load_settings(environ={})
    assert claude_model_env(settings, set(settings.model_fields_set)) == {}


def test_model_env_names_only_the_configured_tiers_with_gateway_aliases() -> None:
    settings = load_settings(environ={"ANTHROPIC_GATEWAY_OPUS_MODEL": "moonshotai/kimi-k2",
                                      "ANTHROPIC_GATEWAY_HAIKU_MODEL": "openai/gpt-4o-mini"})  # fmt: skip
    assert claude_model_env(settings, set(settings.model_fields_set)) == {
        "ANTHROPIC_DEFAULT_OPUS_MODEL": "claude-opus-4-8",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4-5",
        "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5",
    }
    assert claude_model_env(settings, {"sonnet_model"}) == {
        "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-5"
    }


def test_tier_aliases_are_served_by_the_gateway_in_their_own_tier() -> None:
    from anthropic_gateway.routing import Router

    settings = load_settings(environ={"ANTHROPIC_GATEWAY_OPUS_MODEL": "x/opus",
                                      "ANTHROPIC_GATEWAY_SONNET_MODEL": "x/sonnet",
                                      "ANTHROPIC_GATEWAY_HAIKU_MODEL": "x/haiku"})  # fmt: skip
    router = Router(settings)
    assert {tier: router.resolve(alias).upstream_model for tier, alias in TIER_ALIASES.items()} == {
        "opus": "x/opus", "sonnet": "x/sonnet", "haiku": "x/haiku"
    }  # fmt: skip


def test_claude_env_uses_the_first_gateway_key_and_keeps_what_the_user_set() -> None:
    settings = load_settings(environ={"ANTHROPIC_GATEWAY_API_KEYS": "k1, k2",
                                      "ANTHROPIC_GATEWAY_HAIKU_MODEL": "x/haiku"})  # fmt: skip
    user = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "0", "ANTHROPIC_SMALL_FAST_MODEL": "claude-3-5-haiku"}
    env = claude_env(settings, set(settings.model_fields_set), user)
    assert env.set == {
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8082",
        "ANTHROPIC_AUTH_TOKEN": "k1",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4-5",
    }
    assert env.unset == ("ANTHROPIC_API_KEY",)


def test_claude_env_for_an_open_gateway_uses_a_dummy_token() -> None:
    settings = load_settings(environ={})
    env = claude_env(settings, set(), {})
    assert env.set == {
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8082",
        "ANTHROPIC_AUTH_TOKEN": DUMMY_TOKEN,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }


@pytest.mark.parametrize(
    ("host", "url"),
    [("127.0.0.1", "http://127.0.0.1:9000"), ("0.0.0.0", "http://127.0.0.1:9000"),
     ("::", "http://[::1]:9000"), ("::1", "http://[::1]:9000"), ("localhost", "http://localhost:9000")],
)  # fmt: skip
def test_base_url_reaches_a_wildcard_bind_on_loopback(host: str, url: str) -> None:
    settings = load_settings(environ={"ANTHROPIC_GATEWAY_TRUSTED_NETWORK": "true"}, host=host, port=9000)
    assert base_url(settings) == url


# --- `anthropic-gateway claude` ----------------------------------------------------------------


def test_claude_starts_a_gateway_passes_args_env_and_exit_code_then_stops_it(launcher: Launcher) -> None:
    args = ["-p", "two words", "--model", "opus", "--", "--help"]  # --help after -- is an argument
    env = launcher.env(
        OPENROUTER_API_KEY=UPSTREAM_SECRET,
        ANTHROPIC_API_KEY="sk-ant-real-anthropic-key",
        ANTHROPIC_GATEWAY_HAIKU_MODEL="openai/gpt-4o-mini",
        FAKE_CLAUDE_EXIT="3",
    )
    log = launcher.tmp / "home" / ".cache" / "anthropic-gateway" / f"gateway-{launcher.port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("an earlier run's line\n")
    proc = launcher.run("claude", *args, env=env)

    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "fake claude stdout\n"
    assert log.read_text().startswith("an earlier run's line\n")  # appended to, never overwritten
    url = f"http://127.0.0.1:{launcher.port}"
    assert proc.stderr == (
        f"anthropic-gateway: started the gateway at {url} (log: {log}); it stops when claude exits\n"
        "fake claude stderr\n"
    )
    record = launcher.record
    assert record["argv"] == args
    assert record["probe"] == [200, "anthropic-gateway"]  # the gateway served while claude ran
    claude_vars = {k: v for k, v in record["env"].items() if k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    del claude_vars["ANTHROPIC_GATEWAY_HEALTH_PROBE_INTERVAL"]  # this test's own setting, passed through
    assert claude_vars == {
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_AUTH_TOKEN": DUMMY_TOKEN,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4-5",
        "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5",
        "ANTHROPIC_GATEWAY_HAIKU_MODEL": "openai/gpt-4o-mini",
        "ANTHROPIC_GATEWAY_PORT": str(launcher.port),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    assert "OPENROUTER_API_KEY" not in record["env"]  # the gateway's secret stays out of claude's tools
    assert not launcher.answers()  # stopped when claude exited
    assert "Shutting down" in log.read_text()


def test_claude_uses_a_running_gateway_and_leaves_it_running(launcher: Launcher, tmp_path: Path) -> None:
    gw: GatewayProcess = start_gateway(
        tmp_path / "running.log", upstream_url="http://127.0.0.1:9/v1",
        env={"ANTHROPIC_GATEWAY_API_KEYS": "first-key,second-key"}, cwd=tmp_path,
    )  # fmt: skip
    try:
        launcher.port = gw.port
        proc = launcher.run("claude", env=launcher.env(ANTHROPIC_GATEWAY_API_KEYS="first-key,second-key"))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "fake claude stdout\n"
        assert proc.stderr == (
            f"anthropic-gateway: using the gateway already running at {gw.url}\nfake claude stderr\n"
        )
        assert launcher.record["argv"] == []
        assert launcher.record["env"]["ANTHROPIC_AUTH_TOKEN"] == "first-key"
        assert launcher.answers()
    finally:
        stop_gateway(gw)


def test_claude_not_installed_says_how_to_install(launcher: Launcher) -> None:
    env = launcher.env(PATH=str(launcher.tmp / "empty"))
    proc = launcher.run("claude", "-p", "hi", env=env)
    assert proc.returncode == 127
    assert proc.stdout == ""
    assert proc.stderr == (
        "anthropic-gateway: the `claude` command (Claude Code) was not found on PATH; install it with:\n"
        f"  {INSTALL_HINT}\n"
    )
    assert INSTALL_HINT == "npm install -g @anthropic-ai/claude-code"
    assert not launcher.record_path.exists()
    assert not launcher.answers()


def test_claude_killed_by_a_signal_exits_128_plus_n_and_stops_the_gateway(launcher: Launcher) -> None:
    proc = launcher.run("claude", env=launcher.env(FAKE_CLAUDE_SIGNAL="TERM", OPENROUTER_API_KEY=UPSTREAM_SECRET))
    assert proc.returncode == 128 + 15
    assert proc.stdout == "fake claude stdout\n"
    assert not launcher.answers()


@pytest.fixture
def not_a_gateway() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_claude_refuses_a_port_held_by_something_else(launcher: Launcher, not_a_gateway: int) -> None:
    launcher.port = not_a_gateway
    proc = launcher.run("claude")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        f"anthropic-gateway: http://127.0.0.1:{not_a_gateway} answers but is not anthropic-gateway: "
        "set ANTHROPIC_GATEWAY_PORT to a free port\n"
    )
    assert not launcher.record_path.exists()


def test_claude_with_a_bad_setting_exits_2_without_running_claude(launcher: Launcher) -> None:
    proc = launcher.run("claude", env=launcher.env(ANTHROPIC_GATEWAY_LOG_LEVEL="loud"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("anthropic-gateway: invalid setting ANTHROPIC_GATEWAY_LOG_LEVEL")
    assert len(proc.stderr.splitlines()) == 1
    assert not launcher.record_path.exists()


# --- `anthropic-gateway env` -------------------------------------------------------------------


def test_env_prints_the_export_lines_and_never_the_upstream_key(launcher: Launcher) -> None:
    env = launcher.env(
        OPENROUTER_API_KEY=UPSTREAM_SECRET,
        ANTHROPIC_GATEWAY_API_KEYS="team key,other",
        ANTHROPIC_GATEWAY_OPUS_MODEL="moonshotai/kimi-k2",
    )
    proc = launcher.run("env", env=env)
    assert proc.returncode == 0
    assert proc.stdout == (
        "unset ANTHROPIC_API_KEY\n"
        f"export ANTHROPIC_BASE_URL=http://127.0.0.1:{launcher.port}\n"
        "export ANTHROPIC_AUTH_TOKEN='team key'\n"
        "export ANTHROPIC_DEFAULT_OPUS_MODEL=claude-opus-4-8\n"
        "export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1\n"
    )
    assert proc.stderr == (
        f"anthropic-gateway: warning: no gateway answers at http://127.0.0.1:{launcher.port} yet, so claude "
        "would wait for it: start one first with `anthropic-gateway serve` (or run `anthropic-gateway claude`, "
        "which starts one)\n"
    )
    assert not launcher.answers()  # `env` starts nothing


def test_env_is_silent_when_the_gateway_answers(launcher: Launcher, tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "running.log", upstream_url="http://127.0.0.1:9/v1", env={}, cwd=tmp_path)
    try:
        launcher.port = gw.port
        proc = launcher.run("env")
        assert (proc.returncode, proc.stderr) == (0, "")
        assert f"export ANTHROPIC_BASE_URL={gw.url}\n" in proc.stdout
    finally:
        stop_gateway(gw)


def test_env_with_passthrough_auth_and_no_client_key_exits_2(launcher: Launcher) -> None:
    proc = launcher.run("env", env=launcher.env(ANTHROPIC_GATEWAY_PASSTHROUGH_AUTH="true"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "anthropic-gateway: ANTHROPIC_GATEWAY_PASSTHROUGH_AUTH is on, so Claude Code must send your upstream "
        "key: export ANTHROPIC_AUTH_TOKEN=<your upstream key> first\n"
    )


def test_help_lists_claude_and_env(launcher: Launcher) -> None:
    proc = launcher.run("--help")
    assert proc.returncode == 0
    assert proc.stderr == ""
    # argparse pads the command column to the longest command name, so match across the padding.
    assert re.search(r"\n    claude +run Claude Code through the gateway", proc.stdout)
    assert re.search(r"\n    env +print the export lines", proc.stdout)


# --- no upstream key, informational arguments -------------------------------------------------


def test_claude_without_the_upstream_key_refuses_to_start_naming_the_variable(launcher: Launcher) -> None:
    proc = launcher.run("claude", "-p", "hi")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "anthropic-gateway: not starting Claude Code, its requests would fail: claude-opus-4-8, claude-sonnet-5, "
        "claude-haiku-4-5 go to backend 'default', which has no upstream key: set OPENROUTER_API_KEY "
        "(or ANTHROPIC_GATEWAY_UPSTREAM_KEY)\n"
    )
    assert not launcher.record_path.exists()
    assert not launcher.answers()


def test_claude_on_a_local_server_needs_no_key(launcher: Launcher) -> None:
    env = launcher.env(ANTHROPIC_GATEWAY_UPSTREAM_URL="http://127.0.0.1:9/v1")  # openai-compatible
    proc = launcher.run("claude", "--model", "openai/gpt-4o", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "fake claude stdout\n"
    assert launcher.record["probe"] == [200, "anthropic-gateway"]


@pytest.mark.parametrize("args", [["--version"], ["-v"], ["--help"], ["mcp", "-h"]])
def test_claude_version_and_help_go_straight_to_claude_without_a_gateway(launcher: Launcher, args: list[str]) -> None:
    env = launcher.env(OPENROUTER_API_KEY=UPSTREAM_SECRET, ANTHROPIC_GATEWAY_LOG_LEVEL="loud")  # never loaded
    proc = launcher.run("claude", *args, env=env)
    assert proc.returncode == 0
    assert proc.stdout == "fake claude stdout\n"
    assert proc.stderr == "fake claude stderr\n"  # no "started the gateway" line
    record = launcher.record
    assert record["argv"] == args
    assert "ANTHROPIC_BASE_URL" not in record["env"] and "OPENROUTER_API_KEY" not in record["env"]
    assert not launcher.answers()
