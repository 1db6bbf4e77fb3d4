"""Gateway keys end to end: configured keys with limits through the official SDK, stored keys made
by the CLI and by the admin route, budgets read from the ledger, and no key anywhere it should not be."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import anthropic
import httpx2
import pytest

from conftest import GATEWAY_ENV, UPSTREAM_KEY, GatewayProcess, SpawnGateway, _clean_environ
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk, usage_chunk
from redis_support import delete_prefix

TEAM_KEY = "gw-team-key-5f3a9e"
ADMIN_KEY = "gw-admin-key-81c2d0"
HELLO = [{"role": "user", "content": "Hi"}]


def _answer() -> Reply:
    return Reply.auto([text_chunk("ok"), finish_chunk("stop"), usage_chunk(10, 2)])


def _client(gw: GatewayProcess, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def _env(**keys: dict[str, object]) -> dict[str, str]:
    return {**GATEWAY_ENV, "TEAM_KEY": TEAM_KEY, "ANTHROPIC_GATEWAY_ADMIN_KEYS": ADMIN_KEY,
            "ANTHROPIC_GATEWAY_KEYS": json.dumps(keys)}  # fmt: skip


def test_a_configured_key_over_its_request_limit_gets_anthropics_429(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway(_env(team={"key_env": "TEAM_KEY", "requests_per_minute": 2, "models": ["claude-*"]}))
    upstream.always(_answer())
    with _client(gw, TEAM_KEY) as c:
        first = c.messages.with_raw_response.create(model="claude-sonnet-5", max_tokens=5, messages=HELLO)
        assert first.headers["anthropic-ratelimit-requests-limit"] == "2"
        assert first.headers["anthropic-ratelimit-requests-remaining"] == "1"
        with c.messages.stream(model="claude-sonnet-5", max_tokens=5, messages=HELLO) as s:
            assert s.get_final_message().content[0].text == "ok"  # type: ignore[union-attr]
        if time.gmtime().tm_sec >= 58:
            pytest.skip("the minute turned between the requests")  # pragma: no cover
        with pytest.raises(anthropic.RateLimitError) as err:
            c.messages.create(model="claude-sonnet-5", max_tokens=5, messages=HELLO)
        assert err.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        assert 1 <= int(err.value.response.headers["retry-after"]) <= 60
        with pytest.raises(anthropic.PermissionDeniedError, match="may not use the model 'openai/gpt-4o'"):
            c.messages.create(model="openai/gpt-4o", max_tokens=5, messages=HELLO)
    with _client(gw, "not-a-key") as c, pytest.raises(anthropic.AuthenticationError):
        c.messages.create(model="claude-sonnet-5", max_tokens=5, messages=HELLO)
    assert len(upstream.requests) == 2
    time.sleep(0.3)
    with sqlite3.connect(gw.log_path.with_suffix(".db")) as db:
        labels = [r[0] for r in db.execute("SELECT key_label FROM ledger ORDER BY id")]
    assert labels[:2] == ["team", "team"]


def test_a_spent_daily_budget_gets_the_billing_error(spawn_gateway: SpawnGateway, upstream: FakeUpstream,
                                                      state_backend: dict[str, str]) -> None:  # fmt: skip
    gw = spawn_gateway(_env(team={"key_env": "TEAM_KEY", "daily_budget_usd": 1.0}))
    upstream.always(_answer())
    with _client(gw, TEAM_KEY) as c:
        c.messages.create(model="claude-sonnet-5", max_tokens=5, messages=HELLO)  # opens the day's account
    time.sleep(0.3)
    with sqlite3.connect(gw.log_path.with_suffix(".db")) as db:  # what the team spent today, per the ledger
        db.execute("UPDATE ledger SET cost_usd = 1.5 WHERE key_label = 'team'")
    if state_backend:  # Redis seeds the day's spend from the ledger once, then counts it: as a Redis that
        delete_prefix(state_backend["ANTHROPIC_GATEWAY_REDIS_PREFIX"])  # lost its keys, it reads the ledger again
    gw2 = spawn_gateway({**_env(team={"key_env": "TEAM_KEY", "daily_budget_usd": 1.0}),
                         "ANTHROPIC_GATEWAY_DATABASE_URL": str(gw.log_path.with_suffix(".db"))})  # fmt: skip
    with _client(gw2, TEAM_KEY) as c, pytest.raises(anthropic.APIStatusError) as err:
        c.messages.create(model="claude-sonnet-5", max_tokens=5, messages=HELLO)
    assert err.value.status_code == 402
    assert err.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert "daily budget of $1 is spent ($1.5000 today" in err.value.message


def _cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**_clean_environ(), "ANTHROPIC_GATEWAY_DATABASE_URL": db}
    return subprocess.run([sys.executable, "-m", "anthropic_gateway", "keys", *args], capture_output=True,
                          text=True, env=env, timeout=60)  # fmt: skip


def test_stored_keys_from_the_cli_and_the_admin_route(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_ADMIN_KEYS": ADMIN_KEY})
    db = str(gw.log_path.with_suffix(".db"))
    upstream.always(_answer())
    made = _cli(db, "create", "ci-bot", "--rpm", "100")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("agw-") and len(key) == 44
    assert made.stderr == "created key 'ci-bot': it is shown this once; store it now\n"
    listed = _cli(db, "list")
    assert listed.returncode == 0 and "ci-bot" in listed.stdout and key not in listed.stdout
    assert key[:8] + "…" in listed.stdout and "requests_per_minute=100" in listed.stdout
    with open(db, "rb") as f:
        assert key.encode() not in f.read()  # only its hash is kept

    deadline = time.monotonic() + 10  # a running gateway picks the key up within 5 s
    while True:
        with _client(gw, key) as c:
            try:
                c.messages.create(model="claude-sonnet-5", max_tokens=5, messages=HELLO)
                break
            except anthropic.AuthenticationError:
                assert time.monotonic() < deadline, "the stored key never worked"
                time.sleep(0.5)

    admin = {"x-api-key": ADMIN_KEY}
    created = httpx2.post(gw.url + "/admin/keys", json={"label": "web", "max_concurrent": 2}, headers=admin)
    assert created.status_code == 201
    web_key = created.json()["key"]
    assert created.json()["limits"] == {"max_concurrent": 2}
    with _client(gw, web_key) as c:  # at once: the route reloads the table
        c.messages.create(model="claude-sonnet-5", max_tokens=5, messages=HELLO)
    assert httpx2.post(gw.url + "/admin/keys", json={"label": "web"}, headers=admin).status_code == 400
    assert httpx2.post(gw.url + "/admin/keys", json={"label": "x", "max_concurrent": 0}, headers=admin).json()[
        "error"]["message"].startswith("max_concurrent:")  # fmt: skip
    assert httpx2.get(gw.url + "/admin/keys", headers={"x-api-key": web_key}).status_code == 403
    assert httpx2.get(gw.url + "/admin/keys").status_code == 401
    labels = [k["label"] for k in httpx2.get(gw.url + "/admin/keys", headers=admin).json()["data"]]
    assert labels == ["ci-bot", "web"]
    assert httpx2.delete(gw.url + "/admin/keys/web", headers=admin).json() == {"label": "web", "revoked": True}
    assert httpx2.delete(gw.url + "/admin/keys/web", headers=admin).status_code == 404
    with _client(gw, web_key) as c, pytest.raises(anthropic.AuthenticationError):
        c.messages.create(model="claude-sonnet-5", max_tokens=5, messages=HELLO)
    assert _cli(db, "revoke", "ci-bot").returncode == 0
    assert (_cli(db, "revoke", "ci-bot").returncode, _cli(db, "revoke", "ci-bot").stderr) == (
        1, "anthropic-gateway: no active key labelled 'ci-bot'\n")  # fmt: skip

    log = gw.log_text()
    for secret in (key, web_key, ADMIN_KEY, UPSTREAM_KEY):
        assert secret not in log
