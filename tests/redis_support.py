"""Redis for the tests: the shared server at 127.0.0.1:6379 (``ANTHROPIC_GATEWAY_TEST_REDIS_URL``),
a key prefix of each test's own (every key under it deleted afterwards), and private servers for the
tests that stop Redis (the shared one is never stopped)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import redis

from conftest import GATEWAY_ENV, GatewayProcess

REDIS_URL = os.environ.get("ANTHROPIC_GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_unavailable() -> str | None:
    """Why the tests cannot use Redis, or None."""
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1) as r:
            r.ping()
    except redis.RedisError as err:
        return f"no Redis at {REDIS_URL} ({err})"
    return None


def new_prefix() -> str:
    return f"gwtest:{uuid.uuid4().hex[:12]}:"


def delete_prefix(prefix: str, url: str = REDIS_URL) -> int:
    with redis.Redis.from_url(url, socket_timeout=5) as r:
        names = list(r.scan_iter(match=prefix + "*", count=1000))
        return int(r.unlink(*names)) if names else 0


def count_prefix(prefix: str, url: str = REDIS_URL) -> int:
    with redis.Redis.from_url(url, socket_timeout=5) as r:
        return sum(1 for _ in r.scan_iter(match=prefix + "*", count=1000))


class PrivateRedis:
    """``redis-server --port PORT --save '' --appendonly no``, which a test may stop and start again."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = shutil.which("redis-server") or "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with redis.Redis(port=self.port, socket_connect_timeout=0.2) as r:
                    r.ping()
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


# --- gateways on Redis ------------------------------------------------------------------------------

TEAM_KEY = "gw-team-key-replicas-7c1d"
ADMIN_KEY = "gw-admin-key-replicas-90ab"


def gateway_env(url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {**GATEWAY_ENV, "ANTHROPIC_GATEWAY_REDIS_URL": url, "ANTHROPIC_GATEWAY_REDIS_PREFIX": prefix,
            "ANTHROPIC_GATEWAY_ADMIN_KEYS": ADMIN_KEY, **extra}  # fmt: skip


def keyed_env(url: str, prefix: str, **limits: object) -> dict[str, str]:
    return gateway_env(url, prefix, TEAM_KEY=TEAM_KEY,
                       ANTHROPIC_GATEWAY_KEYS=json.dumps({"team": {"key_env": "TEAM_KEY", **limits}}))  # fmt: skip


def params(text: str = "Hi") -> dict[str, Any]:
    return {"model": "claude-sonnet-5", "max_tokens": 16, "messages": [{"role": "user", "content": text}],
            "extra_body": {"temperature": 0}}  # fmt: skip


def get_json(gw: GatewayProcess, path: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(gw.url + path, headers={"x-api-key": ADMIN_KEY})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_for(check: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False
