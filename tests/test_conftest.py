"""The test harness's own check that a spawned gateway is the process answering on its port (so a
port another test run on the machine took meanwhile is retried, not talked to)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from conftest import _listens_on


def test_a_listening_socket_is_told_apart_by_its_owner() -> None:
    with socket.socket() as mine:
        mine.bind(("127.0.0.1", 0))
        mine.listen()
        port = mine.getsockname()[1]
        assert _listens_on(os.getpid(), port)
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert not _listens_on(other.pid, port)
        finally:
            other.kill()
            other.wait()
    with socket.socket() as bound_only:  # bound, not listening: not an answering server
        bound_only.bind(("127.0.0.1", 0))
        assert not _listens_on(os.getpid(), bound_only.getsockname()[1])
