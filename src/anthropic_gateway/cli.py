"""Command line: `anthropic-gateway serve` (and `python -m anthropic_gateway serve`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from anthropic_gateway import __version__
from anthropic_gateway.settings import Settings, SettingsError, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anthropic-gateway",
        description="Serve the Anthropic Messages API from OpenRouter or any OpenAI-compatible backend.",
    )
    parser.add_argument("--version", action="version", version=f"anthropic-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8082)")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument(
        "--upstream-url", help="OpenAI-compatible base URL (default https://openrouter.ai/api/v1)"
    )
    # Every argument after `claude` is Claude Code's, even -h and --: no option prefix for this parser.
    claude = sub.add_parser(
        "claude", add_help=False, prefix_chars="\0",
        help="run Claude Code through the gateway, starting one if none is running (all arguments go to claude)",
    )  # fmt: skip
    claude.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("env", help="print the export lines that point Claude Code at the gateway")
    check = sub.add_parser("check", help="validate the configuration and print where each model alias goes")
    check.add_argument("--config", type=Path, help="TOML configuration file")
    check.add_argument("--online", action="store_true", help="also probe each backend's /models endpoint")
    return parser


def check_startup(settings: Settings) -> None:
    is_open = not settings.client_keys() and not settings.passthrough_auth
    if is_open and not settings.is_loopback_bind() and not settings.trusted_network:
        raise SettingsError(
            f"refusing to serve an open gateway on {settings.host}: set ANTHROPIC_GATEWAY_API_KEYS, "
            "or ANTHROPIC_GATEWAY_PASSTHROUGH_AUTH=true, or ANTHROPIC_GATEWAY_TRUSTED_NETWORK=true"
        )


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
    _configure_logging(settings.log_level)
    log = logging.getLogger("anthropic_gateway")
    if settings.upstream_key is None and not settings.passthrough_auth:
        log.warning("no upstream key: set OPENROUTER_API_KEY (requests fail until then)")

    import uvicorn  # deferred: `--help` and config errors stay instant

    from anthropic_gateway.http import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=settings.log_level,
        timeout_keep_alive=75,
        server_header=False,
        proxy_headers=False,  # nothing to trust: the gateway is not behind a proxy by default
    )
    log.info("anthropic-gateway %s → %s (%s)", __version__, settings.upstream_url, settings.resolved_backend_kind())
    uvicorn.Server(config).run()
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "check":
        return _check(args)
    if args.command in ("claude", "env"):
        from anthropic_gateway import launcher  # deferred like uvicorn; launcher imports check_startup

        return launcher.run_claude(args.args) if args.command == "claude" else launcher.print_env()
    return 2  # pragma: no cover - argparse enforces the subcommand
