"""Health: background probes of every backend, readiness, and the masked configuration summary.

Each backend is probed with ``GET {url}/models`` and its key every ``health_probe_interval`` seconds,
in the background — never per request. A backend is *reachable* when its last probe got an HTTP
answer below 500 (a 401 is reachable: the network path works and the key is what to fix). The gateway
is ready once start-up is done, while it is not draining, unless every backend's last probe failed
(a backend not probed yet counts as reachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from anthropic_gateway.errors import GatewayError
from anthropic_gateway.routing import Backend
from anthropic_gateway.settings import Settings
from anthropic_gateway.upstream import UpstreamClient

log = logging.getLogger(__name__)

FIRST_PROBE_DELAY = 0.5  # after start-up (and after the warm-up given to start())
PROBE_TIMEOUT = 10.0

StatusProvider = Callable[[], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    reachable: bool  # an HTTP answer below 500
    ok: bool  # a 200
    status: int | None  # the HTTP status, None when nothing answered
    detail: str  # "ok", "HTTP 401", or why nothing answered (no key, no URL credentials: our own words)
    latency_ms: float
    at: float  # wall-clock time of the probe

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["at"] = iso_time(self.at)
        return d


def iso_time(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Prober:
    def __init__(self, upstream: UpstreamClient, backends: Sequence[Backend], interval: float,
                 timeout: float = PROBE_TIMEOUT) -> None:  # fmt: skip
        self.upstream = upstream
        self.backends = list(backends)
        self.interval = interval
        self.timeout = min(timeout, interval) if interval > 0 else timeout
        self.results: dict[str, ProbeResult] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self, after: Awaitable[object] | None = None) -> None:
        """Probe every interval; the first probe once ``after`` (the start-up's own work, e.g. the
        tokenizer's warm-up holding the GIL) is done, so a short timeout is not spent waiting for it."""
        if self.interval > 0 and self.backends:
            self._task = asyncio.create_task(self._run(after))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, after: Awaitable[object] | None) -> None:
        await asyncio.sleep(FIRST_PROBE_DELAY)
        if after is not None:
            await after
        while True:
            await self.probe_all()
            await asyncio.sleep(self.interval)

    async def probe_all(self) -> None:
        results = await asyncio.gather(*(self._probe(b) for b in self.backends))
        for backend, result in zip(self.backends, results, strict=True):
            previous = self.results.get(backend.name)
            if previous is None or previous.reachable != result.reachable:
                level = logging.INFO if result.reachable else logging.WARNING
                log.log(level, "backend %s: %s (%.0f ms)", backend.name, result.detail, result.latency_ms)
            self.results[backend.name] = result

    async def _probe(self, backend: Backend) -> ProbeResult:
        at, started = time.time(), time.perf_counter()
        try:
            status = await self.upstream.probe(backend, self.timeout)
        except GatewayError as err:
            return ProbeResult(False, False, None, err.message, _ms(started), at)
        except Exception as err:  # a probe must never end the probing
            return ProbeResult(False, False, None, f"probe failed ({type(err).__name__})", _ms(started), at)
        detail = "ok" if status == 200 else f"HTTP {status}"
        return ProbeResult(status < 500, status == 200, status, detail, _ms(started), at)

    def any_reachable(self) -> bool:
        """False only when every backend's last probe failed."""
        return not self.backends or any(
            b.name not in self.results or self.results[b.name].reachable for b in self.backends
        )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# --- the configuration summary -----------------------------------------------------------------

MASK = "***"
_SECRET_KEY = re.compile(r"(?:^|_)(?:keys?|token|secret|password|authorization|cookie)$", re.I)
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def config_summary(settings: Settings) -> dict[str, Any]:
    """Every setting, with secrets masked: key-like names and header values are never shown (a
    ``key_env`` shows the variable's name, which is not a secret), and URLs lose any credentials."""
    data = settings.model_dump(mode="json")
    return {k: _mask(k, v) for k, v in data.items()}


def _mask(name: str, value: Any) -> Any:
    if name == "headers" and isinstance(value, dict):
        return dict.fromkeys(value, MASK)
    if name != "key_env" and _SECRET_KEY.search(name) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, dict):
        return {k: _mask(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(name, v) for v in value]
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(MASK + "@", value)
    return value
