"""The Message Batches API's objects: ids, timestamps, the ``message_batch`` object, result lines."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from anthropic_gateway.errors import GatewayError, error_body

_TO_BASE62 = bytes.maketrans(b"-_", b"xz")
# The five final states of an item, and the one it has until then.
PENDING = "pending"
FINAL_STATES = ("succeeded", "errored", "canceled", "expired")


def new_batch_id() -> str:
    return "msgbatch_" + base64.urlsafe_b64encode(secrets.token_bytes(18)).translate(_TO_BASE62).decode()


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


BATCH_COLUMNS = ("id, owner, status, total, created_at, expires_at, ended_at, cancel_initiated_at, "
                 "succeeded, errored, canceled, expired")  # fmt: skip


@dataclass(slots=True)
class Batch:
    id: str
    owner: str
    status: str  # in_progress, canceling, ended
    total: int
    created_at: float
    expires_at: float
    ended_at: float | None
    cancel_initiated_at: float | None
    succeeded: int
    errored: int
    canceled: int
    expired: int

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Batch:
        return cls(*row)

    @property
    def results_url(self) -> str | None:
        # Relative to the gateway: both SDKs resolve it against their base URL (proxy-safe).
        return f"/v1/messages/batches/{self.id}/results" if self.status == "ended" else None

    def request_counts(self) -> dict[str, int]:
        """As Anthropic reports them: everything is processing until the whole batch has ended."""
        if self.status != "ended":
            return {"processing": self.total, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        return {"processing": 0, "succeeded": self.succeeded, "errored": self.errored,
                "canceled": self.canceled, "expired": self.expired}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.status,
            "request_counts": self.request_counts(),
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "ended_at": rfc3339(self.ended_at),
            "cancel_initiated_at": rfc3339(self.cancel_initiated_at),
            "archived_at": None,
            "results_url": self.results_url,
        }


def succeeded_result(message: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "succeeded", "message": message})


def errored_result(err: GatewayError, request_id: str | None) -> bytes:
    return orjson.dumps({"type": "errored", "error": error_body(err.error_type, err.message, request_id)})


_FIXED = {"canceled": b'{"type":"canceled"}', "expired": b'{"type":"expired"}'}


def result_line(custom_id: str, state: str, result: bytes | None) -> bytes:
    """One JSONL line. ``custom_id`` matches ^[a-zA-Z0-9_-]{1,64}$, so it needs no escaping."""
    body = result if result is not None else _FIXED.get(state, b'{"type":"expired"}')
    return b'{"custom_id":"' + custom_id.encode() + b'","result":' + body + b"}\n"
