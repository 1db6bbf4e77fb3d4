"""Shared fixtures: the fake upstream, the real gateway process and SDK clients pointed at it.

- ``upstream``: the session's :class:`FakeUpstream`, reset before every test.
- ``gateway``: the real ``python -m anthropic_gateway serve`` process for the session, configured
  with ``GATEWAY_ENV`` and pointed at the fake upstream; its stdout and stderr go to a log file.
- ``client`` / ``async_client``: official ``anthropic`` SDK clients for that gateway, no retries.
- ``openrouter_gateway`` / ``openrouter_client``: the same with the backend kind forced to
  ``openrouter`` (for OpenRouter-only behaviour such as ``reasoning_details`` and ``cache_control``).
- ``spawn_gateway``: start another, differently configured gateway for one test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import pytest

import engines
from engines import _postgres_server, postgres_url, store_url  # noqa: F401  (fixtures)
from fake_upstream import FakeUpstream

# A suite started in the background of a non-interactive shell (`bash script &`) inherits SIGINT
# ignored, and every gateway it spawns would too: uvicorn's re-raised SIGINT would then do nothing and
# the lifecycle tests' exit status 130 would read 0. A handler here is reset to the default on exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

UPSTREAM_KEY = "sk-upstream-test-secret-123"
CLIENT_KEY = "test-key"
OPUS, SONNET, HAIKU = "test/opus", "test/sonnet", "test/haiku"

GATEWAY_ENV: dict[str, str] = {
    "ANTHROPIC_GATEWAY_UPSTREAM_KEY": UPSTREAM_KEY,
    "ANTHROPIC_GATEWAY_OPUS_MODEL": OPUS,
    "ANTHROPIC_GATEWAY_SONNET_MODEL": SONNET,
    "ANTHROPIC_GATEWAY_HAIKU_MODEL": HAIKU,
    "ANTHROPIC_GATEWAY_LOG_LEVEL": "debug",
    # The session gateways serve every test: a remembered upstream 4xx would leak from one test into
    # the next that sends the same body. Tests of that memory spawn their own gateway.
    "ANTHROPIC_GATEWAY_NEGATIVE_CACHE_TTL": "0",
}

STARTUP_TIMEOUT = 20.0


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=CLIENT_KEY, max_retries=0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_environ() -> dict[str, str]:
    """The test process's environment without any gateway or upstream-key settings."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("ANTHROPIC_") and k.upper() not in ("OPENROUTER_API_KEY",)
    }


class PortTaken(RuntimeError):
    """The port free_port() gave was bound by another process first (another test run on the
    machine): the gateway that answers there is not this one."""


def _listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``port`` (Linux /proc; True where
    that cannot be told)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
        with open("/proc/net/tcp") as table:
            rows = table.read().splitlines()[1:]
    except OSError:
        return True
    held = set()
    for fd in fds:
        with contextlib.suppress(OSError):  # closed meanwhile (listdir's own descriptor among them)
            held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    for row in rows:
        cols = row.split()
        if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port and f"socket:[{cols[9]}]" in held:
            return True
    return False


def _wait_until_ready(gw: GatewayProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if gw.proc.poll() is not None:
            log = gw.log_text()
            if "address already in use" in log.lower():
                raise PortTaken(f"port {gw.port} was taken:\n{log}")
            raise RuntimeError(f"gateway exited with {gw.proc.returncode} at start-up:\n{log}")
        try:
            with urllib.request.urlopen(gw.url + "/", timeout=1.0) as resp:
                if resp.status == 200:
                    if not _listens_on(gw.proc.pid, gw.port):
                        raise PortTaken(f"port {gw.port} answers, but not from this gateway")
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"gateway did not answer GET / with 200 within {STARTUP_TIMEOUT}s:\n{gw.log_text()}")


def start_gateway(
    log_path: Path,
    *,
    upstream_url: str,
    env: dict[str, str],
    cwd: Path,
    extra_args: tuple[str, ...] = (),
    wait: bool = True,
) -> GatewayProcess:
    """Start ``python -m anthropic_gateway serve`` with exactly ``env`` as its gateway settings (on
    another free port when another process took the first one meanwhile)."""
    for attempt in range(3):
        try:
            return _start_gateway(log_path, upstream_url=upstream_url, env=env, cwd=cwd,
                                  extra_args=extra_args, wait=wait)  # fmt: skip
        except PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_gateway(
    log_path: Path,
    *,
    upstream_url: str,
    env: dict[str, str],
    cwd: Path,
    extra_args: tuple[str, ...],
    wait: bool,
) -> GatewayProcess:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "anthropic_gateway",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--upstream-url",
        upstream_url,
        *extra_args,
    ]
    # Each gateway keeps its store beside its log, never in the user's data directory; it does not
    # probe its backends nor fetch a model catalogue (either would take a reply queued for a test:
    # the fake answers in queue order whatever the path) unless the test asks.
    defaults = {"ANTHROPIC_GATEWAY_DATABASE_URL": engines.gateway_database_url() or str(log_path.with_suffix(".db")),
                "ANTHROPIC_GATEWAY_HEALTH_PROBE_INTERVAL": "0",
                "ANTHROPIC_GATEWAY_CATALOGUE_REFRESH_HOURS": "0"}  # fmt: skip
    full_env = {**_clean_environ(), **defaults, **env, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
    gw = GatewayProcess(proc, port, log_path)
    if wait:
        try:
            _wait_until_ready(gw)
        except BaseException:
            stop_gateway(gw)
            raise
    return gw


def stop_gateway(gw: GatewayProcess) -> None:
    if gw.proc.poll() is None:
        gw.proc.terminate()
        try:
            gw.proc.wait(10)
        except subprocess.TimeoutExpired:
            gw.proc.kill()
            gw.proc.wait(10)


@pytest.fixture(scope="session")
def _upstream_server() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def upstream(_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    _upstream_server.reset()
    yield _upstream_server
    _upstream_server.reset()


@pytest.fixture(scope="session")
def gateway(
    _upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("gateway")
    gw = start_gateway(
        workdir / "gateway.log", upstream_url=_upstream_server.base_url, env=GATEWAY_ENV, cwd=workdir
    )
    yield gw
    stop_gateway(gw)


@pytest.fixture(scope="session")
def openrouter_gateway(
    _upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A second session gateway that treats the fake as OpenRouter (``BACKEND_KIND=openrouter``)."""
    workdir = tmp_path_factory.mktemp("openrouter-gateway")
    env = {**GATEWAY_ENV, "ANTHROPIC_GATEWAY_BACKEND_KIND": "openrouter"}
    gw = start_gateway(workdir / "gateway.log", upstream_url=_upstream_server.base_url, env=env, cwd=workdir)
    yield gw
    stop_gateway(gw)


@pytest.fixture
def openrouter_client(
    openrouter_gateway: GatewayProcess, upstream: FakeUpstream
) -> Iterator[anthropic.Anthropic]:
    with openrouter_gateway.client() as c:
        yield c


@pytest.fixture
def client(gateway: GatewayProcess, upstream: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    with gateway.client() as c:
        yield c


@pytest.fixture
async def async_client(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


SpawnGateway = Callable[..., GatewayProcess]


@pytest.fixture
def spawn_gateway(
    tmp_path: Path, _upstream_server: FakeUpstream, request: pytest.FixtureRequest
) -> Iterator[SpawnGateway]:
    """``spawn_gateway(env={...}, upstream_url=None, extra_args=())`` starts a gateway for this test.

    ``env`` replaces ``GATEWAY_ENV`` entirely (pass ``{**GATEWAY_ENV, ...}`` to extend it). When the
    test fails, the end of each spawned gateway's log is added to the failure's report.
    """
    started: list[GatewayProcess] = []
    request.node.stash[SPAWNED] = started

    def spawn(
        env: dict[str, str],
        upstream_url: str | None = None,
        extra_args: tuple[str, ...] = (),
        wait: bool = True,
    ) -> GatewayProcess:
        n = len(started)
        gw = start_gateway(
            tmp_path / f"gateway-{n}.log",
            upstream_url=upstream_url or _upstream_server.base_url,
            env=env,
            cwd=tmp_path,
            extra_args=extra_args,
            wait=wait,
        )
        started.append(gw)
        return gw

    yield spawn
    for gw in started:
        with contextlib.suppress(Exception):
            stop_gateway(gw)


# --- Redis (redis_url): the shared server at 127.0.0.1:6379 with a prefix of the test's own ---------


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix for this test in the shared Redis; every key under it is deleted afterwards."""
    from redis_support import delete_prefix, new_prefix, redis_unavailable

    why = redis_unavailable()
    if why is not None:
        if os.environ.get("CI") == "true":  # CI starts Redis: its absence is a failure there
            pytest.fail(why)
        pytest.skip(why)
    prefix = new_prefix()
    yield prefix
    delete_prefix(prefix)


@pytest.fixture(params=["memory", "redis"])
def state_backend(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The settings that put a gateway's shared state in memory (none) or in Redis (a prefix of the
    test's own): a suite whose ``spawn_gateway`` adds them runs once for each."""
    if request.param == "memory":
        yield {}
        return
    from redis_support import REDIS_URL

    prefix = request.getfixturevalue("redis_prefix")
    yield {"ANTHROPIC_GATEWAY_REDIS_URL": REDIS_URL, "ANTHROPIC_GATEWAY_REDIS_PREFIX": prefix}


def with_state_backend(spawn: SpawnGateway, extra: dict[str, str]) -> SpawnGateway:
    def spawn_with(env: dict[str, str], *args: object, **kw: object) -> GatewayProcess:
        return spawn({**env, **extra}, *args, **kw)

    return spawn_with


SPAWNED = pytest.StashKey[list[GatewayProcess]]()
LOG_TAIL_LINES = 60


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A failed test that spawned gateways reports the end of their logs (the SQLite driver's debug
    lines left out): a failure seen once under load (a flake) can then be read, not only rerun."""
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        for gw in item.stash.get(SPAWNED, []):
            with contextlib.suppress(OSError):
                lines = [ln for ln in gw.log_text().splitlines() if " DEBUG aiosqlite: " not in ln]
                tail = lines[-LOG_TAIL_LINES:]
                report.sections.append((f"{gw.log_path.name} (port {gw.port}, last {len(tail)} lines)", "\n".join(tail)))
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    engines.SESSION.stop()  # the session's PostgreSQL database, if one was made
