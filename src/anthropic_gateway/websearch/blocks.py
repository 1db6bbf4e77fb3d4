"""The answer side of a web search (pure): Anthropic's search blocks and citations.

    with_search(message, query, results, annotations)

puts a ``server_tool_use`` block (``srvtoolu_…``, ``{"query": …}``) and its ``web_search_tool_result``
before the text, turns the upstream's URL annotations into ``web_search_result_location`` citations
on the text, and counts the search in ``usage.server_tool_use.web_search_requests``. Each result's
``encrypted_content`` is the gateway's own opaque value (its URL, title and snippet), read back by
``replay_text`` when a later turn replays the block.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from anthropic_gateway import ids

PREFIX = "agws1."  # marks encrypted_content the gateway minted
MAX_CITED = 150  # Anthropic's cited_text is at most 150 characters
MAX_SNIPPET = 2000


@dataclass(frozen=True, slots=True)
class Result:
    url: str
    title: str
    snippet: str = ""
    page_age: str | None = None


def encode_result(r: Result) -> str:
    payload = {"u": r.url, "t": r.title, "c": r.snippet[:MAX_SNIPPET]}
    return PREFIX + base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_result(value: Any) -> dict[str, str] | None:
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return None
    data = value[len(PREFIX):]
    try:
        out = orjson.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return out if isinstance(out, dict) else None


def _citation_fields(a: Any) -> dict[str, Any] | None:
    """One OpenRouter annotation → its url_citation fields (nested, or flat in some providers)."""
    if not isinstance(a, dict) or a.get("type") != "url_citation":
        return None
    inner = a.get("url_citation")
    fields = inner if isinstance(inner, dict) else a
    return fields if isinstance(fields.get("url"), str) and fields["url"] else None


def results_from_annotations(annotations: Any) -> list[Result]:
    """The distinct URLs the upstream cited, in order of first citation."""
    seen: dict[str, Result] = {}
    for a in annotations if isinstance(annotations, list) else ():
        f = _citation_fields(a)
        if f is None or f["url"] in seen:
            continue
        title, snippet = f.get("title"), f.get("content")
        seen[f["url"]] = Result(f["url"], title if isinstance(title, str) and title else f["url"],
                                snippet if isinstance(snippet, str) else "")  # fmt: skip
    return list(seen.values())


def search_blocks(query: str, results: list[Result], name: str = "web_search") -> list[dict[str, Any]]:
    tool_id = ids.server_tool_use_id()
    return [
        {"type": "server_tool_use", "id": tool_id, "name": name, "input": {"query": query}},
        {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": [
            {"type": "web_search_result", "url": r.url, "title": r.title, "encrypted_content": encode_result(r),
             "page_age": r.page_age}
            for r in results
        ]},
    ]  # fmt: skip


def _citation(r: Result, index: int, cited: str) -> dict[str, Any]:
    enc = base64.urlsafe_b64encode(orjson.dumps({"i": index, "u": r.url})).decode().rstrip("=")
    return {"type": "web_search_result_location", "url": r.url, "title": r.title, "encrypted_index": enc,
            "cited_text": (cited or r.snippet or r.title)[:MAX_CITED]}  # fmt: skip


def cite(text: str, annotations: Any, results: list[Result]) -> list[dict[str, Any]]:
    """The text as Anthropic text blocks: each annotated span its own block with its citation."""
    where = {r.url: i for i, r in enumerate(results)}
    spans: list[tuple[int, int, int]] = []
    unplaced: list[int] = []
    for a in annotations if isinstance(annotations, list) else ():
        f = _citation_fields(a)
        if f is None or f["url"] not in where:
            continue
        start, end = f.get("start_index"), f.get("end_index")
        if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text):
            spans.append((start, end, where[f["url"]]))
        elif where[f["url"]] not in unplaced:
            unplaced.append(where[f["url"]])
    blocks: list[dict[str, Any]] = []
    at = 0
    for start, end, i in sorted(spans):
        if start < at:
            continue  # overlapping spans: the first one wins
        if start > at and not text[at:start].strip() and blocks:
            blocks[-1]["text"] += text[at:start]  # whitespace between two citations: no block of its own
        elif start > at:
            blocks.append({"type": "text", "text": text[at:start]})
        blocks.append({"type": "text", "text": text[start:end], "citations": [_citation(results[i], i, text[start:end])]})
        at = end
    if at < len(text):
        blocks.append({"type": "text", "text": text[at:]})
    if unplaced and blocks:
        last = blocks[-1]
        last.setdefault("citations", []).extend(_citation(results[i], i, "") for i in unplaced)
    return blocks


def with_search(message: dict[str, Any], query: str, results: list[Result], annotations: Any = None,
                requests: int = 1) -> dict[str, Any]:  # fmt: skip
    """The upstream's answer as the answer of a search: search blocks first (after any thinking),
    then the text with citations, then whatever else it holds."""
    content = message["content"]
    thinking = [b for b in content if b["type"] in ("thinking", "redacted_thinking")]
    text = "".join(b["text"] for b in content if b["type"] == "text")
    rest = [b for b in content if b["type"] not in ("thinking", "redacted_thinking", "text")]
    message["content"] = [*thinking, *search_blocks(query, results), *cite(text, annotations, results), *rest]
    usage = message["usage"]
    reported = (usage.get("server_tool_use") or {}).get("web_search_requests") or 0
    usage["server_tool_use"] = {"web_search_requests": max(reported, requests)}
    return message


def replay_text(block_content: Any) -> str:
    """A replayed web_search_tool_result as text for the upstream: titles, URLs, snippets."""
    items = block_content if isinstance(block_content, list) else []
    lines: list[str] = []
    for r in items:
        if not isinstance(r, dict) or not r.get("url"):
            continue
        lines.append(f"- {r.get('title', '')} {r.get('url', '')}")
        snippet = (decode_result(r.get("encrypted_content")) or {}).get("c")
        if snippet:
            lines.append(f"  {snippet}")
    return "[web search results]\n" + "\n".join(lines) if lines else "[web search returned no results]"
