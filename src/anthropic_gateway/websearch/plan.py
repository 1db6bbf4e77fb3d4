"""The request side of a web search (pure): which tool asks for it, the query, OpenRouter's plugin."""

from __future__ import annotations

from typing import Any

from anthropic_gateway.schemas import MessagesRequest, TextBlock, Tool, ToolChoiceTool

# What Claude Code's WebSearch sub-request says before the query.
_CLAUDE_CODE_PREFIX = "Perform a web search for the query: "
MAX_RESULTS = 10  # OpenRouter's web plugin default is 5; Claude Code asks for max_uses 8


def is_web_search(tool: Tool) -> bool:
    """Anthropic's web search server tool, any version (web_search_20250305, _20260209, ...)."""
    return tool.type is not None and tool.type.startswith("web_search_")


def find_web_search(req: MessagesRequest) -> Tool | None:
    return next((t for t in req.tools or () if is_web_search(t)), None)


def chooses_web_search(req: MessagesRequest, tool: Tool) -> bool:
    """``tool_choice: {"type": "tool", "name": "web_search"}`` selects the search, not a function."""
    return isinstance(req.tool_choice, ToolChoiceTool) and req.tool_choice.name == tool.name


def search_query(req: MessagesRequest) -> str:
    """The query: the last user message's text (Claude Code's "Perform a web search for the query:
    …" prefix removed)."""
    for msg in reversed(req.messages):
        if msg.role != "user":
            continue
        if isinstance(msg.content, str):
            text = msg.content
        else:
            text = "\n".join(b.text for b in msg.content if isinstance(b, TextBlock))
        text = text.strip()
        if text:
            return text.removeprefix(_CLAUDE_CODE_PREFIX).strip()
    return ""


def openrouter_plugin(tool: Tool) -> dict[str, Any]:
    """OpenRouter's ``web`` plugin for chat completions, from the tool's options."""
    plugin: dict[str, Any] = {"id": "web", "max_results": min(tool.max_uses or 5, MAX_RESULTS)}
    if tool.allowed_domains:
        plugin["include_domains"] = list(tool.allowed_domains)
    if tool.blocked_domains:
        plugin["exclude_domains"] = list(tool.blocked_domains)
    if tool.user_location:
        plugin["user_location"] = tool.user_location
    return plugin
