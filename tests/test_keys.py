"""Upstream keys: local servers need none (and get no Authorization header), hosted kinds need one; a
missing one is a start-up warning and a per-request 500 naming the variable, after the fallbacks."""

from __future__ import annotations

import json

import anthropic
import pytest

from anthropic_gateway.auth import Client, upstream_key
from anthropic_gateway.errors import APIError
from anthropic_gateway.routing import Router
from anthropic_gateway.settings import load_settings
from conftest import SpawnGateway
from fake_upstream import FakeUpstream, Reply, error_body, finish_chunk, text_chunk, usage_chunk

HI: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hi"}]
OK = Reply.auto([text_chunk("ok"), finish_chunk("stop"), usage_chunk(5, 1)])
NO_DEFAULT_KEY = (
    "The gateway has no upstream API key for backend 'default': set OPENROUTER_API_KEY "
    "(or ANTHROPIC_GATEWAY_UPSTREAM_KEY) and restart it"
)


def test_a_local_server_needs_no_key_and_gets_no_authorization_header(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    # The default upstream on a loopback URL and a named backend without key_env: nothing to invent.
    gw = spawn_gateway(env={
        "ANTHROPIC_GATEWAY_BACKENDS": json.dumps({"local": {"url": upstream.base_url}}),
        "ANTHROPIC_GATEWAY_MODELS": json.dumps({"qwen": {"backend": "local", "model": "qwen2.5-coder:7b"}}),
    })  # fmt: skip
    upstream.always(OK)
    with gw.client() as client:
        for model in ("qwen", "claude-sonnet-4-5"):
            assert client.messages.create(model=model, max_tokens=10, messages=HI).content[0].type == "text"
    assert [r.body["model"] for r in upstream.requests] == ["qwen2.5-coder:7b", "anthropic/claude-sonnet-4.5"]
    assert [r.headers.get("authorization") for r in upstream.requests] == [None, None]
    assert "no upstream key" not in gw.log_text() and "OPENROUTER_API_KEY" not in gw.log_text()


def test_a_hosted_backend_without_its_key_tries_the_fallbacks_then_names_the_variable(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway(env={
        "ANTHROPIC_GATEWAY_BACKEND_KIND": "openrouter",  # the default backend needs a key, and has none
        "ANTHROPIC_GATEWAY_BACKENDS": json.dumps({"local": {"url": upstream.base_url}}),
        "ANTHROPIC_GATEWAY_MODELS": json.dumps({
            "hosted": {"model": "vendor/big", "fallbacks": ["small"]},
            "hosted-alone": {"model": "vendor/big"},
            "small": {"backend": "local", "model": "qwen2.5-coder:7b"},
        }),
    })  # fmt: skip
    upstream.always(OK)
    with gw.client() as client:
        reply = client.messages.create(model="hosted", max_tokens=10, messages=HI)
        assert reply.content[0].type == "text" and reply.model == "hosted"
        assert [r.body["model"] for r in upstream.requests] == ["qwen2.5-coder:7b"]  # the fallback answered
        with pytest.raises(anthropic.InternalServerError) as err:
            client.messages.create(model="hosted-alone", max_tokens=10, messages=HI)
    assert err.value.status_code == 500
    assert err.value.body == {"type": "error", "error": {"type": "api_error", "message": NO_DEFAULT_KEY},
                              "request_id": err.value.request_id}  # fmt: skip
    assert len(upstream.requests) == 1  # nothing was sent without the key
    warning = ("WARNING anthropic_gateway: no upstream key for backend 'default': set OPENROUTER_API_KEY "
               "(or ANTHROPIC_GATEWAY_UPSTREAM_KEY) (its requests fail with a 500 until then)")  # fmt: skip
    assert warning in gw.log_text()


def test_a_named_hosted_backend_without_key_env_says_what_to_configure() -> None:
    settings = load_settings(environ={"ANTHROPIC_GATEWAY_BACKENDS": '{"oa": {"url": "https://api.openai.com/v1"}}'})
    router = Router(settings)
    with pytest.raises(APIError) as err:
        upstream_key(router.backends["oa"], Client(trusted=True))
    assert err.value.message == (
        "The gateway has no upstream API key for backend 'oa': set key_env in [backends.oa] to the name of "
        "the variable that holds its key and restart it"
    )
    assert "(key_env of backend" not in err.value.message


def test_a_named_backend_key_comes_from_its_key_env_and_a_passthrough_client_uses_its_own() -> None:
    settings = load_settings(environ={
        "ANTHROPIC_GATEWAY_BACKENDS": '{"oa": {"url": "https://api.openai.com/v1", "key_env": "OA_KEY"}}',
        "OA_KEY": "sk-oa",
    })  # fmt: skip
    router = Router(settings)
    assert upstream_key(router.backends["oa"], Client(trusted=True)) == ("sk-oa", False)
    assert upstream_key(router.backends["oa"], Client(trusted=False, key="sk-own")) == ("sk-own", True)
    local = Router(load_settings(environ={"ANTHROPIC_GATEWAY_UPSTREAM_URL": "http://127.0.0.1:11434/v1"}))
    assert upstream_key(local.backends["default"], Client(trusted=True)) == (None, False)


def test_a_401_names_the_variable_of_the_backend_that_refused(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway(env={
        "ANTHROPIC_GATEWAY_BACKENDS": json.dumps({
            "local": {"url": upstream.base_url},  # a server started with --api-key, but no key configured
            "team": {"url": upstream.base_url, "key_env": "TEAM_KEY"},
        }),
        "ANTHROPIC_GATEWAY_MODELS": json.dumps({"qwen": {"backend": "local", "model": "q"},
                                                "big": {"backend": "team", "model": "b"}}),
        "TEAM_KEY": "sk-team-revoked",
    })  # fmt: skip
    refused = Reply.json(error_body(401, "Invalid API key"), 401)
    upstream.expect(refused, refused)
    with gw.client() as client:
        messages = []
        for model in ("qwen", "big"):
            with pytest.raises(anthropic.InternalServerError) as err:
                client.messages.create(model=model, max_tokens=10, messages=HI)
            assert isinstance(err.value.body, dict)
            messages.append(err.value.body["error"]["message"])
    assert messages == [
        "The upstream asks for an API key and the gateway sent none (Invalid API key); set key_env in "
        "[backends.local] to the name of the variable that holds its key",
        "The upstream rejected the gateway's API key (Invalid API key); check TEAM_KEY (named by backends.team.key_env)",
    ]
    assert [r.headers.get("authorization") for r in upstream.requests] == [None, "Bearer sk-team-revoked"]
