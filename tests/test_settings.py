from __future__ import annotations

import os
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


# --- one rule for unknown names (environment, .env, TOML) ------------------------------------------


def _serve_in(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anthropic_gateway", "serve", "--port", "0", *args],
                          capture_output=True, text=True, timeout=30, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", **env})  # fmt: skip


def test_an_unknown_name_in_the_environment_stops_start_up_with_the_closest_name(tmp_path: Path) -> None:
    proc = _serve_in(tmp_path, {"ANTHROPIC_GATEWAY_SONET_MODEL": "x/y"})
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        "anthropic-gateway: unknown setting ANTHROPIC_GATEWAY_SONET_MODEL in the environment: did you mean "
        "ANTHROPIC_GATEWAY_SONNET_MODEL? (rename or remove it; every setting is in README.md, Configuration)\n"
    )


def test_an_unknown_name_in_dotenv_names_the_file_not_the_config_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OTHER_TOOL_SETTING=1\nANTHROPIC_GATEWAY_PROT=9000\n")
    proc = _serve_in(tmp_path, {})
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"anthropic-gateway: unknown setting ANTHROPIC_GATEWAY_PROT in {tmp_path / '.env'}: did you mean "
        "ANTHROPIC_GATEWAY_PORT? (rename or remove it; every setting is in README.md, Configuration)\n"
    )


def test_an_unknown_toml_key_names_the_file_and_the_closest_key(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text("prot = 1\n[backends.local]\nurl = 'http://127.0.0.1:1/v1'\n")
    with pytest.raises(SettingsError) as err:
        load_settings(environ={}, config_path=cfg)
    assert str(err.value) == (
        f"unknown setting 'prot' in the config file {cfg}: did you mean 'port'? "
        "(rename or remove it; see README.md, Configuration)"
    )
    cfg.write_text("[backends.local]\nurl = 'http://127.0.0.1:1/v1'\nknid = 'openai'\n")
    with pytest.raises(SettingsError, match=r"^unknown setting 'backends.local.knid' in the config file .*"
                                            r"did you mean 'kind'\?"):  # fmt: skip
        load_settings(environ={}, config_path=cfg)


def test_a_nested_environment_typo_names_the_variable() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ={"ANTHROPIC_GATEWAY_BACKENDS__LOCAL__URL": "http://127.0.0.1:1/v1",
                               "ANTHROPIC_GATEWAY_BACKENDS__LOCAL__KEY_EVN": "X"})  # fmt: skip
    assert str(err.value) == (
        "unknown setting 'backends.local.key_evn' in the environment (ANTHROPIC_GATEWAY_BACKENDS__LOCAL__KEY_EVN): "
        "did you mean 'key_env'? (rename or remove it; see README.md, Configuration)"
    )


def test_valid_names_come_from_the_model_and_key_env_variables_are_not_settings() -> None:
    from anthropic_gateway.setting_names import env_names
    from anthropic_gateway.settings import Settings

    assert env_names(Settings) >= {"ANTHROPIC_GATEWAY_" + name.upper() for name in Settings.model_fields}
    s = load_settings(environ={
        "ANTHROPIC_GATEWAY_BACKENDS": '{"local": {"url": "http://127.0.0.1:1/v1", "key_env": "ANTHROPIC_GATEWAY_LOCAL_KEY"}}',
        "ANTHROPIC_GATEWAY_LOCAL_KEY": "sk-local",
        "ANTHROPIC_GATEWAY_MODELS__FAST__MODEL": "vendor/fast",
        "ANTHROPIC_GATEWAY_UPSTREAM_KEY": "sk-up",
    })  # fmt: skip
    key = s.backend_key("local")
    assert key is not None and key.get_secret_value() == "sk-local"
    assert s.models["fast"].model == "vendor/fast"


# --- wording -------------------------------------------------------------------------------------


def test_an_invalid_value_names_the_variable_its_source_and_what_it_sets(tmp_path: Path) -> None:
    proc = _serve_in(tmp_path, {"ANTHROPIC_GATEWAY_LOG_LEVEL": "loud"})
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        "anthropic-gateway: invalid setting ANTHROPIC_GATEWAY_LOG_LEVEL in the environment "
        "(ANTHROPIC_GATEWAY_LOG_LEVEL): Input should be 'debug', 'info', 'warning' or 'error', got 'loud' "
        "(log_level: How much the gateway logs: debug, info, warning or error)\n"
    )
    cfg = tmp_path / "gw.toml"
    cfg.write_text("ping_interval = -1\n")
    with pytest.raises(SettingsError) as err:
        load_settings(environ={}, config_path=cfg)
    assert str(err.value) == (
        f"invalid setting ANTHROPIC_GATEWAY_PING_INTERVAL in the config file {cfg}: Input should be greater than 0, "
        "got -1 (ping_interval: Seconds of upstream silence before an SSE ping)"
    )


# --- an upstream URL given with its /chat/completions ----------------------------------------------


def test_a_chat_completions_url_is_cut_to_its_base_with_a_warning() -> None:
    s = load_settings(environ={
        "ANTHROPIC_GATEWAY_UPSTREAM_URL": "http://127.0.0.1:9/v1/chat/completions",
        "ANTHROPIC_GATEWAY_BACKENDS": '{"local": {"url": "http://127.0.0.1:8/api/v1/chat/completions/"}}',
    })  # fmt: skip
    assert s.upstream_url == "http://127.0.0.1:9/v1"
    assert s.backends["local"].url == "http://127.0.0.1:8/api/v1"
    assert s.warnings() == [
        "upstream_url ends with /chat/completions: using http://127.0.0.1:9/v1 (the gateway appends "
        "/chat/completions itself; set the URL without it)",
        "backends.local.url ends with /chat/completions: using http://127.0.0.1:8/api/v1 (the gateway appends "
        "/chat/completions itself; set the URL without it)",
    ]
    assert load_settings(environ={}).warnings() == []


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
