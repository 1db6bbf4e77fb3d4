"""The embedded store: one SQLite file (WAL), numbered migrations applied on open.

Plain SQL over aiosqlite rather than an ORM: the gateway's tables are few and its queries simple, and
SQLAlchemy Core's async stack measured 0.27–0.41 s of import and ~38 MB of RSS here (a third of the
gateway's idle memory) for what a dozen statements need. Queries are written once with ``?``
placeholders and portable SQL (``INSERT … ON CONFLICT``, no SQLite-only functions); a PostgreSQL
store (asyncpg, ``$n`` placeholders) implements the same :class:`Store` interface in the scale-out
work, with the migrations' dialect-specific column types.
"""

from anthropic_gateway.store.base import Store, StoreError, open_store

__all__ = ["Store", "StoreError", "open_store"]
