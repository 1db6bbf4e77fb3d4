"""The `thread` request field (beta `message-threads-2026-08-12`) and its rejections, as the SDKs read them.

    {"type": "create"}                                  hold this conversation under the response's id
    {"type": "continue", "previous_message_id": "..."}  only the new turn's messages are sent

Pure: parsing, the rejections, and the two conversions between a request and the stored state.
The rejections are the ones the SDKs' thread code (anthropic/lib/threads/_thread_state.py) recovers
from by sending the full history itself: `thread_not_found` (404) and `thread_already_continued` /
`thread_continue_in_flight` (400) make it replay the conversation under a new thread;
`thread_unsupported_request` (400) makes a tool runner go on without a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from anthropic_gateway.errors import GatewayError, InvalidRequestError, NotFoundError, shown
from anthropic_gateway.schemas import CountTokensRequest, Message, TextBlock, Tool

# Fields a `continue` takes from the thread (the SDK leaves them out; Anthropic refuses them there).
CREATE_ONLY_FIELDS = ("system", "tools")


@dataclass(frozen=True, slots=True)
class ThreadField:
    kind: Literal["create", "continue"]
    previous_message_id: str | None = None


def parse_thread(raw: Any) -> ThreadField | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequestError("thread: Input should be an object")
    kind = raw.get("type")
    if kind == "create":
        extra = sorted(set(raw) - {"type"})
        if extra:
            raise InvalidRequestError(f"thread.{shown(extra[0], 60)}: Extra inputs are not permitted")
        return ThreadField("create")
    if kind == "continue":
        previous = raw.get("previous_message_id")
        if not isinstance(previous, str) or not previous:
            raise InvalidRequestError("thread.previous_message_id: Field required (the id of a previous response)")
        extra = sorted(set(raw) - {"type", "previous_message_id"})
        if extra:
            raise InvalidRequestError(f"thread.{shown(extra[0], 60)}: Extra inputs are not permitted")
        return ThreadField("continue", previous)
    raise InvalidRequestError("thread.type: Input should be 'create' or 'continue'")


# --- the rejections ------------------------------------------------------------------------------


def _coded(err: GatewayError, code: str) -> GatewayError:
    err.details = {"error_code": code}
    return err


class ThreadUnsupported(InvalidRequestError):
    def __init__(self, message: str, unsupported: list[str] | None = None) -> None:
        super().__init__(message)
        details: dict[str, object] = {"error_code": "thread_unsupported_request"}
        if unsupported is not None:
            details["unsupported"] = unsupported
        self.details = details


def not_found(previous: str) -> GatewayError:
    return _coded(NotFoundError(
        f"thread.previous_message_id: no usable thread state was found for '{shown(previous, 80)}'; replay the "
        'full conversation with thread: {"type": "create"} to start a new thread'
    ), "thread_not_found")


def already_continued(previous: str) -> GatewayError:
    return _coded(InvalidRequestError(
        f"thread.previous_message_id: the response '{shown(previous, 80)}' has already been continued, and each "
        "response can be continued only once; continue from the thread's most recent response id"
    ), "thread_already_continued")


def in_flight(previous: str) -> GatewayError:
    return _coded(InvalidRequestError(
        f"thread.previous_message_id: another request is still continuing from '{shown(previous, 80)}'; wait for "
        'it and continue from its response id, or replay the full conversation with thread: {"type": "create"}'
    ), "thread_continue_in_flight")


def threads_off() -> ThreadUnsupported:
    return ThreadUnsupported(
        "thread: this gateway does not hold conversation state (threads are off or its store is unavailable); "
        "send the full conversation without `thread`"
    )


def check_continue_fields(req: CountTokensRequest) -> None:
    given = [f for f in CREATE_ONLY_FIELDS if getattr(req, f) is not None]
    if given:
        raise ThreadUnsupported(
            f"{given[0]}: a thread continue takes {' and '.join(CREATE_ONLY_FIELDS)} from the thread it continues; "
            "leave them out, or send the full conversation without `thread`",
            given,
        )


# --- stored state --------------------------------------------------------------------------------


class State(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a thread holds at one position: the create-only fields and the whole conversation."""

    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    messages: list[Message]


_decode_state = msgspec.json.Decoder(State).decode
_encode = msgspec.json.Encoder().encode
_decode_message = msgspec.json.Decoder(Message).decode


def continued(req: Any, stored: bytes) -> Any:
    """The full request a `continue` stands for: the thread's create-only fields and history, then the
    turn's own messages and every other field as the turn sent them."""
    state = _decode_state(stored)
    return msgspec.structs.replace(req, system=state.system, tools=state.tools,
                                   messages=[*state.messages, *req.messages])  # fmt: skip


def state_after(req: Any, answer: dict[str, Any]) -> bytes:
    """The thread at the answer's id: the full request's history (without the cache_control marks each
    turn set for itself, as the SDK drops them when it replays), then the answer as an assistant turn."""
    reply = _decode_message(_encode({"role": "assistant", "content": answer.get("content") or []}))
    messages = [_uncached(m) for m in (*req.messages, reply)]
    return _encode(State(system=req.system, tools=req.tools, messages=messages))


def _uncached(msg: Message) -> Message:
    if isinstance(msg.content, str):
        return msg
    blocks = [msgspec.structs.replace(b, cache_control=None) if getattr(b, "cache_control", None) is not None else b
              for b in msg.content]  # fmt: skip
    return msgspec.structs.replace(msg, content=blocks)
