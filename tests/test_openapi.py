from __future__ import annotations

from starlette.routing import Route

from anthropic_gateway.http import create_app
from anthropic_gateway.http.table import ENDPOINTS, endpoint_list
from anthropic_gateway.openapi import build_spec
from anthropic_gateway.settings import load_settings


def test_openapi_paths_and_methods_equal_the_app_routes() -> None:
    app = create_app(load_settings(environ={}))
    served = {
        (r.path.replace(":path}", "}"), m.lower()) for r in app.app.routes if isinstance(r, Route) for m in r.methods or ()
    }
    spec = build_spec(ENDPOINTS)
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    # Starlette answers HEAD on every GET route; the document lists it where it is a feature.
    assert documented - served == set()
    assert {op for op in served - documented if op[1] != "head"} == set()
    assert ("/", "head") in documented


def test_root_endpoint_list_comes_from_the_table() -> None:
    listed = endpoint_list()
    core = [
        "GET /", "GET /openapi.json", "POST /v1/messages", "POST /v1/messages/stream",
        "POST /v1/messages/count_tokens", "GET /v1/models", "GET /v1/models/{model_id}",
        "POST /v1/messages/batches", "GET /v1/messages/batches", "GET /v1/messages/batches/{batch_id}",
        "DELETE /v1/messages/batches/{batch_id}", "POST /v1/messages/batches/{batch_id}/cancel",
        "GET /v1/messages/batches/{batch_id}/results", "POST /v1/messages/batch",
        "GET /v1/messages/batch/{batch_id}/status",
    ]  # fmt: skip
    assert [e for e in listed if e in core] == core  # in the table's order, whatever lies between
    for route in ("GET /health", "GET /health/ready", "GET /health/detailed", "GET /metrics", "GET /v1/usage",
                  "GET /admin/keys", "GET /v1/messages/cache/stats", "DELETE /v1/messages/cache/clear",
                  "POST /v1/messages/cache/cleanup"):
        assert route in listed
    assert len(listed) == len(set(listed)) and not any(e.startswith("HEAD ") for e in listed)
    assert listed == [f"{m} {e.public_path}" for e in ENDPOINTS if e.listed for m in e.methods if m != "HEAD"]
