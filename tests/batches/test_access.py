"""Who sees a batch, passthrough mode, and the creation envelope's limits and errors."""

from __future__ import annotations

import anthropic
import httpx2
import pytest

from batches import item, script, wait_ended
from conftest import GATEWAY_ENV, GatewayProcess, SpawnGateway
from fake_upstream import FakeUpstream


def _client(gw: GatewayProcess, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def test_a_batch_is_visible_to_its_key_and_admin_keys_only(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    script(upstream)
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_API_KEYS": "key-a,key-b",
                        "ANTHROPIC_GATEWAY_ADMIN_KEYS": "admin-key"})  # fmt: skip
    with _client(gw, "key-a") as a, _client(gw, "key-b") as b, _client(gw, "admin-key") as admin:
        mine = a.messages.batches.create(requests=[item("x", "ok:1")])  # type: ignore[list-item]
        theirs = b.messages.batches.create(requests=[item("y", "ok:2")])  # type: ignore[list-item]
        wait_ended(a, mine.id)
        wait_ended(b, theirs.id)
        assert [x.id for x in a.messages.batches.list()] == [mine.id]
        assert [x.id for x in b.messages.batches.list()] == [theirs.id]
        assert [x.id for x in admin.messages.batches.list()] == [theirs.id, mine.id]
        assert admin.messages.batches.retrieve(mine.id).id == mine.id
        for call in (b.messages.batches.retrieve, b.messages.batches.cancel, b.messages.batches.delete,
                     lambda i: list(b.messages.batches.results(i))):  # fmt: skip
            with pytest.raises(anthropic.NotFoundError) as info:
                call(mine.id)
            assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
        with pytest.raises(anthropic.AuthenticationError):
            _client(gw, "wrong").messages.batches.list()
    ledger_labels = [line for line in gw.log_text().splitlines() if '"url.path":"batch"' in line]
    assert len(ledger_labels) == 2
    assert any('"key_label":"key-' in line for line in ledger_labels)


def test_passthrough_needs_a_gateway_key(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    env = {k: v for k, v in GATEWAY_ENV.items() if k != "ANTHROPIC_GATEWAY_UPSTREAM_KEY"}
    gw = spawn_gateway({**env, "ANTHROPIC_GATEWAY_PASSTHROUGH_AUTH": "true", "ANTHROPIC_GATEWAY_API_KEYS": "gw-key"})
    with _client(gw, "sk-or-my-own-upstream-key") as own, pytest.raises(anthropic.BadRequestError) as info:
        own.messages.batches.create(requests=[item("x", "ok:1")])  # type: ignore[list-item]
    message = info.value.body["error"]["message"]  # type: ignore[index]
    assert "need an upstream key the gateway holds" in message and "never stores your key" in message
    assert "sk-or-my-own-upstream-key" not in gw.log_text()
    assert upstream.requests == []
    with _client(gw, "gw-key") as trusted:
        assert trusted.messages.batches.list().data == []  # a gateway key may use batches


@pytest.mark.parametrize(("body", "message"), [
    ({"requests": "no"}, "requests: Expected `array`, got `str`"),
    ({"requests": []}, "requests: List should have at least 1 item after validation, not 0"),
    ({}, "requests: Field required"),
    ({"requests": [{"custom_id": "a", "params": {}}, {"custom_id": "a", "params": {}}]},
     "requests.1.custom_id: 'a' is used by an earlier request; custom_id must be unique within the batch"),
    ({"requests": [{"custom_id": "has space", "params": {}}]},
     "requests.0.custom_id: 'has space' does not match ^[a-zA-Z0-9_-]{1,64}$ (1 to 64 letters, digits, '_' or '-')"),
    ({"requests": [{"custom_id": "x" * 65, "params": {}}]}, "requests.0.custom_id: '" + "x" * 65 + "' does not match"),
    ({"requests": [{"custom_id": "a"}]}, "requests.0.params: Field required"),
    ({"requests": [{"custom_id": "a", "params": []}]}, "requests.0.params: Input should be an object"),
    ({"requests": [{"custom_id": "a", "params": {}, "extra": 1}]}, "requests.0: Object contains unknown field `extra`"),
])  # fmt: skip
def test_envelope_errors_name_the_field(gateway: GatewayProcess, body: object, message: str) -> None:
    resp = httpx2.post(gateway.url + "/v1/messages/batches", json=body, timeout=10)
    assert resp.status_code == 400
    err = resp.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert err["error"]["message"].startswith(message)


def test_the_route_has_its_own_limits(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_BATCH_MAX_BODY_BYTES": "2000",
                        "ANTHROPIC_GATEWAY_BATCH_MAX_REQUESTS": "3"})  # fmt: skip
    big = {"requests": [item("a", "x" * 3000)]}
    resp = httpx2.post(gw.url + "/v1/messages/batches", json=big, timeout=10)
    assert resp.status_code == 413 and resp.json()["error"]["type"] == "request_too_large"
    four = {"requests": [item(f"r{i}", "hi") for i in range(4)]}
    resp = httpx2.post(gw.url + "/v1/messages/batches", json=four, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "requests: a batch holds at most 3 requests; got 4"
    # The Messages route keeps its own limit: a 3000-byte message is fine there.
    assert httpx2.post(gw.url + "/v1/messages", json=item("a", "x" * 3000)["params"], timeout=10).status_code != 413
