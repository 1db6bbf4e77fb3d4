"""anthropic-gateway: the Anthropic Messages API on top of OpenRouter and OpenAI-compatible backends."""

__version__ = "0.1.0"
