"""The gateway's own HTTP/1.1 client for the upstream's chat-completions POSTs (see connection.py
for why it is not aiohttp): a keep-alive pool, TLS, the gateway's timeouts."""

from anthropic_gateway.httpclient.connection import Response
from anthropic_gateway.httpclient.errors import (
    ConnectError,
    ConnectTimeout,
    Disconnected,
    HTTPClientError,
    IdleTimeout,
    TotalTimeout,
)
from anthropic_gateway.httpclient.pool import Endpoint, Pool

__all__ = ["ConnectError", "ConnectTimeout", "Disconnected", "Endpoint", "HTTPClientError", "IdleTimeout", "Pool",
           "Response", "TotalTimeout"]  # fmt: skip
