"""Output-token limits: the ceiling no ``max_tokens`` may pass, and each target model's own limit.

A ``max_tokens`` above the largest output limit the gateway knows of is refused, in Anthropic's words
("max_tokens: 1000000 > 128000, which is the maximum allowed number of output tokens for ..."); at or
below it, the value is clamped to the target's own limit before it goes upstream
(translate.policy.clamp), as a client of that model would want.

Where limits come from, first match wins:
1. the configuration: ``max_output_tokens`` of the model alias;
2. ``OutputLimits.feed()``: upstream model id → limit, for a model catalogue (OpenRouter's /models)
   to call whenever it learns them (``Router.feed_output_limits`` also drops cached routes).
The ceiling is the largest of Claude's own output limit and every limit known by 1 and 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from anthropic_gateway.errors import InvalidRequestError, shown

# The largest output any Claude model allows (Opus 4.6 and Sonnet 3.7 with output-128k).
CLAUDE_MAX_OUTPUT_TOKENS = 128_000


class OutputLimits:
    def __init__(self, configured: Iterable[int | None] = ()) -> None:
        self._configured = max((n for n in configured if n is not None), default=0)
        self._by_model: dict[str, int] = {}
        self.ceiling = max(CLAUDE_MAX_OUTPUT_TOKENS, self._configured)

    def feed(self, limits: Mapping[str, int]) -> None:
        """Per upstream model id, its largest output in tokens (a catalogue's ``max_completion_tokens``).
        Later calls add to and override earlier ones; entries that are not positive are ignored."""
        self._by_model.update({model: n for model, n in limits.items() if isinstance(n, int) and n > 0})
        self.ceiling = max(CLAUDE_MAX_OUTPUT_TOKENS, self._configured, *self._by_model.values())

    def of(self, upstream_model: str, configured: int | None = None) -> int | None:
        """The target's own limit: the configured one, else the fed one, else unknown (None)."""
        return configured if configured is not None else self._by_model.get(upstream_model)

    def check(self, max_tokens: int, model: str) -> None:
        if max_tokens > self.ceiling:
            raise InvalidRequestError(
                f"max_tokens: {shown(str(max_tokens), 40)} > {self.ceiling}, which is the maximum allowed "
                f"number of output tokens for {shown(model)}"
            )
