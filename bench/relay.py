"""A zero-work TCP relay used to calibrate the harness.

It forwards bytes between the load generator and the mock, one write per read in each direction, with no
parsing. Run on the gateway's core in place of the gateway, it shows the best throughput the harness core
can sustain when both of its peers sit on the other core (each chunk then crosses cores twice, which
costs the harness far more than the floor's same-core traffic). A gateway cannot beat this figure, so the
report shows it next to the floor.

Run: python bench/relay.py --port 18090 --upstream-port 18081
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import cast


class Pipe(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Pipe | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            # The upstream connection is still being opened; hold what the client already sent.
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    # Strong references: the loop only keeps weak ones to tasks.
    tasks: set[asyncio.Task[None]] = set()

    def client_side() -> Pipe:
        down = Pipe()

        async def connect() -> None:
            try:
                _, up = await loop.create_connection(Pipe, "127.0.0.1", upstream_port)
            except OSError:
                if down.transport is not None:
                    down.transport.close()
                return
            up.peer, down.peer = down, up
            assert up.transport is not None
            for chunk in down.pending:
                up.transport.write(chunk)
            down.pending.clear()

        task = loop.create_task(connect())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return down

    server = await loop.create_server(client_side, "127.0.0.1", port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"relay on 127.0.0.1:{port} -> 127.0.0.1:{upstream_port}", flush=True)
    async with server:
        await stop.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream-port", type=int, required=True)
    args = ap.parse_args()
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.port, args.upstream_port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
