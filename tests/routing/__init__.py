"""Tests for issue 4: routing and model configuration (aliases, backends, parameters, limits,
fallbacks, /v1/models)."""
