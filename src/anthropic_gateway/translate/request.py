"""Anthropic Messages request → OpenAI chat-completions request body (pure).

Every request field and content block has a deliberate policy, written down in
docs/compatibility.md. History the upstream cannot take is degraded (server-tool results → text,
tool_reference → its name, unknown blocks were already dropped by the schema layer); input whose
meaning would change is refused with InvalidRequestError naming the field.
"""

from __future__ import annotations

import logging
import re
from typing import Any, assert_never

import msgspec

from anthropic_gateway.backends import BackendKind
from anthropic_gateway.errors import InvalidRequestError, shown
from anthropic_gateway.routing import Route
from anthropic_gateway.schemas import (
    NO_SCHEMA,
    MessagesRequest,
    ThinkingAdaptive,
    ThinkingDisabled,
    ThinkingEnabled,
    Tool,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
)
from anthropic_gateway.translate.client_tools import client_tool_schema
from anthropic_gateway.translate.context import RequestContext
from anthropic_gateway.translate.context_management import takes_context_management
from anthropic_gateway.translate.deferred_tools import callable_tools
from anthropic_gateway.translate.messages import MessageConverter
from anthropic_gateway.translate.prompt_cache import limit_breakpoints
from anthropic_gateway.websearch.plan import (
    chooses_web_search,
    find_web_search,
    openrouter_plugin,
    search_query,
)

__all__ = ["RequestContext", "to_openai_request"]

log = logging.getLogger(__name__)

_EMPTY_SCHEMA = msgspec.Raw(b'{"type":"object","properties":{}}')


def to_openai_request(req: MessagesRequest, route: Route, *, stream: bool) -> tuple[dict[str, Any], RequestContext]:
    kind = route.backend.kind
    ctx = RequestContext(client_model=req.model, target_is_claude=route.target_is_claude,
                         stream_tool_input=stream and kind.stream_tool_input)  # fmt: skip
    conv = MessageConverter(route, ctx)

    body: dict[str, Any] = {"model": route.upstream_model}
    body["messages"] = conv.messages(req)
    body[kind.max_tokens_field] = req.max_tokens
    ctx.max_tokens = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.top_k is not None and kind.supports_top_k:
        body["top_k"] = req.top_k
    if req.stop_sequences:
        _stops(ctx, [s for s in req.stop_sequences if s], body, kind)
    if req.metadata is not None and req.metadata.user_id:
        body["user"] = req.metadata.user_id
    if req.mcp_servers:
        raise InvalidRequestError(
            "mcp_servers: MCP connectors run on Anthropic's servers and are not supported by this gateway; "
            "connect MCP servers in the client instead"
        )
    _tools(req, body, conv, route, ctx)
    _reasoning(req, body, route, ctx)
    fmt = req.output_config.format if req.output_config is not None else None
    fmt = fmt or req.output_format
    if fmt is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "strict": True, "schema": fmt.schema},
        }
    if req.context_management is not None and takes_context_management(route):
        body["context_management"] = req.context_management
    if req.cache_control is not None and conv.marks.style == "ttl" and kind.openrouter_extensions:
        body["cache_control"] = req.cache_control  # automatic mode: Anthropic-family providers only
    limit_breakpoints(body)
    if stream:
        body["stream"] = True
        if kind.include_usage_option:
            body["stream_options"] = {"include_usage": True}
    return body, ctx


def _stops(ctx: RequestContext, seqs: list[str], body: dict[str, Any], kind: BackendKind) -> None:
    """A backend that names the matched string gets the sequences (as many as it takes) and the
    gateway scans for the rest; any other backend gets none: it would cut the text at the string and
    not say which one, so the gateway matches them all itself and ends the answer there."""
    ctx.stop_sequences = seqs
    if not seqs:
        return
    if not kind.reports_matched_stop:
        ctx.local_stops = seqs
        return
    limit = kind.max_stop_sequences
    sent = seqs[:limit] if limit is not None else seqs
    body["stop"] = sent
    if len(sent) < len(seqs):
        ctx.local_stops = seqs


# --- tools -------------------------------------------------------------------------------------


def _tools(req: MessagesRequest, body: dict[str, Any], conv: MessageConverter, route: Route, ctx: RequestContext) -> None:
    if not req.tools:
        return
    search = web_search(req, body, route, ctx)
    tools = [_tool(t, i, conv) for i, t in callable_tools(req) if t is not search]
    if not tools:
        return  # only tools tool search has not loaded yet (or the web search): nothing to call
    body["tools"] = tools
    choice = req.tool_choice
    if choice is None or (search is not None and chooses_web_search(req, search)):
        return
    if isinstance(choice, ToolChoiceAuto):
        body["tool_choice"] = "auto"
    elif isinstance(choice, ToolChoiceAny):
        body["tool_choice"] = "required"
    elif isinstance(choice, ToolChoiceTool):
        body["tool_choice"] = {"type": "function", "function": {"name": conv.tool_name(choice.name)}}
    elif isinstance(choice, ToolChoiceNone):
        body["tool_choice"] = "none"  # tools stay in the request so the history remains valid
        return
    else:
        assert_never(choice)
    if choice.disable_parallel_tool_use:
        body["parallel_tool_calls"] = False


def _tool(tool: Tool, index: int, conv: MessageConverter) -> dict[str, Any]:
    schema = tool.input_schema
    description: str | None
    if tool.type not in (None, "custom"):
        synthesized = client_tool_schema(tool.type)
        if synthesized is None:
            raise InvalidRequestError(
                f"tools.{index}: '{shown(tool.type)}' is an Anthropic server tool, which runs on Anthropic's "
                "servers; this gateway cannot run it on an OpenAI-compatible model. Remove the tool or "
                "define it as a custom tool with an input_schema"
            )
        description, schema = synthesized
    else:
        description = tool.description
        if schema is NO_SCHEMA:
            raise InvalidRequestError(f"tools.{index}.input_schema: Field required")
    function: dict[str, Any] = {"name": conv.tool_name(tool.name)}
    if description:
        function["description"] = _description_json(description)
    function["parameters"] = schema if schema is not NO_SCHEMA else _EMPTY_SCHEMA
    if tool.strict is not None:
        function["strict"] = tool.strict
    out: dict[str, Any] = {"type": "function", "function": function}
    conv.marks.put(out, tool.cache_control)
    return out


# Tool descriptions as their JSON literals, by the text itself (equal, not similar): Claude Code
# sends the same 48 KB of descriptions, as the same str objects from the decoded-tools cache
# (schemas.tools_cache), on every turn, and the upstream body's encode scanned each for characters
# to escape every time; as Raw it copies them. Bounded in entries and in characters.
_DESCRIPTION_JSON: dict[str, msgspec.Raw] = {}
_DESCRIPTIONS = 512
_DESCRIPTION_CHARS = 256 << 10
_described = 0
_encode = msgspec.json.Encoder().encode


def _description_json(text: str) -> msgspec.Raw:
    global _described
    raw = _DESCRIPTION_JSON.get(text)
    if raw is None:
        raw = msgspec.Raw(_encode(text))
        if len(_DESCRIPTION_JSON) >= _DESCRIPTIONS or _described + len(text) > _DESCRIPTION_CHARS:
            _DESCRIPTION_JSON.clear()
            _described = 0
        if len(text) <= _DESCRIPTION_CHARS:
            _DESCRIPTION_JSON[text] = raw
            _described += len(text)
    return raw


def web_search(req: MessagesRequest, body: dict[str, Any], route: Route, ctx: RequestContext) -> Tool | None:
    """Anthropic's web search server tool: OpenRouter's web plugin runs it; other kinds need the
    gateway's own search backend (websearch/searxng.py), which removes the tool before this runs."""
    search = find_web_search(req)
    if search is None:
        return None
    if route.backend.kind.name != "openrouter":
        index = (req.tools or []).index(search)
        raise InvalidRequestError(
            f"tools.{index}: '{search.type}' (web search) runs on OpenRouter's web plugin; for the "
            f"{route.backend.kind.name} backend '{route.backend.name}' set "
            "ANTHROPIC_GATEWAY_WEB_SEARCH_URL (web_search_url) to a SearXNG-compatible JSON search URL"
        )
    body["plugins"] = [*body.get("plugins", []), openrouter_plugin(search)]
    ctx.web_search_query = search_query(req)
    return search


# --- thinking ----------------------------------------------------------------------------------

_EFFORT_FOR_OPENAI = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def _reasoning(req: MessagesRequest, body: dict[str, Any], route: Route, ctx: RequestContext) -> None:
    thinking = req.thinking
    effort = req.output_config.effort if req.output_config is not None else None
    kind = route.backend.kind
    style = kind.reasoning_request
    if thinking is None or isinstance(thinking, ThinkingDisabled):
        return  # effort without thinking is dropped: turning reasoning on unasked breaks some models
    if kind.reasoning_models is not None and not re.match(kind.reasoning_models, route.upstream_model):
        return
    if isinstance(thinking, ThinkingEnabled):
        if style == "openrouter":
            body["reasoning"] = {"max_tokens": thinking.budget_tokens}
        else:
            ratio = thinking.budget_tokens / max(req.max_tokens, 1)
            body["reasoning_effort"] = "high" if ratio >= 0.8 else "medium" if ratio >= 0.5 else "low"
    elif isinstance(thinking, ThinkingAdaptive):
        if style == "openrouter":
            body["reasoning"] = {"effort": effort} if effort else {"enabled": True}
        elif effort:
            body["reasoning_effort"] = _EFFORT_FOR_OPENAI[effort]
    else:
        assert_never(thinking)
    if thinking.display == "omitted" and "reasoning" in body:
        if route.target_is_claude:  # exclude would drop the signed reasoning the replay needs
            ctx.omit_thinking = True
        else:
            body["reasoning"]["exclude"] = True


