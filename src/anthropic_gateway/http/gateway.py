"""What every handler needs, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from anthropic_gateway.auth import Authenticator
from anthropic_gateway.ops.record import Recorder, RequestRecord
from anthropic_gateway.routing import Router
from anthropic_gateway.service import MessagesService
from anthropic_gateway.settings import Settings
from anthropic_gateway.upstream import UpstreamClient


@dataclass(slots=True)
class Gateway:
    settings: Settings
    router: Router
    auth: Authenticator
    upstream: UpstreamClient
    service: MessagesService
    recorder: Recorder

    @classmethod
    def build(cls, settings: Settings) -> Gateway:
        router = Router(settings)
        upstream = UpstreamClient(settings)
        return cls(settings, router, Authenticator(settings), upstream, MessagesService(settings, router, upstream),
                   Recorder())  # fmt: skip

    def secrets(self) -> list[str]:
        """Every upstream key the gateway holds: none may ever reach a client or a log."""
        return [b.key.get_secret_value() for b in self.router.backends.values() if b.key is not None]


def gateway_of(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def record_of(request: Request) -> RequestRecord:
    rec: RequestRecord = request.scope["state"]["record"]
    return rec
