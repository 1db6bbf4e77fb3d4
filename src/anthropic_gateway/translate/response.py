"""OpenAI chat completion (non-streamed) → Anthropic Message (pure).

Shares its tables with the stream translator (translate/common.py) so both paths answer the same
request the same way: content ordered thinking → text → tool_use, the same stop reasons, the same
usage, the same tool-argument validation and repair.
"""

from __future__ import annotations

from typing import Any

import orjson

from anthropic_gateway.errors import APIError, GatewayError
from anthropic_gateway.translate.common import (
    anthropic_usage,
    client_tool_id,
    parse_tool_arguments,
    reported_stop,
    stop_reason_for,
    thinking_blocks,
)
from anthropic_gateway.translate.context import RequestContext
from anthropic_gateway.translate.stops import apply_stop_sequences
from anthropic_gateway.upstream_errors import CallInfo, from_error, from_stream_error
from anthropic_gateway.websearch.blocks import results_from_annotations, with_search


def to_anthropic_message(
    completion: Any, ctx: RequestContext, message_id: str, info: CallInfo | None = None
) -> dict[str, Any]:
    """Raises GatewayError when the 200 body carries an error instead of an answer."""
    info = info or CallInfo()
    fast = _plain(completion, ctx)
    if fast is not None:
        choice, text = fast
        return {
            "id": message_id, "type": "message", "role": "assistant", "model": ctx.client_model,
            "content": [{"type": "text", "text": text}] if text else [],
            "stop_reason": stop_reason_for(choice.get("finish_reason"), choice.get("native_finish_reason"), False),
            "stop_sequence": None, "usage": anthropic_usage(completion.get("usage"), info.input_estimate),
        }  # fmt: skip
    if not isinstance(completion, dict):
        raise APIError("The upstream returned a response that is not a JSON object", status=502)
    if completion.get("error") is not None:
        raise _embedded_error(completion["error"], info)
    choices = completion.get("choices")
    if not choices or not isinstance(choices[0], dict):
        raise APIError("The upstream returned no choices", status=502)
    choice = choices[0]
    if choice.get("finish_reason") == "error" or choice.get("error") is not None:
        raise _embedded_error(choice.get("error") or "the upstream reported finish_reason 'error'", info)
    msg = choice.get("message") or {}

    content: list[dict[str, Any]] = thinking_blocks(
        msg.get("reasoning_details"), msg.get("reasoning") or msg.get("reasoning_content"), ctx.omit_thinking
    )
    matched: str | None = None
    text = "".join(t for t in (msg.get("content"), msg.get("refusal")) if isinstance(t, str))
    if ctx.local_stops and text:
        text, matched = apply_stop_sequences(text, ctx.local_stops)
    if text:
        content.append({"type": "text", "text": text})
    seen: set[str] = set()
    # Text stopped at a stop sequence: generation ended there, so later tool calls never happened.
    calls = (msg.get("tool_calls") or []) if matched is None else []
    for call in calls:
        fn = call.get("function") or {}
        name = fn.get("name")
        if not name:
            raise APIError("The upstream sent a tool call without a function name", status=502)
        args = fn.get("arguments")
        parsed = parse_tool_arguments(args if isinstance(args, str) else "" if args is None else _dump(args))
        if parsed is None:
            raise APIError(
                f"The model produced arguments for tool '{name}' that are not valid JSON and could not be repaired",
                status=502,
            )
        content.append({
            "type": "tool_use", "id": client_tool_id(call.get("id"), seen),
            "name": ctx.tool_names.get(name, name), "input": parsed,
        })  # fmt: skip

    stop_reason: str
    stop_sequence: str | None
    if matched is not None:
        stop_reason, stop_sequence = "stop_sequence", matched
    else:
        refused = isinstance(msg.get("refusal"), str) and bool(msg["refusal"])
        stop_reason = stop_reason_for(choice.get("finish_reason"), choice.get("native_finish_reason"), bool(seen), refused)
        stop_sequence = _upstream_matched(choice, ctx.stop_sequences) if stop_reason == "end_turn" else None
        if stop_sequence is not None:
            stop_reason = "stop_sequence"
    message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": ctx.client_model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": anthropic_usage(completion.get("usage"), info.input_estimate),
    }
    if ctx.web_search_query is not None:  # OpenRouter's web plugin ran: its citations are the results
        annotations = msg.get("annotations")
        with_search(message, ctx.web_search_query, results_from_annotations(annotations), annotations)
    if ctx.context_management is not None:
        message["context_management"] = ctx.context_management
    elif isinstance(completion.get("context_management"), dict):  # an upstream that applied it natively
        message["context_management"] = completion["context_management"]
    return message


def _plain(completion: Any, ctx: RequestContext) -> tuple[dict[str, Any], str] | None:
    """(the choice, its text) for the usual answer - one choice whose message has a text (or none) and
    no refusal, reasoning or tool call, no error, to a request without stop sequences, web search or
    context management - which the general path below turns into the same message; None otherwise."""
    if type(completion) is not dict or ctx.stop_sequences or ctx.web_search_query is not None:
        return None
    if ctx.context_management is not None or "error" in completion or "context_management" in completion:
        return None
    choices = completion.get("choices")
    if type(choices) is not list or not choices:
        return None
    choice = choices[0]
    if type(choice) is not dict or "error" in choice or choice.get("finish_reason") == "error":
        return None
    msg = choice.get("message")
    if type(msg) is not dict or msg.get("tool_calls") or msg.get("refusal") or msg.get("reasoning") or msg.get(
        "reasoning_content") or msg.get("reasoning_details"):  # fmt: skip
        return None
    text = msg.get("content")
    if text is None:
        return choice, ""
    return (choice, text) if type(text) is str else None


def _upstream_matched(choice: dict[str, Any], sequences: list[str]) -> str | None:
    """Which stop sequence ended the text when the upstream (not our scan) stopped on it."""
    if not sequences:
        return None
    reported = reported_stop(choice)
    if reported is not None and reported in sequences:
        return reported
    if choice.get("native_finish_reason") == "stop_sequence" and len(sequences) == 1:
        return sequences[0]
    return None


def _embedded_error(err: Any, info: CallInfo) -> GatewayError:
    if isinstance(err, dict) and isinstance(err.get("code"), int) and err["code"] >= 400:
        message = err["message"] if isinstance(err.get("message"), str) else str(err)
        return from_error(err["code"], message, err, None, info)
    return from_stream_error(err)


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()
