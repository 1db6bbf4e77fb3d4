"""The response cache: exact-match answers (key.py), kept in a store (store.py), served as JSON or
replayed as SSE (replay.py, streams.py), in front of MessagesService (service.py)."""

from anthropic_gateway.cache.service import ResponseCache
from anthropic_gateway.cache.store import CacheStore, MemoryStore

__all__ = ["CacheStore", "MemoryStore", "ResponseCache"]
