"""Anthropic's ``web_search`` server tool on any model (Claude Code's WebSearch).

Claude Code runs WebSearch as a separate request whose only tool is
``{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}`` and reads the answer's
``server_tool_use`` and ``web_search_tool_result`` blocks, the text and its citations.

- OpenRouter backends: the request goes out with OpenRouter's ``web`` plugin (``plan.py``); the
  answer's ``url_citation`` annotations become the search blocks and the text's citations
  (``blocks.py``).
- Other backend kinds: the gateway runs the search on a SearXNG-compatible JSON endpoint
  (``web_search_url``) and gives the model the results as context (``searxng.py``); without that
  setting the request is a 400 naming it.
- The search answer is read whole and, when the client asked for a stream, sent as the equivalent
  Anthropic event sequence (``stream.py``). ``service.py`` is the entry point.

Replayed on a later turn, the blocks go back to the upstream as plain text (the results' titles,
URLs and, from the gateway's own ``encrypted_content``, their snippets).
"""

from anthropic_gateway.websearch.plan import find_web_search

__all__ = ["find_web_search"]
