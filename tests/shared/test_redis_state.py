"""RedisState on a real Redis: up after start, down (with why) when nothing answers, and a pool
whose every connection is busy is this replica's load — not Redis down."""

from __future__ import annotations

import pytest

from anthropic_gateway.settings import load_settings
from anthropic_gateway.shared.redis_state import FAILURES, RedisState
from conftest import free_port
from redis_support import REDIS_URL


def _state(url: str, prefix: str, **env: str) -> RedisState:
    return RedisState(load_settings(environ={"ANTHROPIC_GATEWAY_REDIS_URL": url, "ANTHROPIC_GATEWAY_REDIS_PREFIX": prefix,
                                             **{f"ANTHROPIC_GATEWAY_{k.upper()}": v for k, v in env.items()}}))  # fmt: skip


async def test_up_once_started_and_keys_under_the_prefix(redis_prefix: str) -> None:
    state = _state(REDIS_URL, redis_prefix)
    await state.start()
    try:
        assert state.up is True and state.key("rl", "x") == redis_prefix + "rl:x"
        status = state.status()
        assert (status["up"], status["prefix"], status["times_down"], status["last_error"]) == (True, redis_prefix, 0, None)
    finally:
        await state.close()


async def test_nothing_listening_is_down_with_the_reason_and_no_password() -> None:
    state = _state(f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0", "gwtest:down:", redis_timeout="0.3")
    await state.start()
    try:
        status = state.status()
        assert status["up"] is False and status["last_error"]
        assert "hunter2-secret" not in repr(status) and status["url"].startswith("redis://***@127.0.0.1:")
    finally:
        await state.close()


async def test_a_pool_with_every_connection_busy_is_not_redis_down(redis_prefix: str) -> None:
    state = _state(REDIS_URL, redis_prefix, redis_pool_size="1", redis_timeout="0.3")
    await state.start()
    try:
        held = await state.pool.get_connection()  # the pool's one connection, busy
        with pytest.raises(FAILURES) as err:
            await state.client.get(state.key("x"))
        state.failed(err.value)
        assert state.up is True and state.status()["pool_exhausted"] == 1
        await state.pool.release(held)
        assert await state.client.get(state.key("x")) is None
    finally:
        await state.close()
