from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from anthropic_gateway.cli import check_startup
from anthropic_gateway.settings import SettingsError, load_settings


def test_defaults_need_nothing_but_work_without_a_key() -> None:
    s = load_settings(environ={})
    assert (s.host, s.port, s.upstream_url) == ("127.0.0.1", 8082, "https://openrouter.ai/api/v1")
    assert s.upstream_key is None
    assert s.resolved_backend_kind() == "openrouter"


@pytest.mark.parametrize("var", ["OPENROUTER_API_KEY", "ANTHROPIC_GATEWAY_UPSTREAM_KEY"])
def test_upstream_key_from_either_variable(var: str) -> None:
    s = load_settings(environ={var: "sk-or-v1-abc"})
    assert s.upstream_key is not None and s.upstream_key.get_secret_value() == "sk-or-v1-abc"
    assert "sk-or-v1-abc" not in repr(s)


def test_tier_and_url_variables() -> None:
    s = load_settings(environ={
        "ANTHROPIC_GATEWAY_OPUS_MODEL": "x/opus", "ANTHROPIC_GATEWAY_SONNET_MODEL": "x/sonnet",
        "ANTHROPIC_GATEWAY_HAIKU_MODEL": "x/haiku", "ANTHROPIC_GATEWAY_UPSTREAM_URL": "http://127.0.0.1:9/v1/",
    })  # fmt: skip
    assert (s.opus_model, s.sonnet_model, s.haiku_model) == ("x/opus", "x/sonnet", "x/haiku")
    assert s.upstream_url == "http://127.0.0.1:9/v1"
    assert s.resolved_backend_kind() == "openai-compatible"
    openai = load_settings(environ={"ANTHROPIC_GATEWAY_UPSTREAM_URL": "https://api.openai.com/v1"})
    assert openai.resolved_backend_kind() == "openai"  # the same rule as for named backends


def test_precedence_cli_over_env_over_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('port = 9001\nsonnet_model = "toml/sonnet"\nhaiku_model = "toml/haiku"\n')
    s = load_settings(environ={"ANTHROPIC_GATEWAY_PORT": "9002", "ANTHROPIC_GATEWAY_HAIKU_MODEL": "env/haiku"},
                      config_path=cfg, port=9003)  # fmt: skip
    assert (s.port, s.sonnet_model, s.haiku_model) == (9003, "toml/sonnet", "env/haiku")


def test_invalid_setting_names_the_variable_and_the_fix() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ={"ANTHROPIC_GATEWAY_PORT": "eighty"})
    assert "ANTHROPIC_GATEWAY_PORT" in str(err.value) and "eighty" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_toml_key_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'prot'"):
        load_settings(environ={}, config_path=cfg)


def test_open_gateway_refuses_a_public_bind_unless_trusted() -> None:
    with pytest.raises(SettingsError, match=r"refusing to serve an open gateway on 0\.0\.0\.0"):
        check_startup(load_settings(environ={}, host="0.0.0.0"))
    check_startup(load_settings(environ={"ANTHROPIC_GATEWAY_TRUSTED_NETWORK": "true"}, host="0.0.0.0"))
    check_startup(load_settings(environ={"ANTHROPIC_GATEWAY_API_KEYS": "k1,k2"}, host="0.0.0.0"))
    assert load_settings(environ={"ANTHROPIC_GATEWAY_API_KEYS": "k1, k2"}).client_keys() == ["k1", "k2"]


def test_serve_with_a_bad_setting_exits_2_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "anthropic_gateway", "serve", "--port", "70000"],
        capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ANTHROPIC_GATEWAY_PORT" in lines[0] and "70000" in lines[0]


def test_help_lists_serve() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "anthropic_gateway", "--help"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and "serve" in proc.stdout and proc.stderr == ""
