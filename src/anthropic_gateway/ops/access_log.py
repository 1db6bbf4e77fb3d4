"""The access log: one line per request on stdout, JSON (default) or a readable console line.

Field names follow the OpenTelemetry GenAI semantic conventions where one exists
(``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, …); the rest are the gateway's own. The
line's level says how it went: info, warning for a 4xx (an upstream 4xx carries the upstream's
message, already redacted), error for a 5xx. Bodies only with ``log_bodies``, base64 data cut and
secrets redacted.

The lines bypass the logging machinery once :func:`configure` has run (the server): a record,
handler, formatter and a flush per line cost more than building the line. Lines finished in the
same event-loop iteration are written to stdout together, one write and one flush, straight after
that iteration (``call_soon``): a burst of answers costs one system call, and no line waits longer
than the loop takes to come round.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.upstream_errors import redact

access = logging.getLogger("anthropic_gateway.access")

_BASE64 = re.compile(rb'"data"\s*:\s*"[A-Za-z0-9+/=]{64,}"')
_CUT_BASE64 = b'"data":"[base64 cut]"'


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text
_MILLIS = tuple(f".{n:03d}Z" for n in range(1000))  # a timestamp's end, without a format per line


def _timestamp(t: float) -> str:
    """ISO 8601 UTC with milliseconds; the seconds part formatted once per second (gmtime and
    strftime were a tenth of a line's cost, and a busy gateway logs many lines per second), the
    milliseconds taken from a table (a format spec per line was another tenth)."""
    global _second
    whole = int(t)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return _second[1] + _MILLIS[int((t - whole) * 1000)]  # t >= 0: t - int(t) is t % 1, exactly


def _ms(seconds: float) -> float:
    """Milliseconds to two decimals. ``round(x, 2)`` goes through a decimal string (dtoa) each time,
    a tenth of a line's cost for four figures; this is the same double for anything but exact ties."""
    return int(seconds * 100_000.0 + 0.5) / 100


def fields_of(rec: RequestRecord) -> dict[str, Any]:
    end = rec.finished  # set by the Recorder: rec.duration without its property call
    duration = (end if end is not None else time.perf_counter()) - rec.started
    if rec.model is None:
        f: dict[str, Any] = {
            "time": _timestamp(rec.started_at),
            "request_id": rec.request_id,
            "http.request.method": rec.method,
            "url.path": rec.path,
            "http.response.status_code": rec.status,
            "duration_ms": _ms(duration),
        }
        if rec.key_label is not None:
            f["key_label"] = rec.key_label
    else:
        # One dict display for the usual line (a Messages request): built in one step, where a
        # store per field cost a third of the line; _ms written out (a call per figure was a tenth).
        upstream = rec.upstream_seconds
        overhead = duration - upstream
        stop = rec.stop_reason
        f = {
            "time": _timestamp(rec.started_at),
            "request_id": rec.request_id,
            "http.request.method": rec.method,
            "url.path": rec.path,
            "http.response.status_code": rec.status,
            "duration_ms": int(duration * 100_000.0 + 0.5) / 100,
            "key_label": rec.key_label,
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": rec.model,
            "gen_ai.response.model": rec.response_model or rec.upstream_model,
            "gen_ai.provider.name": rec.backend,
            "gateway.upstream_model": rec.upstream_model,
            "gateway.alias": rec.alias,
            "gateway.stream": rec.stream,
            "gen_ai.usage.input_tokens": rec.input_tokens,
            "gen_ai.usage.output_tokens": rec.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": rec.cache_read_tokens,
            "gen_ai.usage.cache_creation.input_tokens": rec.cache_write_tokens,
            "gen_ai.response.finish_reasons": [stop],
            "upstream_ms": int(upstream * 100_000.0 + 0.5) / 100,
            "overhead_ms": int(overhead * 100_000.0 + 0.5) / 100 if overhead > 0 else 0.0,
        }
        if rec.key_label is None:
            del f["key_label"]
        if stop is None:
            del f["gen_ai.response.finish_reasons"]
        if rec.first_token_at is not None:
            f["ttft_ms"] = _ms(rec.first_token_at - rec.started)
        if rec.cost_usd is not None:
            f["cost_usd"] = round(rec.cost_usd, 8)
        if rec.retries:
            f["retries"] = rec.retries
        if rec.fallbacks:
            f["fallbacks"] = rec.fallbacks
        if rec.upstream_status is not None:
            f["upstream_status"] = rec.upstream_status
    if rec.error_type is not None:
        f["error.type"] = rec.error_type
        f["error.message"] = rec.error_message
    if rec.client_disconnected:
        f["client_disconnected"] = True
    if rec.cache is not None:
        f["cache"] = rec.cache
    return f


def _console(f: dict[str, Any]) -> str:
    parts = [f["time"], f["request_id"], f["http.request.method"], f["url.path"], str(f["http.response.status_code"]),
             f"{f['duration_ms']}ms"]  # fmt: skip
    if "gen_ai.request.model" in f:
        parts.append(f"{f['gen_ai.request.model']}→{f.get('gateway.upstream_model')}")
        parts.append(f"in={f['gen_ai.usage.input_tokens']} out={f['gen_ai.usage.output_tokens']}")
        if f.get("cost_usd") is not None:
            parts.append(f"${f['cost_usd']}")
    if "error.type" in f:
        parts.append(f"{f['error.type']}: {f['error.message']}")
    if f.get("client_disconnected"):
        parts.append("client-disconnected")
    return " ".join(parts)


class AccessLog:
    """The sink writing the access log. ``redact`` removes every secret the gateway knows of."""

    def __init__(self, fmt: str, *, bodies: bool, redact: Callable[[str], str]) -> None:
        self.fmt = fmt
        self.bodies = bodies
        self.redact = redact

    def record(self, rec: RequestRecord) -> None:
        writer = _writer
        if writer is None:  # not configured (tests, the CLI): through logging, at the line's level
            level = logging.ERROR if rec.status >= 500 else logging.WARNING if rec.status >= 400 else logging.INFO
            if not access.isEnabledFor(level):
                return
        f = fields_of(rec)
        if self.bodies:
            for name in ("request_body", "response_body"):
                if name in rec.extras:
                    f[name] = self._body(rec.extras[name])
        line = orjson.dumps(f).decode() if self.fmt == "json" else _console(f)
        line = self.redact(line)
        if rec.secret and rec.secret in line:
            line = redact(line, rec.secret)
        if writer is not None:  # configured and on: every level is written
            writer.write(line)
        else:
            access.log(level, "%s", line)

    def _body(self, value: Any) -> str:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        return _BASE64.sub(_CUT_BASE64, raw).decode("utf-8", "replace")


class LineWriter:
    """Lines to a stream, batched per event-loop iteration (one write and flush each), or written at
    once where no loop runs (start-up, shutdown, threads)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pending: list[str] = []

    def write(self, line: str) -> None:
        self.pending.append(line)
        if len(self.pending) > 1:
            return  # a flush is already scheduled
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:
            self.flush()

    def flush(self) -> None:
        lines, self.pending = self.pending, []
        if lines:
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # stdout closed or gone: the log is best effort, the request is not
                pass


_writer: LineWriter | None = None


def configure(enabled: bool) -> None:
    """Access lines go to stdout as they are (the line is the message), whatever log_level says
    about the other logs (on stderr); ``access_log = false`` turns them off."""
    global _writer
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.handlers[:] = [handler]
    access.propagate = False
    access.setLevel(logging.INFO if enabled else logging.CRITICAL + 1)
    _writer = LineWriter(sys.stdout) if enabled else None


def flush() -> None:
    """Write out the lines still waiting (shutdown)."""
    if _writer is not None:
        _writer.flush()
