"""Replicas sharing one PostgreSQL database act as one: the ledger sums every replica's rows, a
thread started on one continues on another, a key created on one works on all."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2

from conftest import SpawnGateway
from e2e import MODEL
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk, usage_chunk
from scaleout import start_replicas, until, usage_total

ANSWER = [text_chunk("ok"), finish_chunk("stop"), usage_chunk(60, 7)]
HELLO: Any = [{"role": "user", "content": "hello"}]
ADMIN_KEY = "admin-scaleout-key"


def test_usage_sums_the_ledger_rows_of_every_replica(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, postgres_url: str
) -> None:
    upstream.always(Reply.auto(ANSWER))
    replicas = start_replicas(spawn_gateway, postgres_url, "abc")
    sent = 0
    for n in range(24):
        with replicas[n % 3].client() as client:
            if n % 2:
                client.messages.create(model=MODEL, max_tokens=20, messages=HELLO)
            else:
                with client.messages.stream(model=MODEL, max_tokens=20, messages=HELLO) as stream:
                    stream.get_final_message()
        sent += 1
    assert len(upstream.requests) == sent
    # Each replica writes its own rows in batches; any replica reads the sum of all of them.
    until(lambda: usage_total(replicas[0])["requests"] == sent, what="every replica's rows in the ledger")
    for gw in replicas:
        total = usage_total(gw)
        assert (total["requests"], total["input_tokens"], total["output_tokens"], total["errors"]) == (
            sent, 60 * sent, 7 * sent, 0)  # fmt: skip


def test_a_thread_started_on_one_replica_continues_on_another(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, postgres_url: str
) -> None:
    a, b = start_replicas(spawn_gateway, postgres_url, "ab")
    headers = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}
    upstream.expect(Reply.auto(ANSWER), Reply.auto(ANSWER))
    first = httpx2.post(a.url + "/v1/messages", headers=headers, timeout=30, json={
        "model": MODEL, "max_tokens": 50, "system": "Be brief.", "messages": HELLO, "thread": {"type": "create"}})  # fmt: skip
    assert first.status_code == 200, first.text
    more = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "and more"}],
            "thread": {"type": "continue", "previous_message_id": first.json()["id"]}}  # fmt: skip
    second = httpx2.post(b.url + "/v1/messages", headers=headers, json=more, timeout=30)
    assert second.status_code == 200, second.text
    # B sent the whole conversation A had kept.
    assert [(m["role"], m["content"]) for m in upstream.bodies[1]["messages"]] == [  # type: ignore[index]
        ("system", "Be brief."), ("user", "hello"), ("assistant", "ok"), ("user", "and more")]  # fmt: skip
    again = httpx2.post(a.url + "/v1/messages", headers=headers, json=more, timeout=30)  # continued once, anywhere
    assert (again.status_code, again.json()["error"]["details"]) == (400, {"error_code": "thread_already_continued"})


def test_a_key_created_on_one_replica_works_on_the_others(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, postgres_url: str
) -> None:
    upstream.always(Reply.auto(ANSWER))
    a, b = start_replicas(spawn_gateway, postgres_url, "ab", ANTHROPIC_GATEWAY_ADMIN_KEYS=ADMIN_KEY)
    created = httpx2.post(a.url + "/admin/keys", json={"label": "web"}, headers={"x-api-key": ADMIN_KEY}, timeout=10)
    assert created.status_code == 201, created.text
    key = created.json()["key"]

    def works_on_b() -> bool:
        with anthropic.Anthropic(base_url=b.url, api_key=key, max_retries=0) as c:
            try:
                c.messages.create(model=MODEL, max_tokens=5, messages=HELLO)
            except anthropic.AuthenticationError:
                return False
        return True

    until(works_on_b, timeout=15, what="the key working on B")  # B reloads its table every 5 s
    listed = httpx2.get(b.url + "/admin/keys", headers={"x-api-key": ADMIN_KEY}, timeout=10).json()["data"]
    assert [k["label"] for k in listed] == ["web"]
