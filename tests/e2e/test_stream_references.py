"""A finished stream leaves nothing alive behind it: the upstream response and the sink that the
connection called for each read (a closure holding that response) are freed when the stream ends,
not left in a reference cycle for the garbage collector's next pass. The served gateway runs with
its garbage collector off and counts, on SIGUSR1, the upstream responses still alive."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from conftest import GATEWAY_ENV, SpawnGateway
from e2e import MODEL, USER_HELLO
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk, usage_chunk

_SITE = """
import gc, os, signal
gc.disable()


def _count(*_):
    from anthropic_gateway.httpclient.connection import Response
    alive = sum(1 for o in gc.get_objects() if type(o) is Response)
    with open(os.environ["GW_TEST_ALIVE"] + ".tmp", "w") as f:
        f.write(str(alive))
    os.replace(os.environ["GW_TEST_ALIVE"] + ".tmp", os.environ["GW_TEST_ALIVE"])


signal.signal(signal.SIGUSR1, _count)
"""


def test_a_finished_stream_leaves_no_upstream_response_alive(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SITE)
    alive = tmp_path / "alive"
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    gw = spawn_gateway({**GATEWAY_ENV, "PYTHONPATH": path, "GW_TEST_ALIVE": str(alive)})
    words = [text_chunk(f"w{i} ") for i in range(8)]  # template events: the reader's run takes them
    upstream.always(Reply.stream([*words, finish_chunk("stop"), usage_chunk(5, 8)]))
    with gw.client() as client:
        for _ in range(6):
            with client.messages.stream(model=MODEL, max_tokens=64, messages=USER_HELLO) as stream:
                assert stream.get_final_text() == "".join(f"w{i} " for i in range(8))
    os.kill(gw.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not alive.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive.read_text() == "0"
