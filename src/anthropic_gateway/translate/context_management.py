"""Anthropic's context editing (beta `context-management-2025-06-27`), applied by the gateway (pure).

    plan = parse_context_management(req.context_management)      # InvalidRequestError on bad input
    edited = apply_edits(req, plan, tokens=estimate, count=count)  # count(request) → input tokens

Upstreams other than Anthropic do not take `context_management`, so the edits are made here, on the
request, before it is translated: the client keeps its full history, the model sees the edited one,
and the response reports what was done in `context_management.applied_edits` (the SDK's
BetaContextManagementResponse). Token figures come from the gateway's local counter.

- `clear_thinking_20251015`: thinking and redacted_thinking blocks of all but the last `keep`
  assistant turns are removed (`keep: "all"` keeps them all; default 1 turn). A turn is the run of
  assistant messages between two user messages that are more than tool results, so one tool loop is one
  turn. Must come first when both edits are given, as Anthropic requires.
- `clear_tool_uses_20250919`: once `trigger` is exceeded (default 100 000 input tokens; or a number
  of tool uses), the results of all but the last `keep` tool uses (default 3) are replaced by a
  placeholder, oldest first, except for tools named in `exclude_tools`; `clear_tool_inputs` (true, or
  a list of tool names) also empties those calls' inputs. With `clear_at_least`, nothing is cleared
  unless at least that many tokens would go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.routing import Route
from anthropic_gateway.schemas import (
    CountTokensRequest,
    Message,
    RedactedThinkingBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)

# What a cleared tool result says instead (Claude Code's own wording for the results it clears).
PLACEHOLDER = "[Old tool result content cleared]"
_PLACEHOLDER_RAW = msgspec.Raw(msgspec.json.encode(PLACEHOLDER))
DEFAULT_TRIGGER_TOKENS = 100_000
DEFAULT_KEEP_TOOL_USES = 3
DEFAULT_KEEP_THINKING_TURNS = 1

Count = Annotated[int, Meta(ge=0)]


class InputTokens(Struct, tag_field="type", tag="input_tokens", forbid_unknown_fields=True):
    value: Count


class ToolUses(Struct, tag_field="type", tag="tool_uses", forbid_unknown_fields=True):
    value: Count


class ThinkingTurns(Struct, tag_field="type", tag="thinking_turns", forbid_unknown_fields=True):
    value: Annotated[int, Meta(ge=1)]


class AllThinkingTurns(Struct, tag_field="type", tag="all", forbid_unknown_fields=True):
    pass


class ClearToolUses(Struct, tag_field="type", tag="clear_tool_uses_20250919", kw_only=True,
                    forbid_unknown_fields=True):  # fmt: skip
    trigger: InputTokens | ToolUses | None = None
    keep: ToolUses | None = None
    clear_at_least: InputTokens | None = None
    exclude_tools: list[str] | None = None
    clear_tool_inputs: bool | list[str] | None = None


class ClearThinking(Struct, tag_field="type", tag="clear_thinking_20251015", kw_only=True,
                    forbid_unknown_fields=True):  # fmt: skip
    keep: ThinkingTurns | AllThinkingTurns | Literal["all"] | None = None


Edit = ClearToolUses | ClearThinking


class ContextManagement(Struct, kw_only=True, forbid_unknown_fields=True):
    edits: list[Edit] = msgspec.field(default_factory=list)


EDIT_TYPES = ("clear_tool_uses_20250919", "clear_thinking_20251015")


def parse_context_management(raw: Any) -> ContextManagement | None:
    """The request's `context_management`, validated; None when absent."""
    if raw is None:
        return None
    if isinstance(raw, dict):
        for i, edit in enumerate(raw.get("edits") or ()):
            kind = edit.get("type") if isinstance(edit, dict) else None
            if isinstance(kind, str) and kind not in EDIT_TYPES:
                raise InvalidRequestError(
                    f"context_management.edits.{i}.type: '{kind[:60]}' is not supported by this gateway; "
                    f"it applies {' and '.join(EDIT_TYPES)}"
                )
    try:
        plan = msgspec.convert(raw, ContextManagement)
    except msgspec.ValidationError as err:
        text = str(err)
        message, _, path = text.partition(" - at `$")
        where = "context_management" + path.rstrip("`").replace("[", ".").replace("]", "")
        raise InvalidRequestError(f"{where}: {message}") from None
    kinds = [type(e) for e in plan.edits]
    if ClearThinking in kinds and kinds[0] is not ClearThinking:
        raise InvalidRequestError(
            "context_management.edits: clear_thinking_20251015 must be listed first when combined with other edits"
        )
    return plan


def takes_context_management(route: Route) -> bool:
    """Whether the field goes upstream as it is (a Claude target on a backend that takes it)."""
    return route.backend.kind.native_context_management and route.target_is_claude


R = TypeVar("R", bound=CountTokensRequest)


@dataclass(slots=True)
class Edited:
    """The request the model sees, its token count, and what `applied_edits` reports."""

    request: Any
    tokens: int
    applied: list[dict[str, Any]] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {"applied_edits": self.applied}


def apply_edits(req: R, plan: ContextManagement, *, tokens: int, count: Callable[[R], int]) -> Edited:
    """Apply the edits in order; each sees the request (and token count) the previous one left."""
    out = Edited(req, tokens)
    for edit in plan.edits:
        if isinstance(edit, ClearThinking):
            messages, turns = _clear_thinking(out.request.messages, _thinking_turns_kept(edit))
            if turns:
                _commit(out, messages, count, {"type": edit.__struct_config__.tag, "cleared_thinking_turns": turns})
        else:
            if not _triggered(edit, out.request.messages, out.tokens):
                continue
            messages, uses = _clear_tool_uses(out.request.messages, edit)
            if not uses:
                continue
            least = edit.clear_at_least.value if edit.clear_at_least is not None else 0
            _commit(out, messages, count, {"type": edit.__struct_config__.tag, "cleared_tool_uses": uses}, least)
    return out


def _commit(out: Edited, messages: list[Message], count: Callable[[Any], int], entry: dict[str, Any],
            least: int = 0) -> None:  # fmt: skip
    candidate = msgspec.structs.replace(out.request, messages=messages)
    after = count(candidate)
    cleared = max(out.tokens - after, 0)
    if least and cleared < least:
        return  # not worth breaking the prompt cache for: the edit is not applied
    out.request, out.tokens = candidate, after
    out.applied.append({**entry, "cleared_input_tokens": cleared})


# --- clear_thinking_20251015 ---------------------------------------------------------------------


def _thinking_turns_kept(edit: ClearThinking) -> int | None:
    """How many of the last assistant turns keep their thinking; None: all."""
    if edit.keep is None:
        return DEFAULT_KEEP_THINKING_TURNS
    if isinstance(edit.keep, ThinkingTurns):
        return edit.keep.value
    return None


def _is_human_turn(msg: Message) -> bool:
    """A user message that is more than tool results starts a new exchange."""
    if msg.role != "user":
        return False
    if isinstance(msg.content, str):
        return True
    return any(not isinstance(b, ToolResultBlock) for b in msg.content)


def _clear_thinking(messages: list[Message], keep: int | None) -> tuple[list[Message], int]:
    if keep is None:
        return messages, 0
    turn_of: list[int] = []
    turn = 0
    in_turn = False
    for msg in messages:
        if _is_human_turn(msg):
            in_turn = False
        elif msg.role == "assistant" and not in_turn:
            turn += 1
            in_turn = True
        turn_of.append(turn)
    oldest_kept = turn - keep + 1
    out: list[Message] = []
    cleared: set[int] = set()
    for msg, t in zip(messages, turn_of, strict=True):
        if msg.role == "assistant" and t < oldest_kept and not isinstance(msg.content, str):
            kept = [b for b in msg.content if not isinstance(b, ThinkingBlock | RedactedThinkingBlock)]
            if len(kept) != len(msg.content):
                cleared.add(t)
                if not kept:
                    continue  # nothing but thinking: the message goes
                msg = msgspec.structs.replace(msg, content=kept)
        out.append(msg)
    return out, len(cleared)


# --- clear_tool_uses_20250919 --------------------------------------------------------------------


def _tool_uses(messages: list[Message]) -> list[ToolUseBlock]:
    return [b for m in messages if m.role == "assistant" and not isinstance(m.content, str)
            for b in m.content if isinstance(b, ToolUseBlock)]  # fmt: skip


def _triggered(edit: ClearToolUses, messages: list[Message], tokens: int) -> bool:
    trigger = edit.trigger
    if isinstance(trigger, ToolUses):
        return len(_tool_uses(messages)) > trigger.value
    limit = trigger.value if trigger is not None else DEFAULT_TRIGGER_TOKENS
    return tokens > limit


def _clear_tool_uses(messages: list[Message], edit: ClearToolUses) -> tuple[list[Message], int]:
    uses = _tool_uses(messages)
    keep = edit.keep.value if edit.keep is not None else DEFAULT_KEEP_TOOL_USES
    excluded = set(edit.exclude_tools or ())
    older = uses[: max(len(uses) - keep, 0)]
    targets = {u.id: u.name for u in older if u.name not in excluded}
    if not targets:
        return messages, 0
    inputs = edit.clear_tool_inputs
    input_names = None if isinstance(inputs, bool) else set(inputs or ())

    def clear_input(name: str) -> bool:
        return bool(inputs) if input_names is None else name in input_names

    cleared: set[str] = set()
    out: list[Message] = []
    for msg in messages:
        if isinstance(msg.content, str):
            out.append(msg)
            continue
        blocks: list[Any] = []
        changed = False
        for b in msg.content:
            if isinstance(b, ToolResultBlock) and b.tool_use_id in targets and not _is_placeholder(b):
                b = msgspec.structs.replace(b, content=_PLACEHOLDER_RAW)
                cleared.add(b.tool_use_id)
                changed = True
            elif isinstance(b, ToolUseBlock) and b.id in targets and b.input and clear_input(b.name):
                b = msgspec.structs.replace(b, input={})
                cleared.add(b.id)
                changed = True
            blocks.append(b)
        out.append(msgspec.structs.replace(msg, content=blocks) if changed else msg)
    return out, len(cleared)


def _is_placeholder(block: ToolResultBlock) -> bool:
    """Whether a result already says PLACEHOLDER; its text (raw JSON) decoded only if it could."""
    raw = block.text_raw
    return raw is not None and len(raw) <= 6 * len(PLACEHOLDER) + 2 and block.text == PLACEHOLDER
