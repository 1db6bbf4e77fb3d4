"""docs/compatibility.md must name every request field and content block the schema knows, and GET /'s
compatibility summary must be the document's tables."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import msgspec

from anthropic_gateway import compatibility, schemas
from conftest import GatewayProcess

DOC = (Path(__file__).parents[1] / "docs" / "compatibility.md").read_text()


def test_every_request_field_is_documented() -> None:
    fields = [f.encode_name for f in msgspec.structs.fields(schemas.MessagesRequest)]
    assert len(fields) >= 20
    missing = [f for f in fields if f"`{f}`" not in DOC]
    assert missing == []


def test_every_block_type_is_documented() -> None:
    tags = {t.__struct_config__.tag for t in schemas.ContentBlock.__args__}
    assert tags == schemas.KNOWN_BLOCK_TYPES
    missing = sorted(t for t in tags if f"`{t}`" not in DOC)
    assert missing == []


def _doc_tables() -> dict[str, list[tuple[str, str]]]:
    """Each "## " section's table rows as (first cell without backticks, policy)."""
    tables: dict[str, list[tuple[str, str]]] = {}
    heading = ""
    for line in DOC.splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
        m = re.match(r"^\| (.+?) \| ([a-z]+) \|", line)
        if m and m.group(2) != "policy":  # every row but the header; an unknown policy is a mismatch below
            tables.setdefault(heading, []).append((m.group(1).replace("`", ""), m.group(2)))
    return tables


def test_the_root_routes_summary_is_the_documents_tables() -> None:
    """GET / shows compatibility.py's data: it must be the document's, row for row. When this fails,
    change src/anthropic_gateway/compatibility.py together with docs/compatibility.md."""
    tables = _doc_tables()
    assert set(tables) == {"Request fields", "Messages"}
    assert list(compatibility.REQUEST_FIELDS) == tables["Request fields"]
    assert list(compatibility.MESSAGES) == tables["Messages"]


def test_the_root_route_shows_the_summary(gateway: GatewayProcess) -> None:
    body = httpx2.get(gateway.url + "/").json()
    assert body["compatibility"] == compatibility.summary()
    fields = body["compatibility"]["request_fields"]
    assert fields["refused"] == ["mcp_servers"] and "speed" in fields["ignored"] and "tools" in fields["translated"]
    assert "unknown block types" in body["compatibility"]["messages"]["ignored"]
    assert {"GET /health", "GET /health/ready", "GET /health/detailed", "GET /metrics"} <= set(body["endpoints"])
