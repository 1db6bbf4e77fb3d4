"""Anthropic-defined tools that the *client* executes (bash, text editor), exposed upstream as ordinary
functions with a hand-written schema matching Anthropic's documented inputs. Server tools (web search,
code execution, ...) run on Anthropic's side and have no entry here: the translator refuses them."""

from __future__ import annotations

import msgspec

_BASH = msgspec.Raw(
    b'{"type":"object","properties":{"command":{"type":"string","description":"The bash command to run."},'
    b'"restart":{"type":"boolean","description":"Restart the shell session."}}}'
)
_TEXT_EDITOR = msgspec.Raw(
    b'{"type":"object","properties":{'
    b'"command":{"type":"string","enum":["view","create","str_replace","insert","undo_edit"]},'
    b'"path":{"type":"string"},"file_text":{"type":"string"},"old_str":{"type":"string"},'
    b'"new_str":{"type":"string"},"insert_line":{"type":"integer"},'
    b'"view_range":{"type":"array","items":{"type":"integer"}}},"required":["command","path"]}'
)

_TOOLS: dict[str, tuple[str, msgspec.Raw]] = {
    "bash": ("Run a command in a persistent bash shell.", _BASH),
    "text_editor": ("View, create and edit files.", _TEXT_EDITOR),
}


def client_tool_schema(tool_type: str) -> tuple[str, msgspec.Raw] | None:
    """(description, parameters) for a client-executed Anthropic tool type such as bash_20250124."""
    family = tool_type.rsplit("_", 1)[0]
    return _TOOLS.get(family)
