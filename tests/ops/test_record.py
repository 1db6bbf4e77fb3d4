"""The per-request record and the recorder that hands it to the sinks."""

from __future__ import annotations

import logging

import pytest

from anthropic_gateway.ops.record import FunctionSink, Recorder, RequestRecord


def test_every_sink_gets_the_record_once_even_when_one_fails(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def broken(rec: RequestRecord) -> None:
        raise ValueError("sink bug")

    recorder = Recorder([FunctionSink(broken), FunctionSink(lambda r: seen.append(r.request_id))])
    rec = RequestRecord("req_1", "POST", "/v1/messages")
    with caplog.at_level(logging.ERROR):
        recorder.emit(rec)
    assert seen == ["req_1"]
    assert rec.finished is not None
    assert "sink FunctionSink failed (request req_1)" in caplog.text


def test_durations_and_usage() -> None:
    rec = RequestRecord("req_2", "POST", "/v1/messages", started=100.0)
    rec.first_token_at, rec.finished, rec.upstream_seconds = 100.25, 101.0, 0.75
    rec.set_usage({"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 1})
    assert (rec.duration, rec.ttft, rec.overhead) == (1.0, 0.25, 0.25)
    assert (rec.input_tokens, rec.output_tokens, rec.cache_read_tokens, rec.cache_write_tokens) == (7, 3, 2, 1)
    rec.upstream_seconds = 2.0
    assert rec.overhead == 0.0  # never negative
