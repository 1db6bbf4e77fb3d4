"""Running one batch request: validate its params, answer it through the service, classify the end.

Nothing here speaks HTTP: the request goes to ``MessagesService.answer`` (routing, the configured
retries and fallbacks), and its :class:`RequestRecord` (route ``batch``) goes to the recorder, so each
attempt reaches the access log, the metrics and the ledger like any other request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from anthropic_gateway import ids
from anthropic_gateway.auth import Client
from anthropic_gateway.batches.objects import errored_result, succeeded_result
from anthropic_gateway.errors import (
    APIError,
    GatewayError,
    InvalidRequestError,
    OverloadedError,
    RateLimitError,
)
from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.schemas import MessagesRequest, decode_messages_request
from anthropic_gateway.service import Completed

if TYPE_CHECKING:
    from anthropic_gateway.http.gateway import Gateway

log = logging.getLogger(__name__)

BACKED_OFF = (RateLimitError, OverloadedError)  # waited out and retried by the engine, within a bound


@dataclass(slots=True)
class Work:
    batch_id: str
    idx: int
    custom_id: str
    params: bytes
    owner: str


@dataclass(slots=True)
class Outcome:
    state: str  # succeeded, errored (canceled / expired are set by the engine)
    result: bytes


class RateLimited(Exception):
    def __init__(self, err: GatewayError) -> None:
        super().__init__(err.message)
        self.err = err

    @property
    def retry_after(self) -> float | None:
        value = self.err.headers.get("retry-after")
        try:
            return max(float(value), 0.0) if value is not None else None
        except ValueError:
            return None


def new_record(work: Work) -> RequestRecord:
    rec = RequestRecord(ids.request_id(), "POST", "batch")
    rec.route = "batch"
    rec.key_label = work.owner
    rec.extras["batch_id"] = work.batch_id
    rec.extras["custom_id"] = work.custom_id
    return rec


def validate(work: Work) -> MessagesRequest:
    """The item's params, checked by the decoder the Messages route uses."""
    req = decode_messages_request(work.params)
    if req.stream:
        raise InvalidRequestError("stream: batch requests cannot be streamed; remove stream or set it to false")
    return req


def invalid(gw: Gateway, work: Work, err: GatewayError) -> Outcome:
    rec = new_record(work)
    rec.set_error(err.http_status, err.error_type, err.message)
    gw.recorder.emit(rec)
    return Outcome("errored", errored_result(err, rec.request_id))


async def attempt(gw: Gateway, work: Work, req: MessagesRequest, *, last: bool) -> Outcome:
    """One try. A rate limit (429/529) raises RateLimited unless this is the ``last`` try."""
    rec = new_record(work)
    try:
        answer = await gw.service.answer(req, client=Client(trusted=True, label=work.owner), record=rec,
                                         stream=False, size=len(work.params))  # fmt: skip
        assert isinstance(answer, Completed)
    except BACKED_OFF as err:
        _failed(gw, rec, err)
        if not last:
            raise RateLimited(err) from None
        return Outcome("errored", errored_result(err, rec.request_id))
    except GatewayError as err:
        _failed(gw, rec, err)
        return Outcome("errored", errored_result(err, rec.request_id))
    except Exception:
        log.exception("batch %s request %s failed (request %s)", work.batch_id, work.custom_id, rec.request_id)
        internal = APIError(f"Internal gateway error (request {rec.request_id})")
        _failed(gw, rec, internal)
        return Outcome("errored", errored_result(internal, rec.request_id))
    rec.status = 200
    gw.recorder.emit(rec)
    return Outcome("succeeded", succeeded_result(answer.message))


def _failed(gw: Gateway, rec: RequestRecord, err: GatewayError) -> None:
    err.message = gw.redact(err.message)
    rec.set_error(err.http_status, err.error_type, err.message)
    gw.recorder.emit(rec)
