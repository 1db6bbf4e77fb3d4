"""`anthropic-gateway claude [ARGS…]` and `anthropic-gateway env`: Claude Code pointed at this gateway.

`claude`: find `claude` on PATH → (``--version`` / ``--help``: run it at once, no gateway) → probe
``GET /`` on the configured address → if nothing answers, check that the models Claude Code will use
have an upstream key and start ``anthropic-gateway serve`` in the background (or use the gateway that
answers) → run `claude` with every argument and the environment from :func:`claude_env` → stop the
gateway it started → exit with Claude Code's exit code.

`env`: print the same environment as ``export`` / ``unset`` lines for ``eval "$(anthropic-gateway env)"``,
warning on stderr when no gateway answers at that address.

Exit codes of the launcher itself: 2 configuration error, 1 the gateway could not be started or
reached, 127 `claude` not installed; otherwise Claude Code's own (128 + N when killed by signal N).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Literal

from anthropic_gateway.settings import UPSTREAM_KEY_VARS, Settings, SettingsError, load_settings

INSTALL_HINT = "npm install -g @anthropic-ai/claude-code"
# Sent when the gateway asks clients for no key: Claude Code needs some credential to start.
DUMMY_TOKEN = "anthropic-gateway-no-key-needed"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# The model name Claude Code sends for each tier: names the gateway serves (it maps `claude-*` names by
# family, see routing.py), never the upstream id, so the gateway stays the one place that resolves them.
TIER_ALIASES: dict[str, str] = {
    "opus": "claude-opus-4-8",
    "sonnet": "claude-sonnet-5",
    "haiku": "claude-haiku-4-5",
}
# Arguments that make Claude Code print something and exit without calling the API: no gateway needed.
INFO_ARGS = frozenset({"-h", "--help", "-v", "--version"})
# Gateway secrets Claude Code has no use for: kept out of its environment (and so out of its tools').
_GATEWAY_SECRETS = (*UPSTREAM_KEY_VARS, "ANTHROPIC_GATEWAY_API_KEYS")


class LauncherError(Exception):
    """A one-line reason the launcher cannot go on, with the exit code to use."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- the environment Claude Code gets ----------------------------------------------------------


def claude_model_env(settings: Settings, explicitly_set: set[str]) -> dict[str, str]:
    """Claude Code's model variables, only for the tiers the user configured.

    Each value is a name the gateway serves for that tier. The haiku tier also becomes the small/fast
    model, so title and background requests go to it instead of the main model.
    """
    env: dict[str, str] = {}
    if "opus_model" in explicitly_set:
        env["ANTHROPIC_DEFAULT_OPUS_MODEL"] = TIER_ALIASES["opus"]
    if "sonnet_model" in explicitly_set:
        env["ANTHROPIC_DEFAULT_SONNET_MODEL"] = TIER_ALIASES["sonnet"]
    if "haiku_model" in explicitly_set:
        env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] = TIER_ALIASES["haiku"]
        env["ANTHROPIC_SMALL_FAST_MODEL"] = TIER_ALIASES["haiku"]
    return env


@dataclass(frozen=True)
class ClaudeEnv:
    """Variables to set and to remove, relative to the user's environment."""

    set: dict[str, str]
    unset: tuple[str, ...] = field(default=())

    def apply(self, environ: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in environ.items() if k not in self.unset}
        env.update(self.set)
        return env

    def shell_lines(self) -> list[str]:
        lines = [f"unset {name}" for name in self.unset]
        lines += [f"export {name}={shlex.quote(value)}" for name, value in self.set.items()]
        return lines


def base_url(settings: Settings) -> str:
    """The URL a local client reaches the gateway at (a wildcard bind is reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def claude_env(settings: Settings, explicitly_set: set[str], environ: Mapping[str, str]) -> ClaudeEnv:
    """What `claude` needs to use the gateway: base URL, key, configured tiers, no side traffic.

    The key goes in ANTHROPIC_AUTH_TOKEN (ANTHROPIC_API_KEY makes the interactive CLI ask the user to
    approve it, and a real Anthropic key would be sent to the gateway), so ANTHROPIC_API_KEY is removed.
    Model variables and the traffic switch the user already set are left alone.
    """
    env = {"ANTHROPIC_BASE_URL": base_url(settings)}
    unset: tuple[str, ...] = ("ANTHROPIC_API_KEY",)
    if settings.passthrough_auth:
        # The client's key is the upstream key: it must be the user's own, never one we print.
        if not environ.get("ANTHROPIC_AUTH_TOKEN") and not environ.get("ANTHROPIC_API_KEY"):
            raise LauncherError(
                "ANTHROPIC_GATEWAY_PASSTHROUGH_AUTH is on, so Claude Code must send your upstream key: "
                "export ANTHROPIC_AUTH_TOKEN=<your upstream key> first",
                exit_code=2,
            )
        unset = ()
    else:
        keys = settings.client_keys()
        env["ANTHROPIC_AUTH_TOKEN"] = keys[0] if keys else DUMMY_TOKEN
    for name, value in claude_model_env(settings, explicitly_set).items():
        if name not in environ:
            env[name] = value
    if "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC" not in environ:
        env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    return ClaudeEnv(env, unset)


# --- finding or starting the gateway -----------------------------------------------------------

Probe = Literal["gateway", "other", "nothing"]


def probe(url: str, timeout: float = 2.0) -> Probe:
    """Whether an anthropic-gateway answers ``GET /`` at `url`, something else does, or nothing."""
    try:
        # Never through an http_proxy from the environment: the gateway is on this machine.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url + "/", timeout=timeout) as resp:
            body = resp.read(65536)
            status = resp.status
    except urllib.error.HTTPError:
        return "other"
    except (urllib.error.URLError, OSError):
        return "nothing"
    try:
        data = json.loads(body)
    except ValueError:
        return "other"
    ok = status == 200 and isinstance(data, dict) and data.get("name") == "anthropic-gateway"
    return "gateway" if ok else "other"


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _log_path(port: int, environ: Mapping[str, str]) -> Path:
    cache = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "anthropic-gateway"
    cache.mkdir(parents=True, exist_ok=True)
    return cache / f"gateway-{port}.log"


@dataclass
class BackgroundGateway:
    """An ``anthropic-gateway serve`` this launcher started, in its own session so that the
    terminal's Ctrl-C (which Claude Code handles itself) does not reach it."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @classmethod
    def start(cls, settings: Settings, url: str, environ: Mapping[str, str]) -> BackgroundGateway:
        log_path = _log_path(settings.port, environ)
        cmd = [sys.executable, "-m", "anthropic_gateway", "serve", "--host", settings.host,
               "--port", str(settings.port)]  # fmt: skip
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
            )  # fmt: skip
        return cls(proc, url, log_path)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise LauncherError(
                    f"the gateway exited with code {self.proc.returncode} at start-up "
                    f"(log: {self.log_path}):\n" + "\n".join(tail)
                )
            if probe(self.url, timeout=1.0) == "gateway":
                return
            time.sleep(0.05)
        self.stop()
        raise LauncherError(
            f"the gateway did not answer at {self.url} within {timeout:.0f}s (log: {self.log_path})"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)


def models_used(args: list[str]) -> list[str]:
    """The model names Claude Code will send: its three tiers, or the `--model` given and the haiku
    tier (its small/fast model)."""
    chosen = next((a.split("=", 1)[1] for a in args if a.startswith("--model=")), None)
    if chosen is None and "--model" in args[:-1]:
        chosen = args[args.index("--model") + 1]
    if chosen is None or chosen in TIER_ALIASES:
        return [TIER_ALIASES[chosen]] if chosen else list(TIER_ALIASES.values())
    return [chosen, TIER_ALIASES["haiku"]]


def check_keys(settings: Settings, models: list[str]) -> None:
    """Refuse to start Claude Code on a gateway whose routes for `models` have no upstream key: its
    first prompt would end in "API Error: 500"."""
    if settings.passthrough_auth:
        return
    from anthropic_gateway import keys
    from anthropic_gateway.routing import Router

    lines = keys.unserved_lines(keys.unserved(Router(settings), models))
    if lines:
        raise LauncherError("not starting Claude Code, its requests would fail: " + "; ".join(lines), exit_code=2)


def ensure_gateway(
    settings: Settings, environ: Mapping[str, str], models: list[str] | None = None
) -> BackgroundGateway | None:
    """The gateway this launcher started, or None when one was already running."""
    url = base_url(settings)
    found = probe(url)
    if found == "gateway":
        _say(f"using the gateway already running at {url}")
        return None
    if found == "other":
        raise LauncherError(
            f"{url} answers but is not anthropic-gateway: set ANTHROPIC_GATEWAY_PORT to a free port"
        )
    check_keys(settings, models or list(TIER_ALIASES.values()))  # a running gateway has its own keys
    gw = BackgroundGateway.start(settings, url, environ)
    try:
        gw.wait_ready()
    except LauncherError:
        if probe(url) == "gateway":  # another launcher won the race for the port: use its gateway
            _say(f"using the gateway already running at {url}")
            return None
        raise
    _say(f"started the gateway at {url} (log: {gw.log_path}); it stops when claude exits")
    return gw


# --- running claude ----------------------------------------------------------------------------


@contextlib.contextmanager
def _signals_to(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """While `proc` runs: ignore Ctrl-C (the terminal sends it to Claude Code too, which handles it),
    and pass SIGTERM / SIGHUP on to it so the launcher can still clean up."""

    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, forward)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _say(message: str) -> None:
    print(f"anthropic-gateway: {message}", file=sys.stderr, flush=True)


def _load(environ: Mapping[str, str] | None) -> tuple[Settings, set[str]]:
    """The settings `serve` would use (environment and .env, or exactly `environ` in tests), and the
    names of those set explicitly rather than left at their defaults."""
    from anthropic_gateway.cli import check_startup  # cli imports this module lazily

    settings = load_settings(environ=environ)
    check_startup(settings)
    explicit = set(settings.model_fields_set)
    if settings.port == 0:  # "any free port": pick it here, the client must know it
        settings = settings.model_copy(update={"port": _free_port(settings.host)})
    return settings, explicit


def run_claude(args: list[str], environ: Mapping[str, str] | None = None) -> int:
    """Run Claude Code through the gateway; `environ` replaces os.environ (and .env) when given."""
    given = environ
    environ = dict(os.environ if environ is None else environ)
    claude = shutil.which("claude", path=environ.get("PATH"))
    if claude is None:
        _say(f"the `claude` command (Claude Code) was not found on PATH; install it with:\n  {INSTALL_HINT}")
        return 127
    if _informational(args):  # `claude --version`, `claude --help`: Claude Code answers alone
        return _run([claude, *args], {k: v for k, v in environ.items() if k not in _GATEWAY_SECRETS})
    try:
        settings, explicit = _load(given)
        env = claude_env(settings, explicit, environ)
        gateway = ensure_gateway(settings, environ, models_used(args))
    except (SettingsError, LauncherError) as err:
        _say(str(err))
        return err.exit_code if isinstance(err, LauncherError) else 2
    # Backends' own keys (their key_env variables) stay out of Claude Code's environment too.
    secrets = {*_GATEWAY_SECRETS, *(b.key_env for b in settings.backends.values() if b.key_env)}
    child_env = env.apply({k: v for k, v in environ.items() if k not in secrets})
    try:
        return _run([claude, *args], child_env)
    finally:
        if gateway is not None:
            gateway.stop()


def _informational(args: list[str]) -> bool:
    for arg in args:
        if arg == "--":
            return False
        if arg in INFO_ARGS:
            return True
    return False


def _run(cmd: list[str], env: dict[str, str]) -> int:
    proc = subprocess.Popen(cmd, env=env)
    with _signals_to(proc):
        return _exit_code(proc.wait())


def print_env(environ: Mapping[str, str] | None = None) -> int:
    """Print the environment `claude` would get, as shell lines; `environ` as for :func:`run_claude`."""
    given = environ
    environ = dict(os.environ if environ is None else environ)
    try:
        settings, explicit = _load(given)
        env = claude_env(settings, explicit, environ)
    except (SettingsError, LauncherError) as err:
        _say(str(err))
        return err.exit_code if isinstance(err, LauncherError) else 2
    print("\n".join(env.shell_lines()), flush=True)
    url = env.set["ANTHROPIC_BASE_URL"]
    found = probe(url, timeout=1.0)
    if found == "nothing":
        _say(f"warning: no gateway answers at {url} yet, so claude would wait for it: start one first with "
             "`anthropic-gateway serve` (or run `anthropic-gateway claude`, which starts one)")  # fmt: skip
    elif found == "other":
        _say(f"warning: {url} answers but is not anthropic-gateway: set ANTHROPIC_GATEWAY_PORT to the gateway's port")
    return 0
