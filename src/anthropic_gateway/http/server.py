"""The HTTP server: uvicorn, with the gateway's drain on SIGTERM / SIGINT.

uvicorn already does most of a graceful shutdown: on the signal it stops listening (new connections
are refused), closes idle keep-alive connections, lets the requests in flight finish and then runs
the lifespan's shutdown (the ledger flushes its queue there). Two things are added here: readiness
turns 503 at the signal, and ``drain_timeout`` seconds later the requests still running are ended by
the gateway itself — each stream with an ``overloaded_error`` event, each unanswered request with a
529 — so no client sees a stream cut without a word. uvicorn's own limit comes a few seconds after
that, for whatever is still stuck (a client that does not read).
"""

from __future__ import annotations

import math
import socket
from types import FrameType

import uvicorn

from anthropic_gateway.http.front import FrontDoor

AFTER_DRAIN = 5.0  # seconds uvicorn waits past drain_timeout before it cancels what is left


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FrontDoor, drain_timeout: float) -> None:
        super().__init__(config)
        self.lifecycle = app.gateway.lifecycle
        self.drain_timeout = drain_timeout

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.lifecycle.state = "draining"  # readiness says 503 from this instant
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.lifecycle.begin_drain(self.drain_timeout)
        await super().shutdown(sockets)


def serve(app: FrontDoor, config: uvicorn.Config, drain_timeout: float) -> None:
    config.timeout_graceful_shutdown = math.ceil(drain_timeout + AFTER_DRAIN)
    try:
        GatewayServer(config, app, drain_timeout).run()
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled, once shut down: no traceback
        raise SystemExit(130) from None
