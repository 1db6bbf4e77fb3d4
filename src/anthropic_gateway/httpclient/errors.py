"""What the upstream HTTP client raises: one base class, so a caller catches exactly these."""

from __future__ import annotations


class HTTPClientError(Exception):
    """Any failure of an upstream exchange: connecting, sending, or reading the answer."""


class ConnectError(HTTPClientError):
    """The connection could not be opened (refused, unresolvable name, TLS handshake failed)."""

    def __init__(self, host: str, port: int, cause: BaseException | None = None) -> None:
        super().__init__(f"cannot connect to {host}:{port}")
        self.host, self.port, self.cause = host, port, cause


class ConnectTimeout(HTTPClientError):
    """The upstream did not accept the connection within the connect timeout."""


class IdleTimeout(HTTPClientError):
    """No byte arrived from the upstream for the idle (read) timeout."""


class TotalTimeout(HTTPClientError):
    """The exchange did not complete within the total timeout."""


class Disconnected(HTTPClientError):
    """The upstream closed the connection before the answer ended (or sent something that is not HTTP)."""
