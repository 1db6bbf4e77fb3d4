"""What the response translators need to know about the request they answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RequestContext:
    """What the response translators need to know about the request."""

    client_model: str
    target_is_claude: bool
    # The client's stop sequences (to recognise one the upstream reports), and the ones the gateway
    # matches itself in the generated text (all of them unless the backend reports which one matched).
    stop_sequences: list[str] = field(default_factory=list)
    local_stops: list[str] = field(default_factory=list)
    # Tool-call arguments go out as they arrive (True) or whole, validated and repaired (False).
    stream_tool_input: bool = False
    # What the gateway's context editing did (`context_management` of the response), when asked for.
    context_management: dict[str, Any] | None = None
    # upstream tool name → the client's name, only for names that had to be rewritten.
    tool_names: dict[str, str] = field(default_factory=dict)
    # thinking.display "omitted" on a Claude target: thinking blocks go back without their text, which
    # travels in the signature envelope so the next turn can replay it (common.hidden_thinking).
    omit_thinking: bool = False
    # Set when the request asked for Anthropic's web search and the upstream runs it (OpenRouter's
    # web plugin): the answer gets the search blocks (websearch/blocks.py).
    web_search_query: str | None = None
    # The max_tokens sent upstream: a stream that goes past it is ended here (StreamTranslator).
    max_tokens: int | None = None
