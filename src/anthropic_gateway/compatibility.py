"""The compatibility summary ``GET /`` shows: how each request field and each message content kind is
handled (translated, emulated, degraded, ignored, refused), as the tables of docs/compatibility.md state it.

The document explains; this module is its data for the root route (the document is not shipped in
the package). tests/test_compatibility_doc.py parses the document's tables and fails when the two
differ, so they cannot drift: change both together.
"""

from __future__ import annotations

from typing import Any, Literal

Policy = Literal["translated", "emulated", "degraded", "ignored", "refused"]
POLICIES: tuple[Policy, ...] = ("translated", "emulated", "degraded", "ignored", "refused")

# docs/compatibility.md, "## Request fields": (field, policy), in the document's order.
REQUEST_FIELDS: tuple[tuple[str, Policy], ...] = (
    ("model", "translated"), ("messages", "translated"), ("max_tokens", "translated"),
    ("system", "translated"), ("stop_sequences", "translated"), ("stream", "translated"),
    ("temperature", "translated"), ("top_p", "translated"), ("top_k", "translated"), ("tools", "translated"),
    ("tool_choice", "translated"), ("thinking", "translated"), ("output_config", "translated"),
    ("output_format", "translated"), ("metadata", "translated"), ("cache_control", "translated"),
    ("mcp_servers", "refused"), ("context_management", "emulated"),
    ("thread", "translated"), ("service_tier", "ignored"),
    ("container", "ignored"), ("inference_geo", "ignored"), ("speed", "ignored"), ("provider", "translated"),
    ("models", "translated"), ("transforms", "translated"), ("min_p", "translated"), ("top_a", "translated"),
    ("repetition_penalty", "translated"), ("reasoning", "translated"), ("frequency_penalty", "translated"),
    ("presence_penalty", "translated"), ("seed", "translated"), ("user", "translated"),
    ("logit_bias", "translated"), ("response_format", "translated"), ("other fields", "ignored"),
)  # fmt: skip

# docs/compatibility.md, "## Messages": (role or block, policy), in the document's order.
MESSAGES: tuple[tuple[str, Policy], ...] = (
    ("user / assistant string content", "translated"), ("system role inside messages", "translated"),
    ("mid_conv_system", "translated"), ("text", "translated"), ("image", "translated"),
    ("document", "translated"), ("search_result", "degraded"), ("tool_use", "translated"),
    ("tool_result", "translated"), ("tool_reference", "degraded"), ("thinking", "translated"),
    ("redacted_thinking", "translated"), ("server_tool_use", "degraded"),
    ("web_search_tool_result", "degraded"), ("web_fetch_tool_result", "degraded"),
    ("code_execution_tool_result", "degraded"), ("bash_code_execution_tool_result", "degraded"),
    ("text_editor_code_execution_tool_result", "degraded"), ("tool_search_tool_result", "degraded"),
    ("mcp_tool_use", "degraded"), ("mcp_tool_result", "degraded"), ("container_upload", "degraded"),
    ("unknown block types", "ignored"), ("cache_control on blocks", "translated"),
    ("consecutive same-role messages", "translated"),
)  # fmt: skip

DOCUMENT = "docs/compatibility.md"


def _by_policy(rows: tuple[tuple[str, Policy], ...]) -> dict[str, list[str]]:
    return {p: [name for name, policy in rows if policy == p] for p in POLICIES}


def summary() -> dict[str, Any]:
    return {
        "document": DOCUMENT,
        "request_fields": _by_policy(REQUEST_FIELDS),
        "messages": _by_policy(MESSAGES),
    }
