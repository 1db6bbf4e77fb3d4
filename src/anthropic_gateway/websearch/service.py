"""Answering a request that asks for Anthropic's web search (see the package docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anthropic_gateway.websearch import searxng
from anthropic_gateway.websearch.blocks import Result, with_search
from anthropic_gateway.websearch.plan import find_web_search, search_query
from anthropic_gateway.websearch.stream import MessageStream

if TYPE_CHECKING:
    from anthropic_gateway.auth import Client
    from anthropic_gateway.ops.record import RequestRecord
    from anthropic_gateway.schemas import MessagesRequest
    from anthropic_gateway.service import AnswerStream, Completed, MessagesService


def mentioned(message: dict[str, Any], results: list[Result]) -> list[dict[str, Any]]:
    """The results whose URL the answer names, as OpenRouter-style annotations (for citations)."""
    text = "".join(b["text"] for b in message["content"] if b["type"] == "text")
    return [{"type": "url_citation", "url": r.url, "title": r.title, "content": r.snippet}
            for r in results if r.url in text]  # fmt: skip


async def answer_search(
    service: MessagesService, req: MessagesRequest, *, client: Client, record: RequestRecord, stream: bool, size: int
) -> Completed | AnswerStream:
    """The upstream is asked without streaming (the search results come with the end of its answer);
    a client that asked for a stream gets the whole answer's events."""
    from anthropic_gateway.service import Completed

    tool = find_web_search(req)
    assert tool is not None
    route = service.resolve(req.model, record)
    url = service.settings.web_search_url
    if route.backend.kind.name != "openrouter" and url:
        query = search_query(req)
        results = await searxng.search(url, query, tool)
        plain = searxng.with_results(req, query, results)
        done = await service.answer(plain, client=client, record=record, stream=False, size=size, web_search=False)
        assert isinstance(done, Completed)
        message = with_search(done.message, query, results, mentioned(done.message, results))
    else:  # OpenRouter's web plugin (or, for other kinds, the 400 naming web_search_url)
        done = await service.answer(req, client=client, record=record, stream=False, size=size, web_search=False)
        assert isinstance(done, Completed)
        message = done.message
    record.stream = stream
    return MessageStream(message, record) if stream else Completed(message)
