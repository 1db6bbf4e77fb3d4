"""The seed's endpoints: POST /v1/messages/batch streams results as they finish; …/status shows progress."""

from __future__ import annotations

import json

import anthropic
import httpx2

from batches import item, results, script, wait_ended
from conftest import GatewayProcess
from fake_upstream import FakeUpstream


def test_streams_each_result_as_it_finishes(gateway: GatewayProcess, client: anthropic.Anthropic,
                                            upstream: FakeUpstream) -> None:  # fmt: skip
    script(upstream)
    body = {"requests": [item("slow", "slow:1.0"), item("fast", "ok:quick"), item("bad", "fail")]}
    lines = []
    with httpx2.stream("POST", gateway.url + "/v1/messages/batch", json=body, timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/x-jsonl")
        batch_id = resp.headers["anthropic-gateway-batch-id"]
        assert batch_id.startswith("msgbatch_")
        for line in resp.iter_lines():
            lines.append(json.loads(line))
            if len(lines) == 2:  # the slow one is still running: the status endpoint says so
                status = httpx2.get(f"{gateway.url}/v1/messages/batch/{batch_id}/status", timeout=10).json()
                assert status["type"] == "message_batch" and status["processing_status"] == "in_progress"
                assert status["request_counts"]["processing"] == 3
                assert status["progress"] == {"total": 3, "pending": 0, "running": 1, "succeeded": 1, "errored": 1,
                                              "canceled": 0, "expired": 0}  # fmt: skip
    assert [x["custom_id"] for x in lines][2] == "slow"
    assert {x["custom_id"]: x["result"]["type"] for x in lines} == {"slow": "succeeded", "fast": "succeeded",
                                                                     "bad": "errored"}  # fmt: skip
    fast = next(x for x in lines if x["custom_id"] == "fast")
    assert fast["result"]["message"]["content"] == [{"type": "text", "text": "quick"}]
    # The same batch through Anthropic's API.
    ended = wait_ended(client, batch_id)
    assert ended.request_counts.succeeded == 2 and ended.request_counts.errored == 1
    status = httpx2.get(f"{gateway.url}/v1/messages/batch/{batch_id}/status", timeout=10).json()
    assert status["processing_status"] == "ended"
    assert status["progress"] == {"total": 3, "pending": 0, "running": 0, "succeeded": 2, "errored": 1,
                                  "canceled": 0, "expired": 0}  # fmt: skip


def test_a_client_that_leaves_does_not_cancel_the_batch(gateway: GatewayProcess, client: anthropic.Anthropic,
                                                        upstream: FakeUpstream) -> None:  # fmt: skip
    script(upstream)
    body = {"requests": [item("fast", "ok:1"), item("slow1", "slow:0.8"), item("slow2", "slow:0.8")]}
    with httpx2.stream("POST", gateway.url + "/v1/messages/batch", json=body, timeout=30) as resp:
        batch_id = resp.headers["anthropic-gateway-batch-id"]
        first = json.loads(next(resp.iter_lines()))
        assert first["custom_id"] == "fast"
    ended = wait_ended(client, batch_id)  # left after the first line: the rest still ran
    assert ended.request_counts.succeeded == 3
    assert set(results(client, batch_id)) == {"fast", "slow1", "slow2"}


def test_status_of_an_unknown_batch_is_404(gateway: GatewayProcess) -> None:
    resp = httpx2.get(gateway.url + "/v1/messages/batch/msgbatch_nope/status", timeout=10)
    assert resp.status_code == 404
    assert resp.json()["error"] == {"type": "not_found_error", "message": "message_batch: no batch with id 'msgbatch_nope'"}


def test_envelope_errors_are_the_same_as_the_batches_api(gateway: GatewayProcess) -> None:
    resp = httpx2.post(gateway.url + "/v1/messages/batch", json={"requests": []}, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "requests: List should have at least 1 item after validation, not 0"
