"""The suites of what the store keeps — batches, threads, usage, the status page — once more with every gateway process
on PostgreSQL (``ANTHROPIC_GATEWAY_TEST_STORE=postgresql``: a schema of its own per process), so the
SQLite-only run cannot hide a PostgreSQL difference. One pytest run in a subprocess: its own session,
its own database, dropped at its end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engines import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
SUITES = ("tests/batches", "tests/e2e/test_threads.py", "tests/http_api/test_usage.py", "tests/status/test_data.py")


def test_the_store_suites_pass_with_every_gateway_on_postgresql(_postgres_server: PostgresServer) -> None:
    _postgres_server.url()  # skips (or fails under CI=true) without a server, as the other PostgreSQL tests
    env = {**os.environ, "ANTHROPIC_GATEWAY_TEST_STORE": "postgresql"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *SUITES],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    tail = "\n".join((run.stdout + run.stderr).splitlines()[-40:])
    assert run.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail
