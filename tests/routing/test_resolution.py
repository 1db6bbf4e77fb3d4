"""Routing resolution as pure unit tests: Router.resolve on settings from an injected environment."""

from __future__ import annotations

import json

import pytest

from anthropic_gateway.errors import NotFoundError
from anthropic_gateway.routing import Router
from anthropic_gateway.settings import load_settings
from routing.helpers import DEFAULT_URL, router_of

BACKENDS = {
    "local": {"url": "http://127.0.0.1:11/v1", "kind": "openai-compatible"},
    "oai": {"url": "https://api.openai.com/v1", "kind": "openai"},
}


def test_exact_alias_goes_to_its_backend_and_upstream_model() -> None:
    r = router_of({"fast": {"backend": "local", "model": "qwen2.5-coder:7b"}}, BACKENDS)
    route = r.resolve("fast")
    assert (route.client_model, route.upstream_model, route.backend.name) == ("fast", "qwen2.5-coder:7b", "local")
    assert route.backend.chat_url == "http://127.0.0.1:11/v1/chat/completions"
    assert route.backend.kind.name == "openai-compatible"
    assert route.alias == "fast"


def test_alias_without_backend_or_model_uses_default_backend_and_its_own_name() -> None:
    route = router_of({"meta-llama/llama-3.3-70b-instruct": {}}).resolve("meta-llama/llama-3.3-70b-instruct")
    assert route.backend.name == "default"
    assert route.backend.chat_url == DEFAULT_URL + "/chat/completions"
    assert route.upstream_model == "meta-llama/llama-3.3-70b-instruct"
    assert route.config is not None


def test_exact_alias_wins_over_an_earlier_matching_pattern() -> None:
    models = {
        "claude-*": {"backend": "local", "model": "pattern-model"},
        "claude-haiku-4-5": {"backend": "oai", "model": "exact-model"},
    }
    r = router_of(models, BACKENDS)
    assert r.resolve("claude-haiku-4-5").upstream_model == "exact-model"
    assert r.resolve("claude-haiku-4-6").upstream_model == "pattern-model"


def test_glob_patterns_are_tried_in_configuration_order() -> None:
    models = {
        "claude-*haiku*": {"backend": "local", "model": "small"},
        "claude-*": {"backend": "oai", "model": "big"},
        "*haiku*": {"backend": "oai", "model": "never"},
    }
    r = router_of(models, BACKENDS)
    haiku = r.resolve("claude-3-5-haiku-20241022")
    assert (haiku.upstream_model, haiku.backend.name, haiku.alias) == ("small", "local", "claude-*haiku*")
    assert haiku.client_model == "claude-3-5-haiku-20241022"
    assert r.resolve("claude-opus-4-8").upstream_model == "big"
    assert r.resolve("my-haiku").upstream_model == "never"

    # the same patterns in the opposite order: the first match wins again
    r2 = router_of(dict(reversed(models.items())), BACKENDS)
    assert r2.resolve("claude-3-5-haiku-20241022").upstream_model == "never"


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("gpt-?o", "gpt-4o", True),
        ("gpt-?o", "gpt-40o", False),
        ("qwen[23]*", "qwen3-coder", True),
        ("qwen[23]*", "qwen4-coder", False),
        ("claude-*haiku*", "CLAUDE-HAIKU-4-5", True),
    ],
)
def test_glob_syntax(pattern: str, name: str, matches: bool) -> None:
    r = router_of({pattern: {"backend": "local", "model": "target"}}, BACKENDS)
    if matches:
        assert r.resolve(name).upstream_model == "target"
    else:
        with pytest.raises(NotFoundError):
            r.resolve(name)


def test_ids_with_a_slash_pass_through_unchanged_to_the_default_backend() -> None:
    r = router_of({"fast": {"backend": "local", "model": "x"}}, BACKENDS)
    route = r.resolve("deepseek/deepseek-chat-v3.1:free")
    assert (route.upstream_model, route.backend.name, route.config) == ("deepseek/deepseek-chat-v3.1:free", "default", None)
    assert route.client_model == "deepseek/deepseek-chat-v3.1:free"


def test_default_backend_setting_moves_slash_ids_and_tiers() -> None:
    r = router_of({}, BACKENDS, default_backend="local")
    assert r.resolve("openai/gpt-4o").backend.name == "local"
    assert r.resolve("openai/gpt-4o").upstream_model == "openai/gpt-4o"
    tier = r.resolve("claude-sonnet-4-5")
    assert (tier.backend.name, tier.upstream_model) == ("local", "tier/sonnet")


@pytest.mark.parametrize(
    ("name", "upstream"),
    [
        ("claude-opus-4-8", "tier/opus"),  # invented later by Claude Code
        ("claude-opus-4-1-20250805", "tier/opus"),
        ("claude-sonnet-5", "tier/sonnet"),  # invented later by Claude Code
        ("claude-sonnet-4-5-20250929", "tier/sonnet"),
        ("claude-3-7-sonnet-latest", "tier/sonnet"),
        ("claude-haiku-4-5-20251001", "tier/haiku"),
        ("claude-3-5-haiku-20241022", "tier/haiku"),
        ("Claude-Opus-5", "tier/opus"),
        ("claude-instant-1.2", "tier/sonnet"),  # other claude names: the sonnet tier
    ],
)
def test_claude_tiers_map_by_family(name: str, upstream: str) -> None:
    route = router_of({}).resolve(name)
    assert (route.upstream_model, route.backend.name, route.client_model) == (upstream, "default", name)


def test_configured_pattern_takes_a_tier_away_from_the_default() -> None:
    r = router_of({"claude-*haiku*": {"backend": "local", "model": "qwen"}}, BACKENDS)
    assert r.resolve("claude-haiku-4-5").backend.name == "local"
    assert r.resolve("claude-sonnet-5").upstream_model == "tier/sonnet"


def test_unknown_model_is_a_404_naming_the_configured_aliases() -> None:
    r = router_of({"fast": {"backend": "local", "model": "x"}, "qwen-*": {"backend": "local"}}, BACKENDS)
    with pytest.raises(NotFoundError) as info:
        r.resolve("gpt-5-turbo")
    err = info.value
    assert err.http_status == 404
    assert err.error_type == "not_found_error"
    assert "gpt-5-turbo" in err.message
    assert "'fast'" in err.message and "'qwen-*'" in err.message
    assert "passthrough" in err.message.lower()


def test_unknown_model_without_aliases_still_explains() -> None:
    with pytest.raises(NotFoundError) as info:
        router_of({}).resolve("mystery")
    assert "mystery" in info.value.message and "claude" in info.value.message


def test_passthrough_models_sends_unknown_names_to_the_default_backend() -> None:
    r = router_of({}, BACKENDS, passthrough_models="true", default_backend="local")
    route = r.resolve("llama3.2:3b")
    assert (route.upstream_model, route.backend.name, route.client_model) == ("llama3.2:3b", "local", "llama3.2:3b")
    # configured aliases and claude tiers still take precedence
    assert r.resolve("claude-opus-4-8").upstream_model == "tier/opus"


def test_backend_keys_come_from_the_named_environment_variable() -> None:
    backends = {"local": {"url": "http://127.0.0.1:11/v1", "key_env": "MY_LOCAL_KEY"}}
    unset = load_settings(environ={"ANTHROPIC_GATEWAY_BACKENDS": json.dumps(backends)})
    assert unset.backend_key("local") is None
    s = load_settings(environ={"ANTHROPIC_GATEWAY_BACKENDS": json.dumps(backends), "MY_LOCAL_KEY": "sk-local"})
    key = s.backend_key("local")
    assert key is not None and key.get_secret_value() == "sk-local"
    assert "sk-local" not in repr(s)
    assert Router(s).backends["local"].key == key


def test_an_unknown_model_says_what_was_asked_what_is_served_and_the_setting_to_change() -> None:
    with pytest.raises(NotFoundError) as info:
        router_of({}).resolve("gpt-5")
    assert info.value.message == (
        "model: 'gpt-5' is not a model this gateway serves. It serves claude-* names (mapped to the opus / "
        "sonnet / haiku tiers), provider/model ids such as openai/gpt-4o, and no configured aliases. To serve "
        "'gpt-5', add [models.\"gpt-5\"] to the config file (or ANTHROPIC_GATEWAY_MODELS), or set "
        "ANTHROPIC_GATEWAY_PASSTHROUGH_MODELS=true to send unknown names to the default backend unchanged"
    )
    with pytest.raises(NotFoundError) as info:
        router_of({"fast": {"model": "x/fast"}, "claude-*haiku*": {"model": "x/small"}}).resolve("gpt-5")
    assert "provider/model ids such as openai/gpt-4o, and the configured aliases 'fast', 'claude-*haiku*'. " in (
        info.value.message
    )
