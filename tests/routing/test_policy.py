"""Per-model policy, pure: tool-schema adjustment on Claude Code's 24 real tool schemas, clamping,
capability refusal, parameter forwarding per backend kind, and defaults vs client values vs force."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import msgspec
import pytest

from anthropic_gateway.backends import KINDS
from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.routing import Route, Router
from anthropic_gateway.schemas import decode_messages_request
from anthropic_gateway.settings import SettingsError, load_settings
from anthropic_gateway.translate.policy import gemini_schema, prepare_request
from routing.helpers import claude_code_body, haiku_body, request_of, route_of, settings_of, simple
from routing.test_config import EXAMPLE

# --- tool schemas for Gemini ----------------------------------------------------------------------

REJECTED = frozenset({"$schema", "additionalProperties", "propertyNames", "uniqueItems", "const",
                      "exclusiveMinimum", "exclusiveMaximum"})  # fmt: skip
ALLOWED_FORMATS = frozenset({"enum", "date-time"})
DATA_KEYS = frozenset({"enum", "required", "default", "examples", "const"})  # values, not schemas


def violations(node: Any, path: str = "$") -> list[str]:
    """Every place in a JSON schema Gemini would reject (property *names* are not keywords)."""
    found: list[str] = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            found += violations(item, f"{path}[{i}]")
        return found
    if not isinstance(node, dict):
        return found
    for key, value in node.items():
        here = f"{path}.{key}"
        if key in REJECTED:
            found.append(here)
        if key == "format" and value not in ALLOWED_FORMATS:
            found.append(f"{here}={value}")
        if key == "enum" and not all(isinstance(v, str) for v in value):
            found.append(f"{here} (non-string)")
        if key == "properties" and isinstance(value, dict):
            for name, sub in value.items():
                found += violations(sub, f"{here}.{name}")
        elif key not in DATA_KEYS:
            found += violations(value, here)
    kinds = node.get("type")
    if (kinds == "array" or (isinstance(kinds, list) and "array" in kinds)) and "items" not in node:
        found.append(f"{path} (array without items)")
    return found


def property_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                names |= set(value)
                for sub in value.values():
                    names |= property_names(sub)
            elif key not in DATA_KEYS:
                names |= property_names(value)
    elif isinstance(node, list):
        for item in node:
            names |= property_names(item)
    return names


def test_claude_code_tools_contain_rejected_keywords() -> None:
    """The fixture exercises the stripping: without this the checks below could not fail."""
    tools = claude_code_body()["tools"]
    assert len(tools) == 24
    found = [v for t in tools for v in violations(t["input_schema"], t["name"])]
    kinds = {v.split(".")[-1].split("=")[0] for v in found}
    assert {"$schema", "additionalProperties", "propertyNames", "exclusiveMinimum", "const", "format"} <= kinds


@pytest.mark.parametrize(
    ("model", "family"),
    [("google/gemini-2.5-pro", "auto"), ("gemini-2.5-flash", "auto"), ("vendor/any-model", "gemini")],
)
def test_gemini_schemas_on_claude_codes_24_tools(model: str, family: str) -> None:
    body = claude_code_body()
    pristine = copy.deepcopy(body)
    req = request_of(body)
    raw_before = [bytes(t.input_schema) for t in req.tools or []]
    route = route_of("gem", {"model": model, "schema_family": family})

    out, _ = prepare_request(req, route, stream=True)

    tools = out["tools"]
    assert [t["function"]["name"] for t in tools] == [t["name"] for t in pristine["tools"]]
    for tool, original in zip(tools, pristine["tools"], strict=True):
        params = msgspec.json.decode(msgspec.json.encode(tool["function"]["parameters"]))
        assert violations(params, tool["function"]["name"]) == []
        # nothing the model needs is lost: every argument and the required list survive
        assert property_names(params) == property_names(original["input_schema"]), tool["function"]["name"]
        assert params.get("required") == original["input_schema"].get("required")
        assert params["type"] == "object"
    # the original request is unchanged: its raw schemas and the decoded fixture
    assert [bytes(t.input_schema) for t in req.tools or []] == raw_before
    assert [msgspec.json.decode(r) for r in raw_before] == [t["input_schema"] for t in pristine["tools"]]
    assert body == pristine


def test_gemini_schema_twice_gives_the_same_answer_and_keeps_the_input() -> None:
    tools = claude_code_body()["tools"]
    schemas = [t["input_schema"] for t in tools]
    pristine = copy.deepcopy(schemas)
    first = [gemini_schema(s) for s in schemas]
    second = [gemini_schema(msgspec.Raw(msgspec.json.encode(s))) for s in schemas]
    assert schemas == pristine
    assert msgspec.json.encode(first) == msgspec.json.encode(second)


def test_gemini_schema_on_every_rejected_keyword() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "propertyNames": {"pattern": "^[a-z]+$"},
        "properties": {
            "format": {"type": "string", "format": "uri"},  # a property *named* format stays
            "const": {"type": "string", "const": "fixed"},
            "when": {"type": "string", "format": "date-time"},
            "level": {"type": "string", "enum": ["low", "high"]},
            "count": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10, "enum": [1, 2, 3]},
            "tags": {"type": "array", "uniqueItems": True},
            "nested": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "string"},
                                                  "properties": {"deep": {"type": "array"}}}},
            "either": {"anyOf": [{"type": "string", "format": "email"}, {"type": "number", "const": 3}]},
        },
        "required": ["format"],
    }  # fmt: skip
    pristine = copy.deepcopy(schema)
    out = gemini_schema(schema)
    assert violations(out) == []
    assert schema == pristine
    assert set(out["properties"]) == set(pristine["properties"])
    assert out["properties"]["when"]["format"] == "date-time"
    assert out["properties"]["level"]["enum"] == ["low", "high"]
    assert out["required"] == ["format"]


def test_other_families_get_the_schemas_unchanged() -> None:
    body = claude_code_body()
    out, _ = prepare_request(request_of(body), route_of("x", {"model": "google/gemini-2.5-pro",
                                                              "schema_family": "none"}), stream=True)  # fmt: skip
    sent = msgspec.json.decode(msgspec.json.encode([t["function"]["parameters"] for t in out["tools"]]))
    assert sent == [t["input_schema"] for t in body["tools"]]
    out2, _ = prepare_request(request_of(body), route_of("y", {"model": "deepseek/deepseek-chat"}), stream=True)
    sent2 = msgspec.json.decode(msgspec.json.encode([t["function"]["parameters"] for t in out2["tools"]]))
    assert sent2 == [t["input_schema"] for t in body["tools"]]


# --- clamping ------------------------------------------------------------------------------------


def _prepare(body: dict[str, Any], route: Route, estimate: int = 0, **kw: Any) -> dict[str, Any]:
    out, _ = prepare_request(request_of(body), route, stream=False, input_estimate=estimate, **kw)
    return out


def test_claude_code_haiku_request_clamped_to_8192_keeps_thinking_below_it(caplog: pytest.LogCaptureFixture) -> None:
    route = route_of("claude-*haiku*", {"model": "vendor/small", "max_output_tokens": 8192})
    req = request_of(haiku_body())
    with caplog.at_level(logging.INFO, logger="anthropic_gateway"):
        out, _ = prepare_request(req, route, stream=False, input_estimate=0)
    assert out["max_tokens"] == 8192
    assert out["reasoning"] == {"max_tokens": 8191}
    assert req.max_tokens == 32000 and req.thinking.budget_tokens == 31999  # type: ignore[union-attr]
    assert any("32000" in r.getMessage() and "8192" in r.getMessage() for r in caplog.records), caplog.text


def test_claude_code_haiku_request_clamped_to_1500_keeps_a_1499_budget() -> None:
    # Anthropic's rule is 1024 <= budget < max_tokens: 1499 still fits, so thinking stays on.
    out = _prepare(haiku_body(), route_of("claude-*haiku*", {"model": "vendor/small", "max_output_tokens": 1500}))
    assert out["max_tokens"] == 1500
    assert out["reasoning"] == {"max_tokens": 1499}


def test_haiku_request_to_an_openai_kind_backend_uses_max_completion_tokens() -> None:
    out = _prepare(haiku_body(), route_of("h", {"model": "o4-mini", "max_output_tokens": 8192}, kind="openai"))
    assert out["max_completion_tokens"] == 8192 and "max_tokens" not in out


@pytest.mark.parametrize("limit", [1024, 1000])
def test_no_room_for_a_1024_token_budget_drops_thinking(limit: int) -> None:
    out = _prepare(haiku_body(), route_of("h", {"model": "vendor/small", "max_output_tokens": limit}))
    assert out["max_tokens"] == limit
    assert "reasoning" not in out


def test_a_budget_already_below_the_limit_is_kept() -> None:
    body = {**haiku_body(), "thinking": {"type": "enabled", "budget_tokens": 4000}}
    out = _prepare(body, route_of("h", {"model": "vendor/small", "max_output_tokens": 8192}))
    assert (out["max_tokens"], out["reasoning"]) == (8192, {"max_tokens": 4000})


def test_requests_within_the_limits_are_untouched() -> None:
    body = {**haiku_body(), "max_tokens": 6000, "thinking": {"type": "enabled", "budget_tokens": 5000}}
    out = _prepare(body, route_of("h", {"model": "vendor/small", "max_output_tokens": 8192,
                                        "context_window": 100000}), estimate=20000)  # fmt: skip
    assert (out["max_tokens"], out["reasoning"]) == (6000, {"max_tokens": 5000})


def test_context_window_clamp_uses_the_input_estimate() -> None:
    route = route_of("h", {"model": "vendor/small", "context_window": 30000})
    out = _prepare(haiku_body(), route, estimate=25000)
    assert out["max_tokens"] == 5000
    assert out["reasoning"] == {"max_tokens": 4999}
    # the smaller of the two limits wins
    both = route_of("h", {"model": "vendor/small", "context_window": 30000, "max_output_tokens": 3000})
    assert _prepare(haiku_body(), both, estimate=25000)["max_tokens"] == 3000


def test_context_window_leaving_too_little_room_drops_thinking() -> None:
    out = _prepare(haiku_body(), route_of("h", {"model": "vendor/small", "context_window": 30000}), estimate=29500)
    assert out["max_tokens"] == 500
    assert "reasoning" not in out


def test_model_without_reasoning_capability_gets_no_thinking() -> None:
    out = _prepare(haiku_body(), route_of("h", {"model": "vendor/small", "capabilities": ["tools"]}))
    assert out["max_tokens"] == 32000
    assert "reasoning" not in out and "reasoning_effort" not in out


# --- capabilities --------------------------------------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PDF = "JVBERi0xLjQKJcfsj6IKNSAwIG9iago="
IMAGE_MSG = [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                          "data": PNG}},
                                          {"type": "text", "text": "What is this?"}]}]  # fmt: skip
PDF_MSG = [{"role": "user", "content": [{"type": "document", "source": {"type": "base64",
                                                                         "media_type": "application/pdf", "data": PDF}},
                                        {"type": "text", "text": "Summarise"}]}]  # fmt: skip
TOOL = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}
TOOL_HISTORY = [
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
]
IMAGE_IN_RESULT = [
    {"role": "user", "content": "Screenshot?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]},
]  # fmt: skip


@pytest.mark.parametrize(
    ("caps", "fields", "word"),
    [
        (["reasoning"], {"tools": [TOOL]}, "tool"),
        (["reasoning"], {"messages": TOOL_HISTORY}, "tool"),
        (["tools"], {"messages": IMAGE_MSG}, "image"),
        (["tools", "pdf"], {"messages": IMAGE_IN_RESULT}, "image"),
        (["tools", "vision"], {"messages": PDF_MSG}, "PDF"),
    ],
    ids=["tools", "tool-history", "vision", "vision-in-tool-result", "pdf"],
)
def test_capability_refusal_names_the_model(caps: list[str], fields: dict[str, Any], word: str) -> None:
    route = route_of("weak-model", {"model": "vendor/weak", "capabilities": caps})
    with pytest.raises(InvalidRequestError) as info:
        prepare_request(simple("weak-model", **fields), route, stream=False)
    err = info.value
    assert (err.http_status, err.error_type) == (400, "invalid_request_error")
    assert "weak-model" in err.message and word in err.message


@pytest.mark.parametrize(
    ("caps", "fields"),
    [(["tools"], {"tools": [TOOL]}), (["vision"], {"messages": IMAGE_MSG}), (["pdf"], {"messages": PDF_MSG}),
     ([], {})],
)  # fmt: skip
def test_a_request_within_the_capabilities_passes(caps: list[str], fields: dict[str, Any]) -> None:
    out, _ = prepare_request(simple("m", **fields), route_of("m", {"model": "v/m", "capabilities": caps}), stream=False)
    assert out["model"] == "v/m"


# --- parameters ----------------------------------------------------------------------------------

CLIENT_EXTRAS: dict[str, Any] = {
    "provider": {"order": ["anthropic", "together"], "allow_fallbacks": False, "require_parameters": True,
                 "data_collection": "deny", "only": ["anthropic"], "ignore": ["azure"],
                 "quantizations": ["fp8", "bf16"], "sort": "throughput", "max_price": {"prompt": 1, "completion": 2},
                 "zdr": True},
    "models": ["anthropic/claude-sonnet-4.5", "openai/gpt-4o"],
    "transforms": ["middle-out"],
    "min_p": 0.1,
    "top_a": 0.2,
    "repetition_penalty": 1.1,
    "reasoning": {"effort": "high", "exclude": True},
    "frequency_penalty": 0.5,
    "presence_penalty": -0.5,
    "seed": 42,
    "user": "user-123",
    "logit_bias": {"50256": -100},
    "response_format": {"type": "json_object"},
}  # fmt: skip
OPENAI_ONES = {"frequency_penalty", "presence_penalty", "seed", "user", "logit_bias", "response_format"}
OPENROUTER_ONLY = {"provider", "models", "transforms", "plugins", "min_p", "top_a", "repetition_penalty", "reasoning"}


def test_openrouter_kind_gets_every_parameter_in_its_current_form() -> None:
    out = _prepare({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}], **CLIENT_EXTRAS},
                   route_of("m", {"model": "v/m"}, kind="openrouter"))  # fmt: skip
    expected = {k: v for k, v in CLIENT_EXTRAS.items() if k != "transforms"}
    assert {k: out.get(k) for k in expected} == expected
    assert out["plugins"] == [{"id": "context-compression"}]
    assert "transforms" not in out


def test_openai_kind_gets_only_the_openai_parameters() -> None:
    out = _prepare({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}],
                    "top_k": 5, **CLIENT_EXTRAS}, route_of("m", {"model": "gpt-4o"}, kind="openai"))  # fmt: skip
    assert {k: out.get(k) for k in OPENAI_ONES} == {k: CLIENT_EXTRAS[k] for k in OPENAI_ONES}
    assert OPENROUTER_ONLY & set(out) == set()
    assert "top_k" not in out and "max_tokens" not in out and out["max_completion_tokens"] == 100


def test_openai_compatible_kind_gets_the_openai_parameters_and_its_sampling_extensions() -> None:
    out = _prepare({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}], **CLIENT_EXTRAS},
                   route_of("m", {"model": "qwen"}, kind="openai-compatible"))  # fmt: skip
    forwarded = (OPENAI_ONES | OPENROUTER_ONLY) & set(out)
    assert forwarded == OPENAI_ONES | {"min_p", "repetition_penalty"}
    assert forwarded == KINDS["openai-compatible"].extra_params


def test_transforms_opt_out_is_sent_as_a_disabled_plugin() -> None:
    out = _prepare({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}],
                    "transforms": []}, route_of("m", {"model": "v/m"}))  # fmt: skip
    assert out["plugins"] == [{"id": "context-compression", "enabled": False}]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_p", 1.5), ("min_p", -0.1), ("top_a", 2), ("repetition_penalty", 0), ("repetition_penalty", 2.5),
        ("frequency_penalty", 2.5), ("presence_penalty", -3), ("logit_bias", {"50256": 101}), ("seed", "x"),
        ("response_format", {"type": "xml"}), ("provider", {"sort": "cheapest"}),
        ("provider", {"data_collection": "maybe"}), ("provider", {"quantizations": ["int3"]}),
        ("provider", {"order": "anthropic"}), ("models", "openai/gpt-4o"), ("transforms", "middle-out"),
        ("reasoning", "high"), ("user", 5),
    ],
)  # fmt: skip
def test_out_of_range_parameters_are_a_400_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        simple(**{field: value})
    assert info.value.http_status == 400
    assert info.value.message.startswith(field), info.value.message


def test_provider_with_an_unknown_key_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequestError) as info:
        simple(provider={"order": ["a"], "prefered_order": ["b"]})
    assert info.value.message.startswith("provider") and "prefered_order" in info.value.message


TUNED = {"model": "v/tuned", "defaults": {"temperature": 0.3, "seed": 7},
         "force": {"frequency_penalty": 0.5, "provider": {"order": ["forced"]}}}  # fmt: skip
GLOBAL = {"temperature": 0.9, "top_p": 0.5, "seed": 1, "presence_penalty": 0.1}


def test_model_defaults_then_global_defaults_fill_what_the_client_left_unset() -> None:
    out = _prepare({"model": "t", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]},
                   route_of("t", TUNED), default_params=GLOBAL)  # fmt: skip
    keys = ("temperature", "seed", "top_p", "presence_penalty", "frequency_penalty", "provider")
    expected = {"temperature": 0.3, "seed": 7, "top_p": 0.5, "presence_penalty": 0.1, "frequency_penalty": 0.5,
                "provider": {"order": ["forced"]}}  # fmt: skip
    assert {k: out.get(k) for k in keys} == expected


def test_client_values_beat_defaults_and_force_beats_the_client() -> None:
    body = {"model": "t", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.7,
            "top_p": 0.8, "seed": 99, "frequency_penalty": 1.5, "provider": {"order": ["mine"]}}  # fmt: skip
    out = _prepare(body, route_of("t", TUNED), default_params=GLOBAL)
    assert {k: out.get(k) for k in ("temperature", "top_p", "seed", "frequency_penalty", "provider")} == {
        "temperature": 0.7, "top_p": 0.8, "seed": 99, "frequency_penalty": 0.5, "provider": {"order": ["forced"]}}


def test_global_defaults_apply_to_unconfigured_routes() -> None:
    route = Router(load_settings(environ={"ANTHROPIC_GATEWAY_BACKEND_KIND": "openrouter"})).resolve("a/b")
    out = _prepare({"model": "a/b", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}, route,
                   default_params={"temperature": 0.2})  # fmt: skip
    assert out["temperature"] == 0.2


def test_configured_defaults_a_backend_kind_does_not_take_are_not_forwarded() -> None:
    """The example file's `[default_params] provider = {...}` must not reach the OpenAI backend of its
    `gpt` alias: OpenAI rejects unknown parameters."""
    s = load_settings(environ={"OPENAI_API_KEY": "sk-x"}, config_path=EXAMPLE)
    route = Router(s).resolve("gpt")
    assert route.backend.kind.name == "openai"
    out = _prepare({"model": "gpt", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}, route,
                   default_params=s.default_params)  # fmt: skip
    assert "provider" not in out, f"provider sent to an openai-kind backend: {json.dumps(out)[:300]}"


def test_configured_openrouter_only_defaults_are_dropped_for_openai_kind() -> None:
    route = route_of("g", {"model": "gpt-4o", "defaults": {"min_p": 0.05, "transforms": ["middle-out"],
                                                          "temperature": 0.4}}, kind="openai")  # fmt: skip
    out = _prepare({"model": "g", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}, route)
    assert out["temperature"] == 0.4
    assert {"min_p", "transforms", "plugins"} & set(out) == set()


def test_gemini_stripping_tolerates_an_enum_that_is_not_a_list() -> None:
    assert gemini_schema({"type": "object", "properties": {"x": {"type": "integer", "enum": 5}}}) == {
        "type": "object", "properties": {"x": {"type": "integer"}},
    }  # fmt: skip


def test_defaults_never_turn_on_reasoning_and_transforms_become_plugins() -> None:
    route = route_of("m", {"model": "x/y", "defaults": {"reasoning": {"effort": "low"}, "transforms": ["middle-out"]}})
    req = decode_messages_request(json.dumps({"model": "m", "max_tokens": 10,
                                              "messages": [{"role": "user", "content": "hi"}]}).encode())  # fmt: skip
    body, _ = prepare_request(req, route, stream=False)
    assert "reasoning" not in body
    assert body["plugins"] == [{"id": "context-compression"}] and "transforms" not in body


def test_a_fallback_served_by_a_pattern_or_tier_validates() -> None:
    s = settings_of({"claude-*sonnet*": {"model": "x/s"}, "claude-*haiku*": {"model": "x/h", "fallbacks": ["claude-sonnet-4-5"]}})
    assert s.models["claude-*haiku*"].fallbacks == ["claude-sonnet-4-5"]
    with pytest.raises(SettingsError, match="'nowhere' is not another configured model alias"):
        settings_of({"a": {"model": "x/a", "fallbacks": ["nowhere"]}})
