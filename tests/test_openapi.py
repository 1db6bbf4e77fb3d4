from __future__ import annotations

from anthropic_gateway.openapi import SPEC
from anthropic_gateway.server import app_routes, create_app
from anthropic_gateway.settings import load_settings


def test_openapi_paths_equal_the_app_routes() -> None:
    app = create_app(load_settings(environ={}))
    assert set(SPEC["paths"]) == app_routes(app)
