from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "gateway.toml"
ENV = {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-openai-test-value"}


def _run(*args: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anthropic_gateway", "check", *args],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip


def test_check_prints_every_alias_route_and_no_key() -> None:
    proc = _run("--config", str(EXAMPLE))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    assert "  gpt -> openai:gpt-4o max_output_tokens=16384 context_window=128000 fallbacks=openai/gpt-4o" in out
    assert "  claude-*haiku* -> local:qwen2.5-coder:7b" in out and "capabilities=tools fallbacks=cheap-cloud" in out
    assert "  claude-*opus* -> default:anthropic/claude-opus-4.5" in out
    assert "claude-*haiku* -> default" not in out  # the pattern alias shadows the haiku tier
    assert "openai: openai https://api.openai.com/v1 [key set]" in out
    assert "local: openai-compatible http://127.0.0.1:11434/v1 [NO KEY (LOCAL_LLM_KEY)]" in out
    assert "sk-openai-test-value" not in out


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
    assert proc.returncode == 1
    assert "online:\n  default: unreachable (ClientConnectorError)" in proc.stdout
