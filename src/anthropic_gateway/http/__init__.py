"""The HTTP layer: the front door, the route table, the handlers and the SSE response.

Only this package knows about the web framework; the handlers read the request, call the service
(anthropic_gateway.service) and turn its answer into JSON or SSE.
"""

from anthropic_gateway.http.app import create_app

__all__ = ["create_app"]
