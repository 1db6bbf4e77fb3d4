"""The creation body: ``{"requests": [{"custom_id", "params"}, ...]}``, checked as Anthropic checks it.

Only the envelope is validated here (a 400 naming the field); each item's ``params`` stay raw JSON
bytes, sliced from the body without being parsed, and are validated later by the worker that runs
them (a bad item becomes an ``errored`` result, as Anthropic does it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from anthropic_gateway.errors import InvalidRequestError, shown
from anthropic_gateway.schemas import validation_message

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    requests: list[msgspec.Raw]


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    custom_id: str
    params: msgspec.Raw


_envelope = msgspec.json.Decoder(_Envelope)
_item = msgspec.json.Decoder(_Item)


@dataclass(slots=True)
class Item:
    idx: int
    custom_id: str
    params: bytes


class Envelope:
    """The validated envelope; ``items()`` yields each request's raw params once."""

    def __init__(self, raw: list[msgspec.Raw]) -> None:
        self._raw = raw
        self.count = len(raw)

    def items(self) -> Iterator[Item]:
        for i, raw in enumerate(self._raw):
            item = _item.decode(raw)  # already checked by parse_envelope
            yield Item(i, item.custom_id, bytes(item.params))
            self._raw[i] = msgspec.Raw(b"")  # let the slice go as soon as it is stored


def parse_envelope(body: bytes, max_requests: int) -> Envelope:
    try:
        env = _envelope.decode(body)
    except msgspec.ValidationError as err:
        raise InvalidRequestError(validation_message(err)) from None
    except msgspec.DecodeError as err:
        raise InvalidRequestError(f"Request body is not valid JSON: {err}") from None
    except RecursionError:
        raise InvalidRequestError("Request body is nested too deeply") from None
    n = len(env.requests)
    if n == 0:
        raise InvalidRequestError("requests: List should have at least 1 item after validation, not 0")
    if n > max_requests:
        raise InvalidRequestError(f"requests: a batch holds at most {max_requests} requests; got {n}")
    seen: set[str] = set()
    for i, raw in enumerate(env.requests):
        item = _check_item(i, raw)
        if item.custom_id in seen:
            raise InvalidRequestError(f"requests.{i}.custom_id: '{item.custom_id}' is used by an earlier "
                                      "request; custom_id must be unique within the batch")  # fmt: skip
        seen.add(item.custom_id)
    return Envelope(env.requests)


def _check_item(i: int, raw: msgspec.Raw) -> _Item:
    try:
        item = _item.decode(raw)
    except msgspec.ValidationError as err:
        message = validation_message(err)
        field, sep, _ = message.partition(": ")
        named = bool(sep) and " " not in field
        raise InvalidRequestError(f"requests.{i}.{message}" if named else f"requests.{i}: {message}") from None
    except RecursionError:
        raise InvalidRequestError(f"requests.{i}: nested too deeply") from None
    if not CUSTOM_ID.match(item.custom_id):
        raise InvalidRequestError(f"requests.{i}.custom_id: '{shown(item.custom_id, 80)}' does not match "
                                  "^[a-zA-Z0-9_-]{1,64}$ (1 to 64 letters, digits, '_' or '-')")  # fmt: skip
    if bytes(memoryview(item.params)[:1]) != b"{":
        raise InvalidRequestError(f"requests.{i}.params: Input should be an object")
    return item
