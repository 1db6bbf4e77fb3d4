"""Command line: `anthropic-gateway serve` (and `python -m anthropic_gateway serve`)."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys
from pathlib import Path

from anthropic_gateway import __version__
from anthropic_gateway.settings import Settings, SettingsError, load_settings

SERVE_EPILOG = """\
upstream key:
  OPENROUTER_API_KEY (or ANTHROPIC_GATEWAY_UPSTREAM_KEY) holds the default
  upstream's key; a [backends.NAME] table names the variable holding its own
  key with key_env. Local servers (Ollama, vLLM, LM Studio, llama.cpp) need
  no key. Keys never go in the config file.

environment:
  Every setting is an environment variable ANTHROPIC_GATEWAY_<NAME> (also
  read from ./.env) and a key <name> of the --config file. Flags win over the
  environment, which wins over the file. For example ANTHROPIC_GATEWAY_PORT,
  ANTHROPIC_GATEWAY_UPSTREAM_URL, ANTHROPIC_GATEWAY_SONNET_MODEL,
  ANTHROPIC_GATEWAY_API_KEYS (keys clients must send). An unknown
  ANTHROPIC_GATEWAY_* name stops start-up. Every setting is listed in
  README.md, "Configuration".
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anthropic-gateway",
        description="Serve the Anthropic Messages API from OpenRouter or any OpenAI-compatible backend.",
        epilog="Start with: OPENROUTER_API_KEY=sk-or-... anthropic-gateway serve (then `anthropic-gateway claude`).",
    )
    parser.add_argument("--version", action="version", version=f"anthropic-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve", help="run the gateway", description="Run the gateway in the foreground (Ctrl-C stops it).",
        epilog=SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, metavar="N", help="port to listen on (default 8082)")
    serve.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    serve.add_argument(
        "--upstream-url", metavar="URL", help="OpenAI-compatible base URL (default https://openrouter.ai/api/v1)"
    )
    # Every argument after `claude` is Claude Code's, even -h and --: no option prefix for this parser.
    claude = sub.add_parser(
        "claude", add_help=False, prefix_chars="\0",
        help="run Claude Code through the gateway, starting one if none is running (all arguments go to claude)",
    )  # fmt: skip
    claude.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser(
        "env", help="print the export lines that point Claude Code at the gateway",
        description='Print the export lines that point Claude Code at the gateway: eval "$(anthropic-gateway env)". '
        "Warns on stderr when no gateway answers at that address.",
    )  # fmt: skip
    check = sub.add_parser(
        "check", help="validate the configuration and print where each model alias goes",
        description="Validate the configuration, print where each model alias goes and report missing keys; "
        "exits 1 on any problem, 2 on an invalid configuration.",
    )  # fmt: skip
    check.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    from anthropic_gateway.quota import cli as keys_cli

    keys_cli.add_parser(sub)
    check.add_argument(
        "--online", action="store_true",
        help="also probe each backend's /models endpoint and look up every alias's upstream model there",
    )  # fmt: skip
    usage = sub.add_parser(
        "usage", help="print a running gateway's request, token and cost totals as a table",
        description="Print the totals of a running gateway's ledger (GET /v1/usage) as a table. The gateway "
        "and key come from the same settings as `anthropic-gateway env` (the first of "
        "ANTHROPIC_GATEWAY_ADMIN_KEYS is sent). Exits 1 when no gateway answers or it refuses the key.",
    )  # fmt: skip
    usage.add_argument("--since", default="7d", metavar="WHEN",
                       help="start: 30m, 24h, 7d, 2w ago, an ISO date or time, or Unix seconds (default 7d)")  # fmt: skip
    usage.add_argument("--until", metavar="WHEN", help="end, exclusive, in the same forms (default now)")
    usage.add_argument("--by", default="model", choices=("model", "key", "day", "backend", "status"),
                       help="one row per requested model (default), key label, UTC day, backend or status")  # fmt: skip
    top = sub.add_parser(
        "top", help="show a running gateway's live status (the status page in a terminal)",
        description="Show a running gateway's live status from GET /status/data: traffic, errors, latency, "
        "tokens, cost, backends, batches and the last requests, redrawn every few seconds (Ctrl-C ends it). "
        "The gateway is the one `anthropic-gateway env` points at, and the key sent the first of "
        "ANTHROPIC_GATEWAY_ADMIN_KEYS, unless --url and --key say otherwise. Exits 1 when no gateway answers "
        "or it refuses the key.",
    )  # fmt: skip
    top.add_argument("--url", metavar="URL", help="the gateway's base URL (default: as `anthropic-gateway env`)")
    top.add_argument("--key", metavar="KEY", help="the admin key to send (default: the first of "
                     "ANTHROPIC_GATEWAY_ADMIN_KEYS)")  # fmt: skip
    top.add_argument("--range", default="15m", choices=("15m", "1h", "24h", "7d"),
                     help="the figures of the last 15 minutes (default), hour, 24 hours or 7 days")  # fmt: skip
    top.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between redraws (default 2)")
    top.add_argument("--once", action="store_true", help="print the figures once and exit")
    from anthropic_gateway.batches import cli as batch_cli  # argparse and the stdlib only

    batch_cli.add_parser(sub)
    return parser


def check_startup(settings: Settings) -> None:
    is_open = not settings.client_keys() and not settings.passthrough_auth
    if is_open and not settings.is_loopback_bind() and not settings.trusted_network:
        raise SettingsError(
            f"refusing to serve an open gateway on {settings.host}: set ANTHROPIC_GATEWAY_API_KEYS, "
            "or ANTHROPIC_GATEWAY_PASSTHROUGH_AUTH=true, or ANTHROPIC_GATEWAY_TRUSTED_NETWORK=true"
        )


def startup_warnings(settings: Settings) -> list[str]:
    """What start-up reports but serves anyway: rewritten settings, backends without their key."""
    from anthropic_gateway import keys
    from anthropic_gateway.routing import Router

    return [*settings.warnings(), *keys.startup_warnings(settings, Router(settings))]


def port_problem(host: str, port: int) -> str | None:
    """One line saying why `host`:`port` cannot be listened on, or None. Checked before the server
    starts, so the user sees this instead of a raw errno after "startup complete"."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as err:
        return f"cannot listen on {host}:{port} ({err.strerror or err}): check --host (ANTHROPIC_GATEWAY_HOST)"
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return (f"port {port} is already in use on {host} (another gateway?): stop what holds it, "
                        "or pick another port with --port N (ANTHROPIC_GATEWAY_PORT)")  # fmt: skip
            return f"cannot listen on {host}:{port} ({err.strerror or err}): change --host or --port"
    return None


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(config_path=args.config, host=args.host, port=args.port, upstream_url=args.upstream_url)
        check_startup(settings)
    except SettingsError as err:
        print(f"anthropic-gateway: {err}", file=sys.stderr)
        return 2
    busy = port_problem(settings.host, settings.port)
    if busy is not None:
        print(f"anthropic-gateway: {busy}", file=sys.stderr)
        return 1
    _configure_logging(settings.log_level)
    from anthropic_gateway.ops import access_log

    access_log.configure(settings.access_log)
    log = logging.getLogger("anthropic_gateway")
    for warning in startup_warnings(settings):
        log.warning("%s", warning)

    import uvicorn  # deferred: `--help` and config errors stay instant

    from anthropic_gateway import heap

    heap.limit_arenas()  # before any thread starts

    from anthropic_gateway.connection_limits import protocol_for
    from anthropic_gateway.http import create_app
    from anthropic_gateway.http.server import serve as serve_http

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http=protocol_for(settings),  # httptools, with connection_limits' bounds
        lifespan="on",
        access_log=False,
        log_level=settings.log_level,
        timeout_keep_alive=75,
        server_header=False,
        proxy_headers=False,  # nothing to trust: the gateway is not behind a proxy by default
    )
    log.info("anthropic-gateway %s → %s (%s)", __version__, settings.upstream_url, settings.resolved_backend_kind())
    from anthropic_gateway.tokens.vocab import counter_state

    if (state := counter_state()) is not None:
        log.warning("%s", state)
    serve_http(app, config, settings.drain_timeout)
    return 0


def _check(args: argparse.Namespace) -> int:
    from anthropic_gateway import check

    try:
        settings = load_settings(config_path=args.config)
        check_startup(settings)
    except SettingsError as err:
        print(f"anthropic-gateway: {err}", file=sys.stderr)
        return 2
    return check.run(settings, args.online, sys.stdout)


def _keys(args: argparse.Namespace) -> int:
    from anthropic_gateway.quota import cli as keys_cli

    try:
        settings = load_settings(config_path=args.config)
    except SettingsError as err:
        print(f"anthropic-gateway: {err}", file=sys.stderr)
        return 2
    return keys_cli.run(args, settings.database_url)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # no arguments: the help, not an argparse error
        parser.print_help()
        return 2
    if args.command == "serve":
        return serve(args)
    if args.command == "check":
        return _check(args)
    if args.command == "usage":
        from anthropic_gateway import usage_report

        return usage_report.run(args.since, args.until, args.by)
    if args.command == "keys":
        return _keys(args)
    if args.command == "top":
        from anthropic_gateway.status import top

        return top.run(args.url, args.key, args.range, max(args.interval, 0.2), args.once)
    if args.command == "batch":
        from anthropic_gateway.batches import cli as batch_cli

        return batch_cli.run(args)
    if args.command in ("claude", "env"):
        from anthropic_gateway import launcher  # deferred like uvicorn; launcher imports check_startup

        return launcher.run_claude(args.args) if args.command == "claude" else launcher.print_env()
    return 2  # pragma: no cover - argparse enforces the subcommand
