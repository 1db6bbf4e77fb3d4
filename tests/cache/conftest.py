"""This suite's gateways run once with their state in memory and once in Redis (redis_url)."""

from __future__ import annotations

import pytest

from conftest import SpawnGateway, with_state_backend


@pytest.fixture
def spawn_gateway(spawn_gateway: SpawnGateway, state_backend: dict[str, str]) -> SpawnGateway:
    return with_state_backend(spawn_gateway, state_backend)
