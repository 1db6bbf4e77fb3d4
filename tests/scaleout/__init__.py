"""Several gateway processes on one PostgreSQL database (issue 14): each test starts its replicas on
an empty schema of the session's own database (tests/engines.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx2

from conftest import GATEWAY_ENV, GatewayProcess, SpawnGateway


def replica_env(database_url: str, name: str, **extra: str) -> dict[str, str]:
    """A replica's settings: the shared store, and an upstream key of its own so the fake upstream
    can tell which replica called it (``Authorization: Bearer sk-replica-NAME``)."""
    return {**GATEWAY_ENV, "ANTHROPIC_GATEWAY_DATABASE_URL": database_url,
            "ANTHROPIC_GATEWAY_UPSTREAM_KEY": f"sk-replica-{name}", **extra}  # fmt: skip


def start_replicas(spawn: SpawnGateway, database_url: str, names: str, **extra: str) -> list[GatewayProcess]:
    return [spawn(replica_env(database_url, name, **extra)) for name in names]


def caller(headers: dict[str, str]) -> str:
    return headers.get("authorization", "").removeprefix("Bearer sk-replica-")


def until(check: Callable[[], bool], timeout: float = 20.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.05)


def usage_total(gw: GatewayProcess) -> dict[str, int]:
    r = httpx2.get(gw.url + "/v1/usage", params={"start": "0"}, timeout=10)
    assert r.status_code == 200, r.text
    total: dict[str, int] = r.json()["total"]
    return total
