"""Tool search (Claude Code 2.1.332+): which ``defer_loading`` tools the model may call (pure).

Claude Code sends tools it has not loaded yet with ``"defer_loading": true`` (and a
``DeferredToolPlaceholder`` it says must never be called). On Anthropic such a tool is only callable
after a ``tool_reference`` block in the conversation (a ``ToolSearch`` result) loads it; the CLI then
sends its full definition, still marked ``defer_loading``. OpenAI-compatible upstreams have no such
notion, so a deferred tool is sent as a function only once a ``tool_reference`` names it, or once the
conversation already holds a call of it (the CLI runs a deferred tool called by name), so that history
never names a tool the request lacks.
"""

from __future__ import annotations

from anthropic_gateway.schemas import MessagesRequest, Tool, ToolReferenceBlock, ToolResultBlock, ToolUseBlock


def loaded_tools(req: MessagesRequest) -> set[str]:
    """The tool names loaded by ``tool_reference`` blocks in tool results, or called in the history."""
    names: set[str] = set()
    for msg in req.messages:
        if isinstance(msg.content, str):
            continue
        for block in msg.content:
            if isinstance(block, ToolUseBlock):
                names.add(block.name)
            elif isinstance(block, ToolResultBlock) and block.blocks is not None:
                names.update(b.tool_name for b in block.blocks if isinstance(b, ToolReferenceBlock))
    return names


def callable_tools(req: MessagesRequest) -> list[tuple[int, Tool]]:
    """(index in ``tools``, tool) for each tool the model may call now."""
    tools = req.tools or []
    if not any(t.defer_loading for t in tools):
        return list(enumerate(tools))
    loaded = loaded_tools(req)
    return [(i, t) for i, t in enumerate(tools) if not t.defer_loading or t.name in loaded]
