"""Who is calling (auth.Authenticator.check): an open gateway's caller, configured and stored keys,
passthrough, admin keys. An open gateway's client for a presented key is made once and shared (it
is immutable); it must be the client the general path makes."""

from __future__ import annotations

from typing import Any

import pytest

from anthropic_gateway.auth import Authenticator, Client, key_label, partition_of
from anthropic_gateway.errors import AuthenticationError
from anthropic_gateway.settings import load_settings

KEY = "sk-client-presented-1"


def authenticator(**env: str) -> Authenticator:
    return Authenticator(load_settings(environ={f"ANTHROPIC_GATEWAY_{k.upper()}": v for k, v in env.items()}))


def general(auth: Authenticator, presented: str | None) -> Client:
    """What check() gives by the general path: _check, then the partition of the key presented."""
    client = auth._check(presented)
    if presented:
        client = Client(client.trusted, client.key, partition_of(presented), client.label, client.limits)
    return client


@pytest.mark.parametrize("headers", [{"x-api-key": KEY}, {"authorization": f"Bearer {KEY}"}])
def test_an_open_gateways_caller_with_a_key_is_the_general_paths_client_made_once(headers: dict[str, str]) -> None:
    auth = authenticator()
    client = auth.check(headers)
    assert client == Client(trusted=True, key=None, partition=partition_of(KEY), label="open", limits=None)
    assert client == general(auth, KEY)
    assert auth.check(dict(headers)) is client  # shared: nothing per request
    assert auth.check({"x-api-key": "sk-another-key-2"}).partition == partition_of("sk-another-key-2")


def test_an_open_gateways_caller_without_a_key() -> None:
    assert authenticator().check({}) == Client(trusted=True)


def test_configured_keys_are_checked_not_taken_as_an_open_gateways_caller() -> None:
    auth = authenticator(api_keys="sk-good-key-1234")
    client = auth.check({"x-api-key": "sk-good-key-1234"})
    assert (client.trusted, client.label, client.partition) == (True, key_label("key", "sk-good-key-1234"),
                                                              partition_of("sk-good-key-1234"))  # fmt: skip
    with pytest.raises(AuthenticationError, match="Invalid API key for this gateway"):
        auth.check({"x-api-key": KEY})


def test_a_passthrough_gateway_spends_the_callers_own_key() -> None:
    client = authenticator(passthrough_auth="true").check({"x-api-key": KEY})
    assert client == Client(trusted=False, key=KEY, partition=partition_of(KEY), label=key_label("passthrough", KEY))


def test_with_admin_keys_a_callers_key_goes_the_general_path() -> None:
    auth = authenticator(admin_keys="sk-admin-key-9876")
    assert auth.check({"x-api-key": "sk-admin-key-9876"}).label == "admin"
    assert auth.check({"x-api-key": KEY}) == general(auth, KEY) == Client(trusted=True, partition=partition_of(KEY))


def test_a_key_stored_after_start_up_closes_the_open_gateway() -> None:
    class Stored:
        def __init__(self) -> None:
            self.by_hash: dict[str, Any] = {}

        def lookup(self, presented: str) -> Any:
            return None

    auth = authenticator()
    stored = Stored()
    auth.stored = stored  # type: ignore[assignment]
    assert auth.check({"x-api-key": KEY}).label == "open"
    stored.by_hash["digest"] = ("label", None)  # `anthropic-gateway keys create` ran meanwhile
    with pytest.raises(AuthenticationError, match="Invalid API key for this gateway"):
        auth.check({"x-api-key": KEY})
