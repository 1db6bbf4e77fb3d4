"""What the response translators need to know about the request they answer."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestContext:
    """What the response translators need to know about the request."""

    client_model: str
    target_is_claude: bool
    stop_sequences: list[str] = field(default_factory=list)
    # upstream tool name → the client's name, only for names that had to be rewritten.
    tool_names: dict[str, str] = field(default_factory=dict)
