from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "gateway.toml"
ENV = {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-openai-test-value", "OPENROUTER_API_KEY": "sk-or-test-value"}


def _run(*args: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anthropic_gateway", "check", *args],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip


def test_check_prints_every_alias_route_and_no_key() -> None:
    proc = _run("--config", str(EXAMPLE))
    assert proc.returncode == 0, proc.stdout
    assert proc.stderr == ""
    out = proc.stdout
    assert out.endswith("  <provider/model ids> -> default, passed through unchanged\nok\n")
    assert "  gpt -> openai:gpt-4o max_output_tokens=16384 context_window=128000 fallbacks=openai/gpt-4o" in out
    assert "  claude-*haiku* -> local:qwen2.5-coder:7b" in out and "capabilities=tools fallbacks=cheap-cloud" in out
    assert "  claude-*opus* -> default:anthropic/claude-opus-4.5" in out
    assert "claude-*haiku* -> default" not in out  # the pattern alias shadows the haiku tier
    assert "openai: openai https://api.openai.com/v1 [key set]" in out
    assert "local: openai-compatible http://127.0.0.1:11434/v1 [no key needed]" in out
    assert "sk-openai-test-value" not in out and "sk-or-test-value" not in out


def test_check_with_a_bad_config_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.fast]\nbackend = "nowhere"\n')
    proc = _run("--config", str(bad))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "models.fast.backend: 'nowhere' is not a backend; define [backends.nowhere]" in proc.stderr


def test_check_online_reports_an_unreachable_backend(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('upstream_url = "http://127.0.0.1:9/v1"\n')
    proc = _run("--config", str(cfg), "--online")
    assert proc.returncode == 1 and proc.stderr == ""
    assert proc.stdout.endswith(
        "online:\n  default: unreachable (ClientConnectorError)\n"
        "problems:\n  backend 'default': unreachable (ClientConnectorError)\n"
    )


def test_check_without_the_keys_its_routes_need_exits_1_naming_the_variables() -> None:
    proc = _run("--config", str(EXAMPLE), env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1 and proc.stderr == ""
    assert "  default (default): openrouter https://openrouter.ai/api/v1 [NO KEY: set OPENROUTER_API_KEY" in proc.stdout
    assert proc.stdout.endswith(
        "problems:\n"
        "  backend 'default' has no upstream key: set OPENROUTER_API_KEY (or ANTHROPIC_GATEWAY_UPSTREAM_KEY)\n"
        "  backend 'openai' has no upstream key: set OPENAI_API_KEY (named by backends.openai.key_env)\n"
    )  # openrouter-attributed is named by no alias: not a problem


@pytest.fixture
def models_server() -> Iterator[str]:
    """A /v1/models endpoint listing two models."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"data": [{"id": "vendor/real"}, {"id": "vendor/other"}]}).encode()
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_check_online_looks_up_every_alias_model_in_the_backend_list(tmp_path: Path, models_server: str) -> None:
    cfg = tmp_path / "gw.toml"
    tiers = 'opus_model = "vendor/real"\nsonnet_model = "vendor/real"\nhaiku_model = "vendor/other"\n'
    cfg.write_text(f'upstream_url = "{models_server}"\n{tiers}[models.good]\nmodel = "vendor/real"\n')
    proc = _run("--config", str(cfg), "--online")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.endswith("online:\n  default: ok (2 models)\nok\n")

    cfg.write_text(f'upstream_url = "{models_server}"\n{tiers}[models.typo]\nmodel = "vendor/reel"\n'
                   '[models."claude-*"]\nbackend = "default"\n')  # fmt: skip
    proc = _run("--config", str(cfg), "--online")
    assert (proc.returncode, proc.stderr) == (1, "")
    assert proc.stdout.endswith(
        "online:\n  default: ok (2 models)\n"
        "problems:\n  typo: backend 'default' does not list model 'vendor/reel' (closest: vendor/real)\n"
    )  # the pattern passes the requested name on: nothing to look up


def test_check_online_reports_default_tiers_missing_upstream(tmp_path: Path, models_server: str) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'upstream_url = "{models_server}"\n')
    proc = _run("--config", str(cfg), "--online")
    assert (proc.returncode, proc.stderr) == (1, "")
    assert proc.stdout.endswith(
        "problems:\n"
        "  claude-*opus*: backend 'default' does not list model 'anthropic/claude-opus-4.5'\n"
        "  claude-*sonnet*: backend 'default' does not list model 'anthropic/claude-sonnet-4.5'\n"
        "  claude-*haiku*: backend 'default' does not list model 'anthropic/claude-haiku-4.5'\n"
    )


def test_check_reports_the_token_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from anthropic_gateway import check
    from anthropic_gateway.settings import Settings

    out = io.StringIO()
    check.run(Settings(), False, out)
    assert out.getvalue().startswith("token counter: compiled o200k (tokens/_o200k)\n")
    # An install without a C compiler: the extension does not import (None in sys.modules makes
    # the import fail as a missing module does); said, without importing tiktoken.
    import anthropic_gateway.tokens

    monkeypatch.setitem(sys.modules, "anthropic_gateway.tokens._o200k", None)
    monkeypatch.delattr(anthropic_gateway.tokens, "_o200k", raising=False)
    monkeypatch.delitem(sys.modules, "tiktoken", raising=False)
    out = io.StringIO()
    check.run(Settings(), False, out)
    assert out.getvalue().startswith("token counter: the compiled o200k counter (tokens/_o200k.c) is not built")
    assert "tiktoken" not in sys.modules
