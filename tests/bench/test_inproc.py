"""bench/inproc.py drives the ASGI app as the server does (scope, disconnect notice, receive and send):
a change to that contract must not leave it measuring error responses (it measured 500s, the notice's
flow control missing `read_paused`, from the sixth session's front door until this test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

INPROC = Path(__file__).parents[2] / "bench" / "inproc.py"


@pytest.mark.parametrize("args", [[], ["--stream", "--chunks", "5"], ["--body", "cc"]], ids=["small", "stream", "cc"])
def test_every_measured_request_is_answered_200(args: list[str]) -> None:
    run = subprocess.run([sys.executable, str(INPROC), "--n", "20", *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "20 requests, statuses [200]:" in run.stdout, (run.stdout[-1000:], run.stderr[-2000:])
