"""Configuration: every setting through an injected environment and through a TOML file, nested
environment keys for backends and models, start-up errors that name the key and the fix, and the
example file in the repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from anthropic_gateway.errors import NotFoundError
from anthropic_gateway.model_config import BackendConfig, ModelConfig
from anthropic_gateway.routing import Router
from anthropic_gateway.settings import ENV_PREFIX, Settings, SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "gateway.toml"
README = REPO / "README.md"

BACKEND_JSON = {"x": {"url": "http://127.0.0.1:5/v1", "kind": "openai"}}
BACKEND_TOML = '[backends.x]\nurl = "http://127.0.0.1:5/v1"\nkind = "openai"\n'


@dataclass(frozen=True)
class Sample:
    """A non-default value for one setting: its environment string, its TOML text (one file, the
    setting's own line or table plus what it needs), extra environment it needs, and a check."""

    env: str
    toml: str
    check: Callable[[Settings], Any]
    expected: Any
    env_extra: dict[str, str] | None = None


def _secret(v: Any) -> Any:
    return v.get_secret_value() if v is not None else None


SAMPLES: dict[str, Sample] = {
    "host": Sample("127.0.0.2", 'host = "127.0.0.2"', lambda s: s.host, "127.0.0.2"),
    "port": Sample("9123", "port = 9123", lambda s: s.port, 9123),
    "upstream_url": Sample("http://127.0.0.1:7/v2/", 'upstream_url = "http://127.0.0.1:7/v2/"',
                           lambda s: s.upstream_url, "http://127.0.0.1:7/v2"),
    "upstream_key": Sample("sk-sample-key", 'upstream_key = "sk-sample-key"',
                           lambda s: _secret(s.upstream_key), "sk-sample-key"),
    "backend_kind": Sample("OpenAI", 'backend_kind = "openai"', lambda s: s.backend_kind, "openai"),
    "opus_model": Sample("x/opus", 'opus_model = "x/opus"', lambda s: s.opus_model, "x/opus"),
    "sonnet_model": Sample("x/sonnet", 'sonnet_model = "x/sonnet"', lambda s: s.sonnet_model, "x/sonnet"),
    "haiku_model": Sample("x/haiku", 'haiku_model = "x/haiku"', lambda s: s.haiku_model, "x/haiku"),
    "api_keys": Sample("k1, k2", 'api_keys = "k1, k2"', lambda s: s.client_keys(), ["k1", "k2"]),
    "passthrough_auth": Sample("true", "passthrough_auth = true", lambda s: s.passthrough_auth, True),
    "trusted_network": Sample("1", "trusted_network = true", lambda s: s.trusted_network, True),
    "system_messages": Sample("keep", 'system_messages = "keep"', lambda s: s.system_messages, "keep"),
    "ping_interval": Sample("2.5", "ping_interval = 2.5", lambda s: s.ping_interval, 2.5),
    "max_body_bytes": Sample("1000", "max_body_bytes = 1000", lambda s: s.max_body_bytes, 1000),
    "connect_timeout": Sample("3.5", "connect_timeout = 3.5", lambda s: s.connect_timeout, 3.5),
    "read_timeout": Sample("42", "read_timeout = 42", lambda s: s.read_timeout, 42.0),
    "stream_idle_timeout": Sample("33", "stream_idle_timeout = 33", lambda s: s.stream_idle_timeout, 33.0),
    "total_timeout": Sample("900", "total_timeout = 900", lambda s: s.total_timeout, 900.0),
    "max_connections": Sample("7", "max_connections = 7", lambda s: s.max_connections, 7),
    "header_timeout": Sample("2.5", "header_timeout = 2.5", lambda s: s.header_timeout, 2.5),
    "body_timeout": Sample("4", "body_timeout = 4", lambda s: s.body_timeout, 4.0),
    "max_header_bytes": Sample("8192", "max_header_bytes = 8192", lambda s: s.max_header_bytes, 8192),
    "max_client_connections": Sample("99", "max_client_connections = 99", lambda s: s.max_client_connections, 99),
    "half_closed_clients": Sample("answer", 'half_closed_clients = "answer"', lambda s: s.half_closed_clients, "answer"),
    "log_level": Sample("WARNING", 'log_level = "warning"', lambda s: s.log_level, "warning"),
    "tokenizer_preload": Sample("false", "tokenizer_preload = false", lambda s: s.tokenizer_preload, False),
    "input_prices": Sample('{"a/b": 1.5}', '[input_prices]\n"a/b" = 1.5', lambda s: s.input_prices, {"a/b": 1.5}),
    "backends": Sample(json.dumps(BACKEND_JSON), BACKEND_TOML,
                       lambda s: {n: b.model_dump(exclude_defaults=True) for n, b in s.backends.items()},
                       {"x": {"url": "http://127.0.0.1:5/v1", "kind": "openai"}}),
    "models": Sample('{"fast": {"model": "a/b", "max_output_tokens": 100, "capabilities": ["tools"]}}',
                     '[models.fast]\nmodel = "a/b"\nmax_output_tokens = 100\ncapabilities = ["tools"]',
                     lambda s: {n: m.model_dump(exclude_defaults=True) for n, m in s.models.items()},
                     {"fast": {"model": "a/b", "max_output_tokens": 100, "capabilities": ["tools"]}}),
    "default_backend": Sample("x", 'default_backend = "x"\n' + BACKEND_TOML, lambda s: s.default_backend, "x",
                              env_extra={"ANTHROPIC_GATEWAY_BACKENDS": json.dumps(BACKEND_JSON)}),
    "passthrough_models": Sample("true", "passthrough_models = true", lambda s: s.passthrough_models, True),
    "default_params": Sample('{"temperature": 0.2, "provider": {"data_collection": "deny"}}',
                             '[default_params]\ntemperature = 0.2\nprovider = { data_collection = "deny" }',
                             lambda s: s.default_params,
                             {"temperature": 0.2, "provider": {"data_collection": "deny"}}),
    "retries": Sample("3", "retries = 3", lambda s: s.retries, 3),
    "retry_max_wait": Sample("4.5", "retry_max_wait = 4.5", lambda s: s.retry_max_wait, 4.5),
    "batch_concurrency": Sample("3", "batch_concurrency = 3", lambda s: s.batch_concurrency, 3),
    "batch_max_body_bytes": Sample("1000", "batch_max_body_bytes = 1000", lambda s: s.batch_max_body_bytes, 1000),
    "batch_max_requests": Sample("10", "batch_max_requests = 10", lambda s: s.batch_max_requests, 10),
    "batch_expiry_hours": Sample("1.5", "batch_expiry_hours = 1.5", lambda s: s.batch_expiry_hours, 1.5),
    "batch_retention_days": Sample("2", "batch_retention_days = 2", lambda s: s.batch_retention_days, 2.0),
    "batch_cleanup_interval": Sample("5", "batch_cleanup_interval = 5", lambda s: s.batch_cleanup_interval, 5.0),
    "batch_lease_seconds": Sample("4", "batch_lease_seconds = 4", lambda s: s.batch_lease_seconds, 4.0),
    "database_pool_size": Sample("3", "database_pool_size = 3", lambda s: s.database_pool_size, 3),
    "batch_rate_limit_retries": Sample("2", "batch_rate_limit_retries = 2", lambda s: s.batch_rate_limit_retries, 2),
    "web_search_url": Sample("http://127.0.0.1:8888/search", 'web_search_url = "http://127.0.0.1:8888/search"',
                             lambda s: s.web_search_url, "http://127.0.0.1:8888/search"),
    "negative_cache_ttl": Sample("5", "negative_cache_ttl = 5", lambda s: s.negative_cache_ttl, 5.0),
    "first_byte_timeout": Sample("12", "first_byte_timeout = 12", lambda s: s.first_byte_timeout, 12.0),
    "reports_matched_stop": Sample("true", "reports_matched_stop = true", lambda s: s.reports_matched_stop, True),
    "stream_tool_input": Sample("false", "stream_tool_input = false", lambda s: s.stream_tool_input, False),
    "keys": Sample('{"t": {"key_env": "T_KEY", "requests_per_minute": 3}}', '[keys.t]\nkey_env = "T_KEY"\nrequests_per_minute = 3',
                   lambda s: {n: k.model_dump(exclude_defaults=True) for n, k in s.keys.items()},
                   {"t": {"key_env": "T_KEY", "requests_per_minute": 3}}),
    "database_url": Sample("/tmp/x.db", 'database_url = "/tmp/x.db"', lambda s: s.database_url, "/tmp/x.db"),
    "admin_keys": Sample("a1,a2", 'admin_keys = "a1,a2"', lambda s: s.admin_key_list(), ["a1", "a2"]),
    "log_format": Sample("Console", 'log_format = "console"', lambda s: s.log_format, "console"),
    "access_log": Sample("false", "access_log = false", lambda s: s.access_log, False),
    "log_bodies": Sample("true", "log_bodies = true", lambda s: s.log_bodies, True),
    "drain_timeout": Sample("5", "drain_timeout = 5", lambda s: s.drain_timeout, 5.0),
    "ledger_retention_days": Sample("7", "ledger_retention_days = 7", lambda s: s.ledger_retention_days, 7.0),
    "response_cache": Sample("true", "response_cache = true", lambda s: s.response_cache, True),
    "response_cache_ttl": Sample("60", "response_cache_ttl = 60", lambda s: s.response_cache_ttl, 60.0),
    "response_cache_max_bytes": Sample("100000", "response_cache_max_bytes = 100000",
                                       lambda s: s.response_cache_max_bytes, 100000),
    "response_cache_shared": Sample("true", "response_cache_shared = true", lambda s: s.response_cache_shared, True),
    "response_cache_nondeterministic": Sample("true", "response_cache_nondeterministic = true",
                                              lambda s: s.response_cache_nondeterministic, True),
    "native_context_management": Sample("true", "native_context_management = true",
                                        lambda s: s.native_context_management, True),
    "threads": Sample("false", "threads = false", lambda s: s.threads, False),
    "thread_ttl": Sample("60", "thread_ttl = 60", lambda s: s.thread_ttl, 60.0),
    "thread_max_bytes": Sample("1000", "thread_max_bytes = 1000", lambda s: s.thread_max_bytes, 1000),
    "health_probe_interval": Sample("2.5", "health_probe_interval = 2.5", lambda s: s.health_probe_interval, 2.5),
    "prices": Sample('{"x/m": {"input": 3, "output": 15, "cache_read": 0.3}}',
                     '[prices."x/m"]\ninput = 3\noutput = 15\ncache_read = 0.3',
                     lambda s: {k: v.model_dump() for k, v in s.prices.items()},
                     {"x/m": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": None}}),
    "catalogue_refresh_hours": Sample("0", "catalogue_refresh_hours = 0", lambda s: s.catalogue_refresh_hours, 0.0),
    "redis_url": Sample("redis://127.0.0.1:6379/2", 'redis_url = "redis://127.0.0.1:6379/2"', lambda s: s.redis_url,
                        "redis://127.0.0.1:6379/2"),
    "redis_prefix": Sample("gw-eu:", 'redis_prefix = "gw-eu:"', lambda s: s.redis_prefix, "gw-eu:"),
    "redis_pool_size": Sample("8", "redis_pool_size = 8", lambda s: s.redis_pool_size, 8),
    "redis_timeout": Sample("0.25", "redis_timeout = 0.25", lambda s: s.redis_timeout, 0.25),
}  # fmt: skip


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def test_every_setting_has_a_sample() -> None:
    """A new setting must be added to SAMPLES, so it gets its environment and TOML tests."""
    assert set(SAMPLES) == set(Settings.model_fields)


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_through_the_environment(field: str) -> None:
    sample = SAMPLES[field]
    default = sample.check(load_settings(environ=dict(sample.env_extra or {})))
    assert default != sample.expected, "the sample must differ from the default to prove anything"
    s = load_settings(environ={env_name(field): sample.env, **(sample.env_extra or {})})
    assert sample.check(s) == sample.expected


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_through_the_toml_file(field: str, tmp_path: Path) -> None:
    sample = SAMPLES[field]
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(sample.toml + "\n")
    assert field in tomllib.loads(sample.toml), "the TOML sample must use the setting's own key"
    s = load_settings(environ={}, config_path=cfg)
    assert sample.check(s) == sample.expected


def test_upstream_key_also_from_openrouter_api_key() -> None:
    s = load_settings(environ={"OPENROUTER_API_KEY": "sk-or-v1-x"})
    assert _secret(s.upstream_key) == "sk-or-v1-x"


def test_environment_wins_over_the_toml_file(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text("retries = 2\nretry_max_wait = 3\n")
    s = load_settings(environ={"ANTHROPIC_GATEWAY_RETRIES": "4"}, config_path=cfg)
    assert (s.retries, s.retry_max_wait) == (4, 3.0)


# --- backends and models in the environment -------------------------------------------------------

MODEL_SAMPLES: dict[str, tuple[str, Any]] = {
    "backend": ("loc", "loc"),
    "model": ("qwen2.5-coder:7b", "qwen2.5-coder:7b"),
    "display_name": ("Fast model", "Fast model"),
    "max_output_tokens": ("8192", 8192),
    "context_window": ("32768", 32768),
    "capabilities": ('["tools", "vision"]', ["tools", "vision"]),
    "schema_family": ("gemini", "gemini"),
    "prompt_cache": ("breakpoints", "breakpoints"),
    "response_cache": ("true", True),
    "defaults": ('{"temperature": 0.3}', {"temperature": 0.3}),
    "force": ('{"provider": {"order": ["x"]}}', {"provider": {"order": ["x"]}}),
    "fallbacks": ('["openai/gpt-4o"]', ["openai/gpt-4o"]),
}
BACKEND_SAMPLES: dict[str, tuple[str, Any]] = {
    "url": ("http://127.0.0.1:11434/v1/", "http://127.0.0.1:11434/v1"),
    "kind": ("openai-compatible", "openai-compatible"),
    "key_env": ("LOC_KEY", "LOC_KEY"),
    "headers": ('{"X-OpenRouter-Title": "team"}', {"X-OpenRouter-Title": "team"}),
    "connect_timeout": ("2", 2.0),
    "first_byte_timeout": ("30", 30.0),
    "idle_timeout": ("60", 60.0),
    "total_timeout": ("900", 900.0),
    "max_concurrency": ("4", 4),
    "tool_id_max_len": ("9", 9),
    "reports_matched_stop": ("true", True),
    "stream_tool_input": ("false", False),
    "native_context_management": ("true", True),
    "system_messages": ("keep", "keep"),
}
LOC_URL_ENV = {"ANTHROPIC_GATEWAY_BACKENDS__LOC__URL": "http://127.0.0.1:11434/v1"}


def test_nested_samples_cover_every_field() -> None:
    assert set(MODEL_SAMPLES) == set(ModelConfig.model_fields)
    assert set(BACKEND_SAMPLES) == set(BackendConfig.model_fields)


@pytest.mark.parametrize("field", sorted(ModelConfig.model_fields))
def test_model_fields_through_nested_environment_keys(field: str) -> None:
    raw, expected = MODEL_SAMPLES[field]
    environ = {f"ANTHROPIC_GATEWAY_MODELS__FAST__{field.upper()}": raw, **LOC_URL_ENV}
    s = load_settings(environ=environ)
    assert set(s.models) == {"fast"}
    assert getattr(s.models["fast"], field) == expected


@pytest.mark.parametrize("field", sorted(BackendConfig.model_fields))
def test_backend_fields_through_nested_environment_keys(field: str) -> None:
    raw, expected = BACKEND_SAMPLES[field]
    environ = {**LOC_URL_ENV, f"ANTHROPIC_GATEWAY_BACKENDS__LOC__{field.upper()}": raw}
    s = load_settings(environ=environ)
    assert set(s.backends) == {"loc"}
    assert getattr(s.backends["loc"], field) == expected


def test_nested_keys_build_a_working_route() -> None:
    s = load_settings(environ={
        **LOC_URL_ENV,
        "ANTHROPIC_GATEWAY_BACKENDS__LOC__KIND": "openai",
        "ANTHROPIC_GATEWAY_BACKENDS__LOC__KEY_ENV": "LOC_KEY",
        "LOC_KEY": "sk-loc",
        "ANTHROPIC_GATEWAY_MODELS__FAST__BACKEND": "loc",
        "ANTHROPIC_GATEWAY_MODELS__FAST__MODEL": "gpt-4o-mini",
    })  # fmt: skip
    route = Router(s).resolve("fast")
    assert (route.backend.name, route.backend.kind.name, route.upstream_model) == ("loc", "openai", "gpt-4o-mini")
    assert route.backend.key is not None and route.backend.key.get_secret_value() == "sk-loc"


def test_json_environment_values_for_whole_tables() -> None:
    s = load_settings(environ={
        "ANTHROPIC_GATEWAY_BACKENDS": json.dumps({"loc": {"url": "http://127.0.0.1:3/v1", "kind": "openai"}}),
        "ANTHROPIC_GATEWAY_MODELS": json.dumps({"fast": {"backend": "loc", "model": "m", "fallbacks": ["b/c"]},
                                                "claude-*haiku*": {"backend": "loc", "model": "h"}}),
    })  # fmt: skip
    assert list(s.models) == ["fast", "claude-*haiku*"]
    r = Router(s)
    assert r.resolve("claude-haiku-4-5").upstream_model == "h"
    assert r.resolve("fast").fallbacks == ("b/c",)


def test_a_nested_environment_key_overrides_one_field_of_a_toml_model(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[backends.oai]\nurl = "https://api.openai.com/v1"\n'
                   '[models.gpt]\nbackend = "oai"\nmodel = "gpt-4o"\nmax_output_tokens = 16384\n')  # fmt: skip
    s = load_settings(environ={"ANTHROPIC_GATEWAY_MODELS__GPT__MAX_OUTPUT_TOKENS": "100"}, config_path=cfg)
    gpt = s.models["gpt"]
    assert (gpt.backend, gpt.model, gpt.max_output_tokens) == ("oai", "gpt-4o", 100)


def test_nested_default_params_values_are_typed() -> None:
    """A parameter set through a nested key reaches the upstream as a number, not as the string "3"."""
    s = load_settings(environ={"ANTHROPIC_GATEWAY_DEFAULT_PARAMS__SEED": "3",
                               "ANTHROPIC_GATEWAY_DEFAULT_PARAMS__TEMPERATURE": "0.5"})  # fmt: skip
    assert s.default_params == {"seed": 3, "temperature": 0.5}


# --- configuration errors --------------------------------------------------------------------------


def _toml_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings(environ=environ or {}, config_path=cfg)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_unknown_backend_reference(tmp_path: Path) -> None:
    msg = _toml_error(tmp_path, '[models.fast]\nbackend = "nope"\nmodel = "m"\n')
    assert "models.fast.backend" in msg and "'nope'" in msg
    assert "[backends.nope]" in msg and "'default'" in msg  # the fix: define it, or use an existing one


def test_unknown_parameter_in_model_defaults(tmp_path: Path) -> None:
    msg = _toml_error(tmp_path, '[models.fast]\nmodel = "m"\ndefaults = { tempreature = 0.2 }\n')
    assert "models.fast.defaults" in msg and "tempreature" in msg
    assert "'temperature'" in msg  # the allowed names, i.e. the fix


def test_unknown_parameter_in_model_force(tmp_path: Path) -> None:
    msg = _toml_error(tmp_path, '[models.fast]\nmodel = "m"\nforce = { providers = {} }\n')
    assert "models.fast.force" in msg and "providers" in msg and "'provider'" in msg


def test_unknown_parameter_in_default_params(tmp_path: Path) -> None:
    msg = _toml_error(tmp_path, "[default_params]\ntempreature = 0.2\n")
    assert "default_params" in msg and "tempreature" in msg
    assert "'temperature'" in msg, f"the message does not say which names are allowed (the fix): {msg}"


def test_bad_backend_url(tmp_path: Path) -> None:
    msg = _toml_error(tmp_path, '[backends.loc]\nurl = "localhost:11434/v1"\n')
    assert "backends.loc.url" in msg and "localhost:11434/v1" in msg and "http://" in msg


def test_bad_upstream_url_in_the_environment() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"ANTHROPIC_GATEWAY_UPSTREAM_URL": "openrouter.ai/api/v1"})
    msg = str(info.value)
    assert "ANTHROPIC_GATEWAY_UPSTREAM_URL" in msg and "upstream_url" in msg and "http://" in msg


@pytest.mark.parametrize("fallback", ["nope", "fast"])
def test_bad_fallback(tmp_path: Path, fallback: str) -> None:
    msg = _toml_error(tmp_path, f'[models.fast]\nmodel = "m"\nfallbacks = ["{fallback}"]\n')
    assert "models.fast.fallbacks" in msg and f"'{fallback}'" in msg
    assert "alias" in msg and "provider/model" in msg


def test_fallback_to_a_provider_model_id_is_accepted(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text('[models.fast]\nmodel = "m"\nfallbacks = ["openai/gpt-4o"]\n')
    assert load_settings(environ={}, config_path=cfg).models["fast"].fallbacks == ["openai/gpt-4o"]


def test_unknown_default_backend(tmp_path: Path) -> None:
    msg = _toml_error(tmp_path, 'default_backend = "local"\n')
    assert "default_backend" in msg and "'local'" in msg and "[backends.local]" in msg


def test_misspelled_model_key(tmp_path: Path) -> None:
    msg = _toml_error(tmp_path, '[models.fast]\nmodel = "m"\nmax_output_token = 8192\n')
    assert "models.fast.max_output_token" in msg


def test_unknown_capability(tmp_path: Path) -> None:
    msg = _toml_error(tmp_path, '[models.fast]\nmodel = "m"\ncapabilities = ["tools", "audio"]\n')
    assert "models.fast.capabilities" in msg and "audio" in msg and "'vision'" in msg


def test_inline_backend_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    msg = _toml_error(tmp_path, '[backends.loc]\nurl = "http://127.0.0.1:1/v1"\nkey = "sk-inline-secret-999"\n')
    assert "backends.loc.key" in msg
    assert "sk-inline-secret-999" not in msg, f"the start-up message prints the inline key: {msg}"
    assert "key_env" in msg, f"the message does not point to key_env (the fix): {msg}"


def test_out_of_range_value_in_default_params(tmp_path: Path) -> None:
    """Configured parameters are validated like the client's: min_p is in [0, 1]."""
    msg = _toml_error(tmp_path, "[default_params]\nmin_p = 5\n")
    assert "default_params" in msg and "min_p" in msg


def test_unknown_provider_key_in_model_force(tmp_path: Path) -> None:
    msg = _toml_error(tmp_path, '[models.fast]\nmodel = "m"\nforce = { provider = { ordr = ["x"] } }\n')
    assert "models.fast.force" in msg and "ordr" in msg


def test_invalid_json_in_an_environment_table_is_a_settings_error() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"ANTHROPIC_GATEWAY_MODELS": '{"fast": {"model": "m"'})
    msg = str(info.value)
    assert "ANTHROPIC_GATEWAY_MODELS" in msg and "JSON" in msg and "\n" not in msg


def test_toml_syntax_error_is_a_settings_error(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text("retries = \n")
    with pytest.raises(SettingsError) as info:
        load_settings(environ={}, config_path=cfg)
    msg = str(info.value)
    assert str(cfg) in msg and "line 1" in msg and "\n" not in msg


def _serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "anthropic_gateway", *args],
                          capture_output=True, text=True, timeout=30, env=clean)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[models.fast]\nbackend = "nope"\n', "models.fast.backend"),
        ('[backends.loc]\nurl = "localhost:1"\n', "backends.loc.url"),
        ('[models.fast]\nmodel = "m"\nfallbacks = ["ghost"]\n', "models.fast.fallbacks"),
        ("[default_params]\ntempreature = 1\n", "default_params"),
        ("retries = \n", "bad.toml"),
    ],
    ids=["unknown-backend", "bad-url", "bad-fallback", "unknown-parameter", "toml-syntax"],
)
def test_serve_with_a_bad_config_exits_2_with_one_line(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    proc = _serve(["serve", "--port", "0", "--config", str(cfg)])
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr


def test_serve_with_bad_json_in_the_environment_exits_2_with_one_line() -> None:
    proc = _serve(["serve", "--port", "0"], {"ANTHROPIC_GATEWAY_BACKENDS": "{not json"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ANTHROPIC_GATEWAY_BACKENDS" in lines[0], proc.stderr


def test_serve_with_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    proc = _serve(["serve", "--port", "0", "--config", str(tmp_path / "absent.toml")])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "absent.toml" in lines[0] and "--config" in lines[0]


# --- the example file ------------------------------------------------------------------------------


def test_example_file_loads_and_resolves_as_documented() -> None:
    s = load_settings(environ={"LOCAL_LLM_KEY": "sk-local", "OPENAI_API_KEY": "sk-oai",
                               "OPENROUTER_API_KEY": "sk-or"}, config_path=EXAMPLE)  # fmt: skip
    assert (s.host, s.port, s.retries, s.retry_max_wait, s.passthrough_models) == ("127.0.0.1", 8082, 1, 10.0, False)
    assert s.default_params == {"provider": {"data_collection": "deny"}}
    assert s.input_prices == {"anthropic/claude-sonnet-4.5": 3.0}
    r = Router(s)
    assert set(r.backends) == {"default", "local", "openai", "openrouter-attributed"}
    assert r.backends["default"].kind.name == "openrouter"
    assert r.backends["local"].kind.name == "openai-compatible"
    assert (r.backends["local"].first_byte_timeout, r.backends["local"].max_concurrency) == (120, 4)
    assert r.backends["openai"].kind.name == "openai"
    assert r.backends["openrouter-attributed"].kind.name == "openrouter"  # auto, from the URL
    assert dict(r.backends["openrouter-attributed"].headers) == {
        "HTTP-Referer": "https://example.com", "X-OpenRouter-Title": "my team"}
    assert {n: (b.key.get_secret_value() if b.key else None) for n, b in r.backends.items()} == {
        "default": "sk-or", "local": None, "openai": "sk-oai", "openrouter-attributed": "sk-or"}  # Ollama: no key

    expected = {
        "claude-haiku-4-5-20251001": ("local", "qwen2.5-coder:7b"),  # the glob pattern
        "claude-3-5-haiku-20241022": ("local", "qwen2.5-coder:7b"),
        "claude-opus-4-8": ("default", "anthropic/claude-opus-4.5"),  # tiers, future names included
        "claude-sonnet-5": ("default", "anthropic/claude-sonnet-4.5"),
        "cheap-cloud": ("default", "deepseek/deepseek-chat"),
        "gemini": ("default", "google/gemini-2.5-pro"),
        "gpt": ("openai", "gpt-4o"),
        "openai/gpt-4o": ("default", "openai/gpt-4o"),  # '/' ids pass through
    }
    for alias, (backend, model) in expected.items():
        route = r.resolve(alias)
        assert (route.backend.name, route.upstream_model, route.client_model) == (backend, model, alias), alias
    haiku = r.resolve("claude-haiku-4-5")
    assert haiku.capabilities == frozenset({"tools"}) and haiku.fallbacks == ("cheap-cloud",)
    assert haiku.config is not None and (haiku.config.max_output_tokens, haiku.config.context_window) == (8192, 32768)
    assert r.resolve("gemini").config.schema_family == "gemini"  # type: ignore[union-attr]
    assert r.resolve("gpt").fallbacks == ("openai/gpt-4o",)
    with pytest.raises(NotFoundError):
        r.resolve("llama3")


def test_example_file_loads_without_any_key_in_the_environment() -> None:
    s = load_settings(environ={}, config_path=EXAMPLE)
    assert s.upstream_key is None and all(s.backend_key(n) is None for n in s.backends)


def _example_keys(text: str) -> set[str]:
    """Every `key =` written in the file, commented out or not."""
    keys = set()
    for line in text.splitlines():
        stripped = line.lstrip("# ").strip()
        name, eq, _ = stripped.partition("=")
        if eq and name.strip().replace("_", "").isalnum():
            keys.add(name.strip())
        if stripped.startswith("[") and "]" in stripped:
            keys.add(stripped[1:stripped.index("]")].split(".")[0])
    return keys


def test_example_file_is_complete() -> None:
    """The one complete example documents every setting, backend key and model key (keys that hold
    secrets are named only in comments as variables)."""
    keys = _example_keys(EXAMPLE.read_text())
    secret = {"upstream_key", "api_keys", "admin_keys"}
    missing = {
        "settings": sorted(set(Settings.model_fields) - secret - keys),
        "backends": sorted(set(BackendConfig.model_fields) - keys),
        "models": sorted(set(ModelConfig.model_fields) - keys),
    }
    assert missing == {"settings": [], "backends": [], "models": []}


def test_readme_documents_every_environment_variable() -> None:
    readme = README.read_text()
    missing = [env_name(f) for f in Settings.model_fields if env_name(f) not in readme]
    assert missing == []


def test_check_command_validates_and_prints_each_route() -> None:
    proc = _serve(["check", "--config", str(EXAMPLE)], env={"OPENROUTER_API_KEY": "sk-or", "OPENAI_API_KEY": "sk-oai"})
    assert proc.returncode == 0, proc.stdout
    for alias, target in [("claude-*haiku*", "qwen2.5-coder:7b"), ("cheap-cloud", "deepseek/deepseek-chat"),
                          ("gemini", "google/gemini-2.5-pro"), ("gpt", "gpt-4o")]:  # fmt: skip
        line = next((ln for ln in proc.stdout.splitlines() if alias in ln), None)
        assert line is not None and target in line, proc.stdout


def test_check_command_rejects_a_bad_config_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[models.fast]\nbackend = "nope"\n')
    proc = _serve(["check", "--config", str(cfg)])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "models.fast.backend" in lines[0], proc.stderr
