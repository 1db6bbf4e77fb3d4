"""`anthropic-gateway usage`: a running gateway's totals as a table, found and authenticated from the
same settings as `anthropic-gateway env`; exit codes, stdout and stderr."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from anthropic_gateway.usage_report import when
from conftest import GATEWAY_ENV, GatewayProcess, SpawnGateway, free_port
from e2e import post_raw
from fake_upstream import FakeUpstream, Reply, completion, usage

CLIENT, ADMIN = "cli-client-key", "cli-admin-key"
PRICES = '{"test/sonnet": {"input": 3, "output": 15}}'


def run_usage(*args: str, port: int, cwd: Path, admin: str = ADMIN) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "ANTHROPIC_GATEWAY_PORT": str(port), "ANTHROPIC_GATEWAY_API_KEYS": CLIENT,
           "ANTHROPIC_GATEWAY_ADMIN_KEYS": admin}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "anthropic_gateway", "usage", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=cwd)  # fmt: skip


@pytest.fixture
def gw(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> GatewayProcess:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_API_KEYS": CLIENT, "ANTHROPIC_GATEWAY_ADMIN_KEYS": ADMIN,
                        "ANTHROPIC_GATEWAY_PRICES": PRICES})  # fmt: skip
    upstream.expect(Reply.json(completion("a", usage_=usage(1000, 100))), Reply.json(completion("b", usage_=usage(200, 50))))
    for _ in range(2):
        body = {"model": "claude-sonnet-5", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
        assert post_raw(gw.url, "/v1/messages", body, headers={"x-api-key": CLIENT}).status_code == 200
    time.sleep(0.3)  # the ledger row follows the last byte
    return gw


def test_prints_the_totals_as_a_table(gw: GatewayProcess, tmp_path: Path) -> None:
    proc = run_usage("--since", "1d", "--by", "model", port=gw.port, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("usage ") and lines[0].endswith(", by model")
    header = next(ln for ln in lines if "requests" in ln)
    assert [c.strip() for c in header.strip("┃│ ").split("┃")] == [
        "model", "requests", "errors", "input", "output", "cache read", "cache write", "cost (USD)", "mean ms"]
    for name in ("claude-sonnet-5", "total"):
        cells = [c.strip() for c in next(ln for ln in lines if f" {name} " in ln).strip("│ ").split("│")]
        assert cells[:8] == [name, "2", "0", "1,200", "150", "0", "0", "$0.005850"]  # (1200 × $3 + 150 × $15) / 1M

    by_day = run_usage("--by", "day", port=gw.port, cwd=tmp_path)
    assert by_day.returncode == 0 and time.strftime("%Y-%m-%d", time.gmtime()) in by_day.stdout


def test_a_refused_key_a_bad_time_and_no_gateway(gw: GatewayProcess, tmp_path: Path) -> None:
    refused = run_usage(port=gw.port, cwd=tmp_path, admin="not-the-admin-key")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (f"anthropic-gateway: the gateway at http://127.0.0.1:{gw.port} refused: This route needs "
                              "an admin key; the key given is not one (the key sent is the first of "
                              "ANTHROPIC_GATEWAY_ADMIN_KEYS)\n")  # fmt: skip
    bad = run_usage("--since", "last tuesday", port=gw.port, cwd=tmp_path)
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.startswith("anthropic-gateway: start: expected an ISO 8601 date (2026-12-01), date and time")
    port = free_port()
    nothing = run_usage(port=port, cwd=tmp_path)
    assert (nothing.returncode, nothing.stdout) == (1, "")
    assert nothing.stderr.startswith(f"anthropic-gateway: no gateway answers at http://127.0.0.1:{port} (")
    assert nothing.stderr.endswith("start one with `anthropic-gateway serve`, or set ANTHROPIC_GATEWAY_PORT to its port\n")


def test_relative_times_become_unix_seconds() -> None:
    assert when("7d", 1_000_000.0) == str(1_000_000 - 7 * 86400)
    assert when("30m", 1_000_000.0) == str(1_000_000 - 1800)
    assert when("2w", 2_000_000.0) == str(2_000_000 - 14 * 86400)
    assert when("2026-12-01", 0.0) == "2026-12-01"
