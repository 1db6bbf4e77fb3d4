"""The stores tests run on: a SQLite file, and a real PostgreSQL database of their own.

``ANTHROPIC_GATEWAY_TEST_POSTGRES_URL`` names the server (default
``postgresql://postgres@127.0.0.1:5432/test``; the user must be allowed to create databases). Each
test session creates its own database ``gw_test_<random>`` there and drops it at the end; each test
that asks for one gets an empty schema in it. Without a reachable server the PostgreSQL tests skip,
except under ``CI=true``, where they fail: CI must run them.

- ``store_url`` (parametrised ``sqlite`` / ``postgresql``): a database URL for one test.
- ``postgres_url``: the PostgreSQL one only (multi-replica tests).
- ``ANTHROPIC_GATEWAY_TEST_STORE=postgresql``: every gateway process the tests start (conftest's
  ``start_gateway``) keeps its store in a schema of its own in the session's database instead of a
  SQLite file beside its log (tests/scaleout/test_suites_on_postgresql.py runs the store-using suites
  that way); a test that reads the SQLite file itself calls :func:`sqlite_only`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

STORE = os.environ.get("ANTHROPIC_GATEWAY_TEST_STORE", "sqlite")
SERVER_URL = os.environ.get("ANTHROPIC_GATEWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ENGINES = ("sqlite", "postgresql")


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(SERVER_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def reset_schema(url: str) -> None:
    """An empty ``public`` schema: a fresh store for one test, in the session's database."""
    await _admin_in(url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")


class PostgresServer:
    def __init__(self) -> None:
        self.error: str | None = None
        self.database: str | None = None

    def start(self) -> None:
        name = f"gw_test_{secrets.token_hex(4)}"
        try:
            _run(_admin(f'CREATE DATABASE "{name}"'))
        except Exception as err:
            self.error = f"{type(err).__name__}: {err}"
            return
        self.database = name

    def url(self) -> str:
        if self.database is None:
            message = f"PostgreSQL at {SERVER_URL} is not usable ({self.error}); set ANTHROPIC_GATEWAY_TEST_POSTGRES_URL"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        return with_database(SERVER_URL, self.database)

    def stop(self) -> None:
        if self.database is not None:
            _run(_admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
            self.database = None


SESSION = PostgresServer()
_schemas = 0


def session_server() -> PostgresServer:
    if SESSION.database is None and SESSION.error is None:
        SESSION.start()
    return SESSION


def gateway_database_url() -> str | None:
    """Under ``ANTHROPIC_GATEWAY_TEST_STORE=postgresql``, a fresh schema for one gateway process."""
    global _schemas
    if STORE != "postgresql":
        return None
    url = session_server().url()
    _schemas += 1
    schema = f"gw_{os.getpid()}_{_schemas}"
    _run(_admin_in(url, f'CREATE SCHEMA "{schema}"'))
    return f"{url}?search_path={schema}"


async def _admin_in(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def sqlite_only() -> None:
    """For a test that opens the gateway's SQLite file itself."""
    if STORE != "sqlite":
        pytest.skip("reads the gateway's SQLite file (ANTHROPIC_GATEWAY_TEST_STORE=postgresql)")


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[PostgresServer]:
    yield session_server()
    SESSION.stop()


@pytest.fixture
def postgres_url(_postgres_server: PostgresServer) -> str:
    url = _postgres_server.url()
    _run(reset_schema(url))
    return url


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "gw.db")
    url: str = request.getfixturevalue("postgres_url")
    return url
