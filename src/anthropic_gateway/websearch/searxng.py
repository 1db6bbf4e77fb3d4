"""The gateway's own web search for backends without one: a SearXNG-compatible JSON endpoint.

    GET {web_search_url}?q=QUERY&format=json  →  {"results": [{"url", "title", "content", "publishedDate"?}, ...]}

The results (filtered by the tool's allowed / blocked domains, at most ``max_uses`` of them) are
given to the model as context in the last user message, and become the answer's search blocks.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import msgspec

from anthropic_gateway.errors import APIError
from anthropic_gateway.schemas import MessagesRequest, TextBlock, Tool, ToolChoiceTool
from anthropic_gateway.websearch.blocks import MAX_SNIPPET, Result
from anthropic_gateway.websearch.plan import MAX_RESULTS, is_web_search

log = logging.getLogger(__name__)

TIMEOUT = 15.0
MAX_BODY = 4 * 1024 * 1024


def _host_matches(url: str, domains: list[str]) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == d.lower().lstrip(".") or host.endswith("." + d.lower().lstrip(".")) for d in domains)


def parse_results(data: Any, tool: Tool) -> list[Result]:
    """SearXNG's JSON → results, filtered and capped as the tool asks."""
    items = data.get("results") if isinstance(data, dict) else None
    out: list[Result] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("url"), str) or not item["url"]:
            continue
        url = item["url"]
        if tool.allowed_domains and not _host_matches(url, tool.allowed_domains):
            continue
        if tool.blocked_domains and _host_matches(url, tool.blocked_domains):
            continue
        title, snippet, age = item.get("title"), item.get("content"), item.get("publishedDate")
        out.append(Result(url, title if isinstance(title, str) and title else url,
                          snippet[:MAX_SNIPPET] if isinstance(snippet, str) else "",
                          age if isinstance(age, str) else None))  # fmt: skip
        if len(out) >= min(tool.max_uses or MAX_RESULTS, MAX_RESULTS):
            break
    return out


async def search(url: str, query: str, tool: Tool) -> list[Result]:
    import aiohttp  # loaded lazily, as for the upstream client

    params, headers = {"q": query, "format": "json"}, {"accept": "application/json"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
            session.get(url, params=params, headers=headers) as resp,
        ):
            raw = await resp.content.read(MAX_BODY)
            if resp.status != 200:
                raise APIError(f"The web search backend answered HTTP {resp.status}", status=502)
    except (aiohttp.ClientError, TimeoutError) as err:
        log.warning("web search backend failed: %r", err)
        raise APIError("The web search backend (web_search_url) could not be reached", status=502) from None
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise APIError("The web search backend did not answer JSON (is format=json enabled?)", status=502) from None
    return parse_results(data, tool)


def context_text(query: str, results: list[Result]) -> str:
    if not results:
        return f'A web search for "{query}" found nothing.'
    lines = [f'Web search results for "{query}" (cite the URLs you use):']
    for n, r in enumerate(results, 1):
        lines.append(f"\n[{n}] {r.title}\n{r.url}" + (f"\n{r.snippet}" if r.snippet else ""))
    return "\n".join(lines)


def with_results(req: MessagesRequest, query: str, results: list[Result]) -> MessagesRequest:
    """The request without the search tool, its last user message followed by the results."""
    tools = [t for t in req.tools or () if not is_web_search(t)]
    choice = req.tool_choice
    if not tools or (isinstance(choice, ToolChoiceTool) and not any(t.name == choice.name for t in tools)):
        choice = None
    messages = list(req.messages)
    last = messages[-1]
    extra = TextBlock(text=context_text(query, results))
    content = [TextBlock(text=last.content), extra] if isinstance(last.content, str) else [*last.content, extra]
    if last.role == "user":
        messages[-1] = msgspec.structs.replace(last, content=content)
    return msgspec.structs.replace(req, tools=tools or None, tool_choice=choice, messages=messages)
