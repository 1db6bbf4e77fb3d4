"""State shared by several gateway replicas: the Redis connection (``redis_url``) and its health."""

from anthropic_gateway.shared.redis_state import RedisState

__all__ = ["RedisState"]
