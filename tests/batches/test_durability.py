"""kill -9 in the middle of a batch, then a restart on the same store: every request ends exactly once."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import httpx2

from batches import item, results, script, wait_ended
from conftest import GATEWAY_ENV, SpawnGateway
from engines import sqlite_only
from fake_upstream import FakeUpstream

N = 40


def _progress(url: str, batch_id: str) -> dict[str, int]:
    body = httpx2.get(f"{url}/v1/messages/batch/{batch_id}/status", timeout=10).json()
    progress: dict[str, int] = body["progress"]
    return progress


def test_kill_9_mid_batch_then_restart_ends_every_request_once(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, tmp_path: Path
) -> None:
    sqlite_only()  # on PostgreSQL: tests/scaleout/test_batches.py (another replica finishes the batch)
    script(upstream)
    store = tmp_path / "shared.db"
    env = {**GATEWAY_ENV, "ANTHROPIC_GATEWAY_DATABASE_URL": str(store), "ANTHROPIC_GATEWAY_BATCH_CONCURRENCY": "3"}
    first = spawn_gateway(env)
    with first.client() as client:
        batch = client.messages.batches.create(requests=[item(f"r{i}", "slow:0.15") for i in range(N)])  # type: ignore[list-item]
    deadline = time.monotonic() + 30
    while _progress(first.url, batch.id)["succeeded"] < 6:
        assert time.monotonic() < deadline, "no progress before the kill"
        time.sleep(0.05)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    with sqlite3.connect(store) as conn:
        done_at_kill = conn.execute("SELECT COUNT(*) FROM batch_items WHERE batch_id = ? AND state != 'pending'",
                                    (batch.id,)).fetchone()[0]  # fmt: skip
    assert 6 <= done_at_kill < N
    sent_before = len(upstream.requests)

    second = spawn_gateway(env)
    with second.client() as client:
        ended = wait_ended(client, batch.id, timeout=60)
        assert ended.request_counts.model_dump() == {"processing": 0, "succeeded": N, "errored": 0, "canceled": 0,
                                                     "expired": 0}  # fmt: skip
        got = results(client, batch.id)
        lines = list(client.messages.batches.results(batch.id))
    assert sorted(got) == sorted(f"r{i}" for i in range(N))
    assert len(lines) == N  # none reported twice
    assert all(r.type == "succeeded" for r in got.values())
    # Those written before the kill did not run again; those in flight (or not yet written) did.
    assert len(upstream.requests) == sent_before + (N - done_at_kill)
    assert sent_before - done_at_kill <= 3 + 3  # in flight at the kill: at most the workers (3) and their writes
    assert "resuming 1 unfinished batch" in second.log_text()
    batch_lines = [json.loads(x) for x in second.log_text().splitlines() if '"url.path":"batch"' in x]
    assert len(batch_lines) == N - done_at_kill  # each run's request record reached the access log
    assert {x["http.response.status_code"] for x in batch_lines} == {200}
