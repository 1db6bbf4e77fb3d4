"""Expiry and retention with short windows, and the rate-limit back-off."""

from __future__ import annotations

import sqlite3
import time

import anthropic
import pytest

import engines
from batches import item, results, script, wait_ended
from conftest import GATEWAY_ENV, SpawnGateway
from fake_upstream import FakeUpstream, RecordedRequest, Reply, error_body

from . import said


def test_unfinished_requests_expire(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    script(upstream)
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_BATCH_CONCURRENCY": "1",
                        "ANTHROPIC_GATEWAY_BATCH_EXPIRY_HOURS": str(1.0 / 3600),  # one second
                        "ANTHROPIC_GATEWAY_BATCH_CLEANUP_INTERVAL": "0.2"})  # fmt: skip
    with gw.client() as client:
        batch = client.messages.batches.create(
            requests=[item("slow", "slow:2"), item("a", "ok:a"), item("b", "ok:b")])  # type: ignore[list-item]
        assert (batch.expires_at - batch.created_at).total_seconds() == pytest.approx(1.0, abs=0.01)
        ended = wait_ended(client, batch.id)
        # The request running at expiry finishes; the two never started expire.
        assert ended.request_counts.model_dump() == {"processing": 0, "succeeded": 1, "errored": 0, "canceled": 0,
                                                     "expired": 2}  # fmt: skip
        got = results(client, batch.id)
    assert {k: v.type for k, v in got.items()} == {"slow": "succeeded", "a": "expired", "b": "expired"}
    assert len(upstream.requests) == 1
    assert "expired: its unfinished requests end as expired" in gw.log_text()


def test_ended_batches_are_deleted_after_the_retention(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    script(upstream)
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_BATCH_RETENTION_DAYS": str(3.0 / 86400),  # three seconds
                        "ANTHROPIC_GATEWAY_BATCH_CLEANUP_INTERVAL": "0.2"})  # fmt: skip
    with gw.client() as client:
        batch = client.messages.batches.create(requests=[item("a", "ok:a"), item("b", "ok:b")])  # type: ignore[list-item]
        wait_ended(client, batch.id)
        assert set(results(client, batch.id)) == {"a", "b"}  # still there within the retention
        deadline = time.monotonic() + 15
        while True:
            try:
                client.messages.batches.retrieve(batch.id)
            except anthropic.NotFoundError:
                break
            assert time.monotonic() < deadline, "the batch outlived its retention"
            time.sleep(0.2)
        assert client.messages.batches.list().data == []
    if engines.STORE == "sqlite":
        with sqlite3.connect(gw.log_path.with_suffix(".db")) as conn:
            assert conn.execute("SELECT COUNT(*) FROM batch_items").fetchone()[0] == 0
            assert conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 0
    assert "past the retention" in gw.log_text()


def test_a_rate_limited_request_waits_for_retry_after_and_runs_again(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    seen: list[float] = []

    def reply(req: RecordedRequest) -> object:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return Reply.json(error_body(429, "slow down"), status=429, headers={"Retry-After": "1"})
        return Reply.json(said("after the wait"))

    upstream.always(Reply.dynamic(reply))  # type: ignore[arg-type]
    # No routing retries: the batch engine's own back-off is what waits here.
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_RETRIES": "0"})
    with gw.client() as client:
        batch = client.messages.batches.create(requests=[item("a", "ok:x")])  # type: ignore[list-item]
        wait_ended(client, batch.id)
        got = results(client, batch.id)
    assert got["a"].type == "succeeded" and got["a"].message.content[0].text == "after the wait"
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.95
    assert "rate-limited; waiting 1.0 s" in gw.log_text()


def test_rate_limited_past_the_retries_is_an_errored_result(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    upstream.always(Reply.json(error_body(429, "slow down"), status=429, headers={"Retry-After": "0"}))
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_RETRIES": "0", "ANTHROPIC_GATEWAY_BATCH_RATE_LIMIT_RETRIES": "2"})
    with gw.client() as client:
        batch = client.messages.batches.create(requests=[item("a", "ok:x")])  # type: ignore[list-item]
        ended = wait_ended(client, batch.id)
        got = results(client, batch.id)
    assert ended.request_counts.errored == 1
    assert got["a"].error.error.type == "rate_limit_error"
    assert len(upstream.requests) == 3
