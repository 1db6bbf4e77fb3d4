"""Offline input-token counting for ``/v1/messages/count_tokens`` and stream usage estimates.

Public API::

    count_request_tokens(req, model) -> int   # the whole request, as the upstream model sees it
    count_text_tokens(text, model) -> int     # one string, no chat overhead
    warm_up(model) -> None                    # load the tokenizer now (blocking)
    start_warm_up(model) -> threading.Thread  # ... in a daemon thread, e.g. from the lifespan

``model`` is the upstream model id the request routes to; it picks the tokenizer and the chat-format
overheads (``families.py``). The tokenizer loads lazily from files shipped in the package, never
from the network; loading costs ~10 ms once for o200k with the C extension (~0.25 s with tiktoken, and
for cl100k), so a server may call :func:`start_warm_up` at start-up to keep it off the first request
without delaying readiness.
"""

from __future__ import annotations

import threading

from anthropic_gateway.tokens.counter import clear_cache, count_request_tokens, count_text_tokens
from anthropic_gateway.tokens.families import Family, family_for_model
from anthropic_gateway.tokens.vocab import get_tokenizer, is_loaded


def warm_up(model: str) -> None:
    get_tokenizer(family_for_model(model).encoding)


def is_ready(model: str) -> bool:
    """Whether counting for `model` can start without loading a tokenizer first."""
    return is_loaded(family_for_model(model).encoding)


def start_warm_up(model: str) -> threading.Thread:
    thread = threading.Thread(target=warm_up, args=(model,), name="tokenizer-warm-up", daemon=True)
    thread.start()
    return thread


__all__ = [
    "Family",
    "clear_cache",
    "count_request_tokens",
    "count_text_tokens",
    "family_for_model",
    "is_ready",
    "start_warm_up",
    "warm_up",
]
