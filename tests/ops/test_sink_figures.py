"""Each sink's figures from one record, exact: the access log's milliseconds, the ledger row's
latency and time to first token, the metrics' histograms and labels. The sinks read the record's
end (set by the Recorder) directly, and the clock for a record not finished yet, as
``RequestRecord.duration`` does."""

from __future__ import annotations

import pytest

from anthropic_gateway.ops import access_log, ledger, metrics
from anthropic_gateway.ops.access_log import _ms, fields_of
from anthropic_gateway.ops.ledger import row_of
from anthropic_gateway.ops.metrics import LATENCY_BUCKETS, OVERHEAD_BUCKETS, Metrics
from anthropic_gateway.ops.record import Recorder, RequestRecord


def messages_record(*, finished: float | None = 100.01234, first_token: float | None = None) -> RequestRecord:
    rec = RequestRecord("req_1", "POST", "/v1/messages", started=100.0, started_at=1_700_000_000.25)
    rec.route, rec.model, rec.alias, rec.backend, rec.upstream_model = (
        "/v1/messages", "claude-sonnet-4-5", "fast", "default", "openai/gpt-4o")  # fmt: skip
    rec.status, rec.upstream_seconds, rec.input_tokens, rec.output_tokens = 200, 0.004, 12, 10
    rec.stop_reason, rec.finished, rec.first_token_at = "end_turn", finished, first_token
    return rec


def test_the_access_lines_milliseconds_are_the_records_figures_rounded_to_two_decimals() -> None:
    f = fields_of(messages_record())
    assert (f["duration_ms"], f["upstream_ms"], f["overhead_ms"]) == (12.34, 4.0, 8.34)
    assert (f["duration_ms"], f["upstream_ms"], f["overhead_ms"]) == (_ms(0.01234), _ms(0.004), _ms(0.01234 - 0.004))
    assert "ttft_ms" not in f
    assert fields_of(messages_record(finished=100.003))["overhead_ms"] == 0.0  # upstream longer than the whole


def test_a_record_not_yet_finished_is_timed_by_the_clock_in_every_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (access_log, ledger, metrics):
        monkeypatch.setattr(module.time, "perf_counter", lambda: 100.5)
    rec = messages_record(finished=None)
    assert rec.duration == pytest.approx(0.5)
    assert fields_of(rec)["duration_ms"] == 500.0
    assert row_of(rec)[15] == 500.0
    m = Metrics(["fast"], ["default"], lambda: (0, 0))
    m.record(rec)
    series = m.duration.series[("/v1/messages", "fast")]
    assert series[-1] == 0.5 and series[LATENCY_BUCKETS.index(0.5)] == 1


def test_the_ledger_row_has_the_latency_and_time_to_first_token_in_milliseconds() -> None:
    row = row_of(messages_record(first_token=100.002))
    assert row[15] == (100.01234 - 100.0) * 1000 and row[16] == (100.002 - 100.0) * 1000
    assert row_of(messages_record())[16] is None


def test_the_metrics_histograms_and_the_model_label_of_one_record() -> None:
    m = Metrics(["fast"], ["default"], lambda: (0, 0))
    m.record(messages_record())
    duration = 100.01234 - 100.0
    expect = [0.0] * (len(LATENCY_BUCKETS) + 2)
    expect[2], expect[-1] = 1, duration  # 0.01 < 0.01234 <= 0.025
    assert m.duration.series == {("/v1/messages", "fast"): expect}
    upstream = [0.0] * (len(LATENCY_BUCKETS) + 2)
    upstream[0], upstream[-1] = 1, 0.004
    assert m.upstream.series == {("default",): upstream}
    overhead = [0.0] * (len(OVERHEAD_BUCKETS) + 2)
    overhead[4], overhead[-1] = 1, duration - 0.004  # 0.005 < 0.00834 <= 0.01
    assert m.overhead.series == {("/v1/messages",): overhead}
    assert m.requests == {("/v1/messages", "fast", "200"): 1}
    # An alias the configuration does not name: the model's tier; a client's model: its tier too.
    other = Metrics(["slow"], ["default"], lambda: (0, 0))
    other.record(messages_record())
    assert other.requests == {("/v1/messages", "sonnet", "200"): 1}
    no_model = messages_record()
    no_model.model, no_model.route = None, "/v1/models"
    other.record(no_model)
    assert ("/v1/models", "", "200") in other.requests


def test_the_recorder_sets_the_end_every_sink_reads() -> None:
    rec = messages_record(finished=None)
    seen: list[float | None] = []
    Recorder([type("Sink", (), {"record": lambda self, r: seen.append(r.finished)})()]).emit(rec)
    assert seen == [rec.finished] and rec.finished is not None
