"""Fixtures for the routing tests.

- ``upstream_b``: a second scripted fake upstream (its own FakeUpstream instance, reset per test),
  beside the session's ``upstream``;
- ``slow_server``: a tiny raw asyncio HTTP server that holds back its response headers (for the
  first-byte timeout), counting the requests it received;
- ``closed_url``: a base URL on a loopback port nothing listens on (connection refused);
- ``routed_gateways``: two real gateway processes (retries 0 and retries 1) configured through
  ``ANTHROPIC_GATEWAY_BACKENDS`` / ``ANTHROPIC_GATEWAY_MODELS`` JSON, shared by a module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import GatewayProcess, start_gateway, stop_gateway
from fake_upstream import FakeUpstream, completion

DEFAULT_KEY = "sk-default-routing-key"
ALPHA_KEY = "sk-alpha-routing-key"
BETA_KEY = "sk-beta-routing-key"
FIRST_BYTE_TIMEOUT = 0.4
SLOW_HEADER_DELAY = 3.0


# --- a second fake upstream ------------------------------------------------------------------


@pytest.fixture(scope="session")
def _second_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def upstream_b(_second_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    _second_upstream.reset()
    yield _second_upstream
    _second_upstream.reset()


# --- a server that delays its response headers -------------------------------------------------


@dataclass
class SlowServer:
    """Answers POSTs with a valid chat completion, but only after ``delay`` seconds of silence."""

    delay: float = SLOW_HEADER_DELAY
    port: int = 0
    arrivals: list[float] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.AbstractServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def reset(self) -> None:
        with self._lock:
            self.arrivals.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            with self._lock:
                self.arrivals.append(time.monotonic())
            await asyncio.sleep(self.delay)
            body = json.dumps(completion("too late")).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in tasks:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="slow-server", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the slow server did not start"

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@pytest.fixture(scope="session")
def _slow_server() -> Iterator[SlowServer]:
    server = SlowServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def slow_server(_slow_server: SlowServer) -> Iterator[SlowServer]:
    _slow_server.reset()
    yield _slow_server
    _slow_server.reset()


# --- a port that refuses connections -----------------------------------------------------------


@pytest.fixture(scope="session")
def closed_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens there any more: connecting is refused at once.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the 'closed' port accepted a connection"
    return f"http://127.0.0.1:{port}/v1"


# --- gateways configured with several backends -------------------------------------------------


def routing_config(alpha_url: str, beta_url: str, dead_url: str, slow_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(backends, models) of the end-to-end gateways.

    The default backend (upstream_url) is the session fake too, but with its own key, so the
    Authorization header tells it apart from ``alpha``.
    """
    backends = {
        "alpha": {"url": alpha_url, "kind": "openrouter", "key_env": "ROUTING_ALPHA_KEY",
                  "headers": {"X-OpenRouter-Title": "routing-tests"}},
        "beta": {"url": beta_url, "kind": "openai", "key_env": "ROUTING_BETA_KEY"},
        "dead": {"url": dead_url, "kind": "openai-compatible", "key_env": "ROUTING_BETA_KEY"},
        "slow": {"url": slow_url, "kind": "openai-compatible", "key_env": "ROUTING_BETA_KEY",
                 "first_byte_timeout": FIRST_BYTE_TIMEOUT},
    }  # fmt: skip
    models = {
        "fast": {"backend": "alpha", "model": "vendor/fast-model"},
        "smart": {"backend": "beta", "model": "gpt-4o"},
        "compat": {"backend": "dead", "model": "local-model"},
        "claude-*haiku*": {"backend": "alpha", "model": "vendor/small-model", "max_output_tokens": 8192},
        "tiny": {"backend": "alpha", "model": "vendor/tiny-model", "max_output_tokens": 1500},
        "ctx": {"backend": "alpha", "model": "vendor/ctx-model", "max_output_tokens": 100000,
                "context_window": 30000},
        "text-only": {"backend": "beta", "model": "vendor/text-model", "capabilities": ["reasoning"]},
        "gem": {"backend": "alpha", "model": "google/gemini-2.5-flash"},
        "tuned": {"backend": "alpha", "model": "vendor/tuned-model",
                  "defaults": {"temperature": 0.3, "seed": 7, "top_p": 0.9},
                  "force": {"frequency_penalty": 0.5, "provider": {"order": ["forced-provider"]}}},
        "busy": {"backend": "alpha", "model": "vendor/busy-model", "fallbacks": ["smart"]},
        "busy-alone": {"backend": "alpha", "model": "vendor/busy-model"},
        "to-dead": {"backend": "dead", "model": "vendor/dead-model", "fallbacks": ["smart"]},
        "dead-alone": {"backend": "dead", "model": "vendor/dead-model"},
        "to-slow": {"backend": "slow", "model": "vendor/slow-model", "fallbacks": ["smart"]},
        "slow-alone": {"backend": "slow", "model": "vendor/slow-model"},
        "chain": {"backend": "alpha", "model": "vendor/chain-model", "fallbacks": ["to-dead", "fast"]},
        "vision-first": {"backend": "alpha", "model": "vendor/vision-model", "fallbacks": ["text-only", "smart"]},
    }  # fmt: skip
    return backends, models


def routing_env(alpha_url: str, beta_url: str, dead_url: str, slow_url: str, **settings: str) -> dict[str, str]:
    backends, models = routing_config(alpha_url, beta_url, dead_url, slow_url)
    env = {
        "ANTHROPIC_GATEWAY_UPSTREAM_KEY": DEFAULT_KEY,
        "ANTHROPIC_GATEWAY_BACKEND_KIND": "openai-compatible",
        "ANTHROPIC_GATEWAY_OPUS_MODEL": "tier/opus",
        "ANTHROPIC_GATEWAY_SONNET_MODEL": "tier/sonnet",
        "ANTHROPIC_GATEWAY_HAIKU_MODEL": "tier/haiku",
        "ANTHROPIC_GATEWAY_LOG_LEVEL": "debug",
        "ANTHROPIC_GATEWAY_NEGATIVE_CACHE_TTL": "0",  # shared across tests: no remembered 4xx (see GATEWAY_ENV)
        "ANTHROPIC_GATEWAY_BACKENDS": json.dumps(backends),
        "ANTHROPIC_GATEWAY_MODELS": json.dumps(models),
        "ROUTING_ALPHA_KEY": ALPHA_KEY,
        "ROUTING_BETA_KEY": BETA_KEY,
    }
    env.update({"ANTHROPIC_GATEWAY_" + k.upper(): v for k, v in settings.items()})
    return env


@dataclass
class Gateways:
    no_retry: GatewayProcess  # retries = 0
    retry: GatewayProcess  # retries = 1, retry_max_wait = 2


@pytest.fixture(scope="module")
def routed_gateways(
    _upstream_server: FakeUpstream,
    _second_upstream: FakeUpstream,
    _slow_server: SlowServer,
    closed_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateways]:
    workdir: Path = tmp_path_factory.mktemp("routing-gateways")
    urls = (_upstream_server.base_url, _second_upstream.base_url, closed_url, _slow_server.base_url)
    started: list[GatewayProcess] = []
    try:
        for name, settings in (("no-retry", {"retries": "0"}), ("retry", {"retries": "1", "retry_max_wait": "2"})):
            started.append(start_gateway(workdir / f"{name}.log", upstream_url=_upstream_server.base_url,
                                         env=routing_env(*urls, **settings), cwd=workdir))  # fmt: skip
        yield Gateways(*started)
    finally:
        for gw in started:
            with contextlib.suppress(Exception):
                stop_gateway(gw)
