"""docs/compatibility.md must name every request field and content block the schema knows."""

from __future__ import annotations

from pathlib import Path

import msgspec

from anthropic_gateway import schemas

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
