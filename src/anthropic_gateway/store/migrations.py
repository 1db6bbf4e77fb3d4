"""Numbered migrations, applied in order on open and recorded in ``schema_migrations``.

Each is a list of statements per dialect; append new ones (never edit an applied one). Column types
are the portable subset: INTEGER (BIGINT on PostgreSQL), REAL (DOUBLE PRECISION), TEXT, BLOB (BYTEA).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...] = ()

    def statements(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" or not self.postgresql else self.postgresql


def _pg(statements: tuple[str, ...]) -> tuple[str, ...]:
    """The PostgreSQL spelling of portable DDL."""
    return tuple(
        s.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        .replace(" INTEGER", " BIGINT").replace(" REAL", " DOUBLE PRECISION").replace(" BLOB", " BYTEA")
        for s in statements
    )  # fmt: skip


_LEDGER = (
    """CREATE TABLE ledger (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        request_id TEXT NOT NULL,
        route TEXT,
        key_label TEXT,
        model TEXT,
        backend TEXT,
        upstream_model TEXT,
        stream INTEGER NOT NULL DEFAULT 0,
        status INTEGER NOT NULL,
        error_type TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL,
        latency_ms REAL NOT NULL,
        ttft_ms REAL,
        source TEXT NOT NULL DEFAULT 'http'
    )""",
    "CREATE INDEX ledger_ts ON ledger (ts)",
    """CREATE TABLE kv (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (namespace, key)
    )""",
)

# Message threads (threads/keeper.py): one row per position, the whole conversation in `state`
# until the position is continued.
_THREADS = (
    """CREATE TABLE threads (
        partition TEXT NOT NULL,
        message_id TEXT NOT NULL,
        state BLOB NOT NULL,
        size INTEGER NOT NULL,
        continued INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (partition, message_id)
    )""",
    "CREATE INDEX threads_expires ON threads (expires_at)",
)

_KEYS = (
    """CREATE TABLE gateway_keys (
        label TEXT PRIMARY KEY,
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL,
        limits TEXT NOT NULL
    )""",
)

# Message Batches (anthropic_gateway.batches): a batch row, and one row per request holding its params
# until it has a result. ``done_seq`` orders results as they finish (the streamed seed endpoint).
_BATCHES = (
    """CREATE TABLE batches (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        total INTEGER NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        ended_at REAL,
        cancel_initiated_at REAL,
        succeeded INTEGER NOT NULL DEFAULT 0,
        errored INTEGER NOT NULL DEFAULT 0,
        canceled INTEGER NOT NULL DEFAULT 0,
        expired INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX batches_owner ON batches (owner, seq)",
    "CREATE INDEX batches_status ON batches (status)",
    """CREATE TABLE batch_items (
        batch_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        custom_id TEXT NOT NULL,
        state TEXT NOT NULL,
        params BLOB,
        result BLOB,
        done_seq INTEGER,
        PRIMARY KEY (batch_id, idx)
    )""",
    "CREATE INDEX batch_items_state ON batch_items (batch_id, state, idx)",
    "CREATE INDEX batch_items_done ON batch_items (batch_id, done_seq)",
)

# Batches shared by several replicas (PostgreSQL): an item is claimed with a lease (who, until when),
# renewed while it runs; an item whose replica died is claimed again once its lease has expired.
# ``done_seq`` comes from a sequence there (SQLite's single process counts it in memory).
_LEASES = (
    "ALTER TABLE batch_items ADD COLUMN lease_owner TEXT",
    "ALTER TABLE batch_items ADD COLUMN lease_until REAL",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "ledger and key-value", _LEDGER, _pg(_LEDGER)),
    Migration(2, "message threads", _THREADS, _pg(_THREADS)),
    Migration(30, "message batches", _BATCHES, _pg(_BATCHES)),
    Migration(40, "gateway keys", _KEYS, _pg(_KEYS)),
    Migration(50, "batch item leases", _LEASES, (*_pg(_LEASES), "CREATE SEQUENCE batch_done_seq")),
)
