"""Mapping tables and helpers shared by the streaming and the non-streaming response paths."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from typing import Any

import orjson

from anthropic_gateway import ids

log = logging.getLogger(__name__)

# --- stop reasons ------------------------------------------------------------------------------

FINISH_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# Values an Anthropic upstream reports as native_finish_reason; more precise than the normalised one.
NATIVE_STOP_REASONS = frozenset(
    {"end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn", "model_context_window_exceeded"}
)


def stop_reason_for(finish_reason: str | None, native: Any, has_tool_calls: bool, refused: bool = False) -> str:
    if has_tool_calls:
        return "tool_use"
    if refused:  # the upstream's `refusal` field: a safety refusal whatever the finish reason says
        return "refusal"
    if isinstance(native, str) and native in NATIVE_STOP_REASONS and native not in ("tool_use", "stop_sequence"):
        return native
    return FINISH_REASONS.get(finish_reason or "stop", "end_turn")


# --- usage -------------------------------------------------------------------------------------


def anthropic_usage(usage: dict[str, Any] | None, input_estimate: int = 0) -> dict[str, Any]:
    """OpenAI usage → Anthropic usage. Anthropic's input_tokens excludes cache reads and writes,
    while OpenAI's prompt_tokens includes both, so both are subtracted (never below 0). Cache figures:
    `prompt_tokens_details.cached_tokens` / `.cache_write_tokens` (OpenRouter; OpenAI has only the
    first), else DeepSeek's `prompt_cache_hit_tokens`, else Anthropic-style names some proxies pass on."""
    if not usage:
        return {"input_tokens": input_estimate, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "output_tokens": 0}  # fmt: skip
    prompt = _count(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached = _count(details.get("cached_tokens")) or _count(usage.get("prompt_cache_hit_tokens")) or _count(
        usage.get("cache_read_input_tokens"))  # fmt: skip
    written = _count(details.get("cache_write_tokens")) or _count(usage.get("cache_creation_input_tokens"))
    out: dict[str, Any] = {
        "input_tokens": max(prompt - cached - written, 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.get("completion_tokens") or 0,
    }
    server = usage.get("server_tool_use")
    if isinstance(server, dict) and server.get("web_search_requests"):
        out["server_tool_use"] = {"web_search_requests": server["web_search_requests"]}
    return out


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def reported_stop(choice: dict[str, Any]) -> str | None:
    """The stop string a backend says ended the answer: vLLM's `stop_reason` (an int there is a stop
    token id, i.e. a natural end), SGLang's `matched_stop`."""
    for key in ("stop_reason", "matched_stop"):
        value = choice.get(key)
        if isinstance(value, str):
            return value
    return None


# --- tool names and ids ------------------------------------------------------------------------

_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_TOOL_ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def _digest(s: str, n: int) -> str:
    return hashlib.sha1(s.encode()).hexdigest()[:n]


def upstream_tool_name(name: str) -> str:
    """A name the upstream accepts. Reversible through the per-request map the translator keeps;
    never lower-cases (a lossy rename makes the model call tools that do not exist)."""
    if _TOOL_NAME_RE.match(name):
        return name
    return _INVALID_CHARS.sub("_", name)[:55] + "_" + _digest(name, 8)


_SHORT_ID_RE = re.compile(r"^[a-zA-Z0-9]+$")


def upstream_tool_id(tool_id: str, max_len: int | None) -> str:
    """Deterministic, so the same id maps the same way in tool_calls and in tool_call_id.
    Short limits (Mistral templates: exactly 9 alphanumerics) get exactly that many characters."""
    if max_len is None:
        return tool_id
    if max_len <= 16:
        ok = len(tool_id) == max_len and _SHORT_ID_RE.match(tool_id)
        return tool_id if ok else _digest(tool_id, max_len)
    if len(tool_id) <= max_len:
        return tool_id
    return "call_" + _digest(tool_id, max_len - 5)


def client_tool_id(upstream_id: Any, seen: set[str]) -> str:
    """A tool_use id matching Anthropic's pattern, unique within the response."""
    tid = upstream_id if isinstance(upstream_id, str) else ""
    if tid and not _TOOL_ID_RE.match(tid):
        tid = _INVALID_CHARS.sub("_", tid)
    if not tid or tid in seen:
        tid = ids.tool_use_id()
    seen.add(tid)
    return tid


# --- tool arguments ----------------------------------------------------------------------------


MAX_REPAIR_CHARS = 65536


def parse_tool_arguments(raw: str) -> dict[str, Any] | None:
    """Arguments string → input object; repaired when malformed; None when beyond repair."""
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if len(raw) > MAX_REPAIR_CHARS:
            return None  # repair cost grows faster than the input (400 KB took ~6 s)
        from json_repair import repair_json  # lazy: only weak models need it

        try:
            value = repair_json(raw, return_objects=True)
        except Exception:  # json_repair raises assorted errors on hopeless input
            return None
        log.info("repaired malformed tool arguments (%d chars)", len(raw))
    return value if isinstance(value, dict) else None


# --- reasoning → thinking ----------------------------------------------------------------------

# Signatures the gateway mints carry the upstream's reasoning state so it can be restored on the next
# turn. The prefix marks them as ours: they are never sent to a Claude target, which would reject them.
ENVELOPE_PREFIX = "agw1."
CLAUDE_FORMAT = "anthropic-claude-v1"


def envelope(payload: dict[str, Any]) -> str:
    return ENVELOPE_PREFIX + base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def open_envelope(signature: str) -> dict[str, Any] | None:
    if not signature.startswith(ENVELOPE_PREFIX):
        return None
    data = signature[len(ENVELOPE_PREFIX):]
    try:
        value = orjson.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def hidden_thinking(signature: str, text: str) -> str:
    """The signature a Claude thinking block goes back with when its text is omitted: Claude's
    signature and the text, restored unchanged by the replay (messages._Reasoning)."""
    return envelope({"s": signature, "x": text})


def detail_text(detail: dict[str, Any]) -> str:
    kind = detail.get("type")
    if kind == "reasoning.text":
        return detail.get("text") or ""
    if kind == "reasoning.summary":
        return detail.get("summary") or ""
    return ""


def is_claude_detail(detail: dict[str, Any]) -> bool:
    return detail.get("format") == CLAUDE_FORMAT


def merge_details(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Streamed reasoning_details fragments → whole entries, as the non-streamed answer has them:
    consecutive fragments of one (type, index) are joined; the first non-empty signature is kept."""
    merged: list[dict[str, Any]] = []
    for d in details:
        last = merged[-1] if merged else None
        if last is not None and last.get("type") == d.get("type") and last.get("index") == d.get("index"):
            for field in ("text", "summary", "data"):
                if isinstance(d.get(field), str):
                    last[field] = (last.get(field) or "") + d[field]
            for key, value in d.items():
                if key not in ("text", "summary", "data") and value is not None and not last.get(key):
                    last[key] = value
        else:
            merged.append(dict(d))
    return merged


def thinking_blocks(
    details: list[dict[str, Any]] | None, reasoning: str | None, omit_text: bool = False
) -> list[dict[str, Any]]:
    """Complete reasoning of a non-streamed answer → thinking / redacted_thinking blocks (signed
    Claude blocks without their text when ``omit_text``)."""
    blocks: list[dict[str, Any]] = []
    if details:
        claude: dict[Any, dict[str, Any]] = {}
        other: list[dict[str, Any]] = []
        for d in details:
            if not isinstance(d, dict):
                continue
            if not is_claude_detail(d):
                other.append(d)
            elif d.get("type") == "reasoning.encrypted":
                blocks.append({"type": "redacted_thinking", "data": d.get("data") or ""})
            elif d.get("type") == "reasoning.text":
                block = claude.get(d.get("index"))
                if block is None:
                    block = claude[d.get("index")] = {"type": "thinking", "thinking": "", "signature": ""}
                    blocks.append(block)
                block["thinking"] += d.get("text") or ""
                if d.get("signature") and not block["signature"]:
                    block["signature"] = d["signature"]
        for block in blocks:
            if block["type"] == "thinking" and not block["signature"]:
                block["signature"] = envelope({"t": "text"})
            elif block["type"] == "thinking" and omit_text:
                block["signature"] = hidden_thinking(block["signature"], block["thinking"])
                block["thinking"] = ""
        if other:
            other = merge_details(other)
            text = "".join(detail_text(d) for d in other)
            blocks.append({"type": "thinking", "thinking": text, "signature": envelope({"d": other})})
        return blocks
    if reasoning:
        return [{"type": "thinking", "thinking": reasoning, "signature": envelope({"t": "text"})}]
    return []
