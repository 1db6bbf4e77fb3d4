"""The official SDK's ``client.messages.batches.*`` against the real gateway and the scripted upstream."""

from __future__ import annotations

import anthropic
import httpx2
import pytest

from batches import MODEL, item, results, script, wait_ended
from conftest import GatewayProcess
from fake_upstream import FakeUpstream


def test_mixed_batch_create_retrieve_results(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    script(upstream)
    created = client.messages.batches.create(requests=[
        item("a", "ok:alpha"), item("b", "fail"), item("c", "ok:gamma"),
        {"custom_id": "bad-params", "params": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}},
        item("streamed", "ok:x", stream=True),
    ])  # type: ignore[list-item]  # fmt: skip
    assert created.id.startswith("msgbatch_")
    assert created.type == "message_batch"
    assert created.processing_status == "in_progress"
    assert created.request_counts.model_dump() == {"processing": 5, "succeeded": 0, "errored": 0, "canceled": 0,
                                                   "expired": 0}  # fmt: skip
    assert created.results_url is None and created.ended_at is None and created.cancel_initiated_at is None
    assert (created.expires_at - created.created_at).total_seconds() == pytest.approx(86400, abs=1)

    ended = wait_ended(client, created.id)
    assert ended.request_counts.model_dump() == {"processing": 0, "succeeded": 2, "errored": 3, "canceled": 0,
                                                 "expired": 0}  # fmt: skip
    assert ended.results_url == f"/v1/messages/batches/{created.id}/results"
    assert ended.ended_at is not None and ended.ended_at >= ended.created_at

    got = results(client, created.id)
    assert list(got) == ["a", "b", "c", "bad-params", "streamed"]
    assert got["a"].type == "succeeded"
    assert [b.model_dump() for b in got["a"].message.content] == [{"type": "text", "text": "alpha", "citations": None}]
    assert got["a"].message.usage.input_tokens == 7 and got["a"].message.usage.output_tokens == 3
    assert got["a"].message.stop_reason == "end_turn"
    assert got["c"].message.content[0].text == "gamma"
    assert got["b"].type == "errored"
    assert got["b"].error.type == "error"
    assert got["b"].error.error.type == "invalid_request_error"
    assert "upstream refuses this one" in got["b"].error.error.message
    assert got["bad-params"].error.error.type == "invalid_request_error"
    assert got["bad-params"].error.error.message == "max_tokens: Field required"
    assert got["streamed"].error.error.type == "invalid_request_error"
    assert got["streamed"].error.error.message.startswith("stream: batch requests cannot be streamed")
    # Only the three valid, non-streamed requests went upstream.
    assert sorted(r.body["messages"][-1]["content"] for r in upstream.requests) == ["fail", "ok:alpha", "ok:gamma"]
    assert all(r.body.get("stream") in (None, False) for r in upstream.requests)


def test_results_before_the_batch_ended(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    script(upstream)
    batch = client.messages.batches.create(requests=[item("slow", "slow:1.5")])  # type: ignore[list-item]
    with pytest.raises(anthropic.AnthropicError, match="No `results_url` for the given batch"):
        list(client.messages.batches.results(batch.id))
    raw = httpx2.get(f"{str(client.base_url).rstrip('/')}/v1/messages/batches/{batch.id}/results", headers={"x-api-key": "k"})
    assert raw.status_code == 400
    assert raw.json()["error"]["type"] == "invalid_request_error"
    assert "has not finished processing" in raw.json()["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.batches.delete(batch.id)
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    wait_ended(client, batch.id)


def test_list_pages_most_recent_first(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    script(upstream)
    made = [client.messages.batches.create(requests=[item("x", "ok:1")]).id for _ in range(3)]  # type: ignore[list-item]
    first = client.messages.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2]
    assert first.has_more is True
    assert first.first_id == made[2] and first.last_id == made[1]
    seen = [b.id for b in client.messages.batches.list(limit=2)]  # auto-pages with after_id
    assert seen[:3] == made[::-1]
    before = client.messages.batches.list(limit=5, before_id=made[0])
    assert [b.id for b in before.data][-2:] == [made[2], made[1]]
    for batch_id in made:
        wait_ended(client, batch_id)


def test_delete_an_ended_batch(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    script(upstream)
    batch = client.messages.batches.create(requests=[item("x", "ok:1")])  # type: ignore[list-item]
    wait_ended(client, batch.id)
    deleted = client.messages.batches.delete(batch.id)
    assert deleted.model_dump() == {"id": batch.id, "type": "message_batch_deleted"}
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.batches.retrieve(batch.id)
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_cancel_ends_with_the_running_request_done_and_the_rest_canceled(
    spawn_gateway: object, upstream: FakeUpstream
) -> None:
    from conftest import GATEWAY_ENV

    gw: GatewayProcess = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_BATCH_CONCURRENCY": "1"})  # type: ignore[operator]
    script(upstream)
    with gw.client() as client:
        batch = client.messages.batches.create(
            requests=[item("slow", "slow:1.5"), *(item(f"r{i}", f"ok:{i}") for i in range(4))])  # type: ignore[list-item]  # fmt: skip
        assert upstream.wait_for_requests(1, timeout=10)
        canceling = client.messages.batches.cancel(batch.id)
        assert canceling.processing_status == "canceling"
        assert canceling.cancel_initiated_at is not None
        assert canceling.request_counts.processing == 5
        ended = wait_ended(client, batch.id)
        assert ended.request_counts.model_dump() == {"processing": 0, "succeeded": 1, "errored": 0, "canceled": 4,
                                                     "expired": 0}  # fmt: skip
        got = results(client, batch.id)
        assert got["slow"].type == "succeeded"
        assert {k: v.type for k, v in got.items() if k != "slow"} == {f"r{i}": "canceled" for i in range(4)}
        with pytest.raises(anthropic.BadRequestError):
            client.messages.batches.cancel(batch.id)
    assert len(upstream.requests) == 1
