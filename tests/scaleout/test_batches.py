"""A batch on two replicas sharing PostgreSQL: both work on it; one is killed with kill -9 mid-batch
and the other finishes it, every request with exactly one result, none run by two replicas at once."""

from __future__ import annotations

import signal
from collections import defaultdict

import httpx2

from batches import item, results, script, wait_ended
from conftest import SpawnGateway
from fake_upstream import FakeUpstream
from scaleout import caller, start_replicas, until

N = 60
LEASE = "2"  # seconds: the dead replica's requests are taken over this long after the kill


def _succeeded(url: str, batch_id: str) -> int:
    body = httpx2.get(f"{url}/v1/messages/batch/{batch_id}/status", timeout=10).json()
    done: int = body["progress"]["succeeded"]
    return done


def test_a_replica_killed_mid_batch_leaves_the_rest_to_the_other(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, postgres_url: str
) -> None:
    script(upstream)
    a, b = start_replicas(spawn_gateway, postgres_url, "ab", ANTHROPIC_GATEWAY_BATCH_CONCURRENCY="3",
                          ANTHROPIC_GATEWAY_BATCH_LEASE_SECONDS=LEASE)  # fmt: skip
    with a.client() as client:  # the text names the request, so each upstream call says whose it is
        batch = client.messages.batches.create(requests=[item(f"r{i}", f"slow:0.15:r{i}") for i in range(N)])  # type: ignore[list-item]
    # Both replicas take requests (B finds the batch A created within a second), then A dies.
    until(lambda: {caller(r.headers) for r in list(upstream.requests)} == {"a", "b"}
          and _succeeded(b.url, batch.id) >= 12, what="both replicas at work")  # fmt: skip
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    killed_at = len(upstream.requests)

    with b.client() as client:
        ended = wait_ended(client, batch.id, timeout=60)
        assert ended.request_counts.model_dump() == {"processing": 0, "succeeded": N, "errored": 0, "canceled": 0,
                                                     "expired": 0}  # fmt: skip
        got = results(client, batch.id)
        lines = list(client.messages.batches.results(batch.id))
    assert sorted(got) == sorted(f"r{i}" for i in range(N)) and len(lines) == N  # one result each
    assert all(r.type == "succeeded" for r in got.values())

    calls: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for n, req in enumerate(upstream.requests):
        calls[req.body["messages"][-1]["content"].split(":")[2]].append((n, caller(req.headers)))
    assert sorted(calls) == sorted(got)
    assert all(who == "b" for c in calls.values() for n, who in c if n >= killed_at)
    twice = {cid: c for cid, c in calls.items() if len(c) > 1}
    # Only what A had in flight when it died ran again — on B, after the kill: never two at once.
    assert all(len(c) == 2 and c[0][1] == "a" and c[0][0] < killed_at <= c[1][0] for c in twice.values()), twice
    assert len(twice) <= 3 + 3  # A's workers (3) and results not yet written
