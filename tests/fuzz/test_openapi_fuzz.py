"""Schemathesis over the gateway's own /openapi.json: every operation, with data that fits the schemas
(positive) and data that breaks them (negative), against the real process. Strategies come from
schemathesis and run under hypothesis directly (its pytest plugin does not load on pytest 9)."""

from __future__ import annotations

import pytest

pytest.importorskip("hypothesis", reason="a dev dependency: pip install -e '.[dev]' (.ci/run does)")
pytest.importorskip("schemathesis", reason="a dev dependency: pip install -e '.[dev]' (.ci/run does)")

from collections.abc import Iterator
from typing import Any

import httpx2
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from anthropic_gateway.http.table import ENDPOINTS
from anthropic_gateway.openapi import build_spec
from conftest import GatewayProcess
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk
from fuzz import check_response, examples

# Every operation of the document (from the route table, as /openapi.json is), and how many examples
# per generation mode each gets in CI: the request bodies most, operations without input a few.
_PATHS = build_spec(ENDPOINTS)["paths"]
OPERATIONS = sorted((m.upper(), p) for p, ops in _PATHS.items() for m in ops)


def _breakable(op: dict[str, Any]) -> bool:
    """Negative data needs an input with constraints to break: a body, or a parameter that is not any string."""
    return "requestBody" in op or any(p["schema"] != {"type": "string"} for p in op.get("parameters", ()))


CASES = [(m, p, mode) for m, p in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode is GenerationMode.POSITIVE or _breakable(_PATHS[p][m.lower()])]
EXAMPLES = {("POST", "/v1/messages"): 12, ("POST", "/v1/messages/stream"): 8,
            ("POST", "/v1/messages/count_tokens"): 12, ("GET", "/v1/models"): 15, ("GET", "/v1/models/{model_id}"): 15}
DEFAULT_EXAMPLES = 5


def _count(method: str, path: str, mode: GenerationMode) -> int:
    n = EXAMPLES.get((method, path), DEFAULT_EXAMPLES)
    return n if mode is GenerationMode.POSITIVE else max(2, n // 4)  # negative data is slow to generate


@pytest.fixture(scope="module")
def served_schema(fuzz_gateway: GatewayProcess) -> schemathesis.BaseSchema:
    document = httpx2.get(fuzz_gateway.url + "/openapi.json", timeout=30).json()
    return schemathesis.openapi.from_dict(document)


@pytest.fixture(scope="module")
def upstream_answers(_upstream_server: FakeUpstream) -> Iterator[None]:
    _upstream_server.reset()
    _upstream_server.always(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    yield
    _upstream_server.reset()


def test_the_document_lists_every_operation(served_schema: schemathesis.BaseSchema) -> None:
    found = {(r.ok().method.upper(), r.ok().path) for r in served_schema.get_all_operations()}
    assert found == set(OPERATIONS) and set(EXAMPLES) <= found


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_every_operation(
    served_schema: schemathesis.BaseSchema, fuzz_gateway: GatewayProcess, upstream_answers: None,
    method: str, path: str, mode: GenerationMode,
) -> None:
    operation = served_schema[path][method]

    @settings(max_examples=examples(_count(method, path, mode)), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=fuzz_gateway.url, timeout=60)
        headers = {k.lower(): v[0] for k, v in response.headers.items()}
        check_response(response.status_code, headers, response.content, f"{method} {case.formatted_path} {case.body!r:.300}")

    run()
