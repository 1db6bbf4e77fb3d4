"""`anthropic-gateway keys create|list|revoke|set`: the stored gateway keys, straight in the store.

The command opens the store the gateway uses (``database_url``) itself, so it works whether or not a
gateway is running; a running gateway picks changes up within a few seconds. `create` prints the
key once, on stdout alone (so `KEY=$(anthropic-gateway keys create team-a)` works); only its hash
is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from anthropic_gateway.quota.keys import KeyError_, KeyStore
from anthropic_gateway.quota.policy import KeyLimits

_LIMIT_FLAGS = (
    ("--models", "models", "comma-separated model names or glob patterns the key may use (default: any)"),
    ("--rpm", "requests_per_minute", "requests per minute"),
    ("--tpm", "tokens_per_minute", "input + output tokens per minute"),
    ("--concurrent", "max_concurrent", "requests in flight at once"),
    ("--daily-usd", "daily_budget_usd", "spend per UTC day, USD"),
    ("--monthly-usd", "monthly_budget_usd", "spend per UTC month, USD"),
)


def add_parser(sub: Any) -> None:
    keys = sub.add_parser(
        "keys", help="create, list, revoke or change the gateway's stored client keys",
        description="Manage the gateway keys kept in the store (database_url): only a hash of each key is "
        "stored, and `create` prints the key once. A running gateway picks changes up within 5 seconds.",
    )  # fmt: skip
    keys.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file (for database_url)")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    for name, text in (("create", "create a key and print it once"), ("set", "replace a key's limits")):
        p = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("label", help="the key's name in logs, metrics and the ledger")
        for flag, dest, help_ in _LIMIT_FLAGS:
            p.add_argument(flag, dest=dest, help=help_, type=str if dest == "models" else float)
    actions.add_parser("list", help="list the active keys (never their values)", description="List the active keys.")
    revoke = actions.add_parser("revoke", help="revoke a key", description="Revoke a key: it stops working at once.")
    revoke.add_argument("label")


def _limits(args: argparse.Namespace) -> KeyLimits:
    data: dict[str, Any] = {}
    for _, dest, _ in _LIMIT_FLAGS:
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "models":
            data[dest] = tuple(m.strip() for m in value.split(",") if m.strip())
        elif dest in ("requests_per_minute", "tokens_per_minute", "max_concurrent"):
            data[dest] = int(value)
        else:
            data[dest] = value
    return KeyLimits.model_validate(data)


def run(args: argparse.Namespace, database_url: str | None) -> int:
    from pydantic import ValidationError

    from anthropic_gateway.store import StoreError, open_store

    try:
        limits = _limits(args) if args.keys_command in ("create", "set") else KeyLimits.model_validate({})
    except ValidationError as err:
        first = err.errors()[0]
        print(f"anthropic-gateway: {first['loc'][0]}: {first['msg']}", file=sys.stderr)
        return 2
    store = open_store(database_url)

    async def main() -> int:
        await store.open()
        try:
            keys = KeyStore(store)
            if args.keys_command == "create":
                print(await keys.create(args.label, limits))
                print(f"created key '{args.label}': it is shown this once; store it now", file=sys.stderr)
            elif args.keys_command == "set":
                await keys.update(args.label, limits)
                print(f"key '{args.label}' updated", file=sys.stderr)
            elif args.keys_command == "revoke":
                await keys.revoke(args.label)
                print(f"key '{args.label}' revoked", file=sys.stderr)
            else:
                rows = await keys.list()
                print(f"{'LABEL':<24} {'PREFIX':<10} {'CREATED':<20} LIMITS")
                for k in rows:
                    created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(k.created_at))
                    limits_text = ", ".join(f"{n}={','.join(v) if n == 'models' else v}"
                                            for n, v in k.limits.summary().items()) or "-"
                    print(f"{k.label:<24} {k.prefix + '…':<10} {created:<20} {limits_text}")
            return 0
        except KeyError_ as err:
            print(f"anthropic-gateway: {err}", file=sys.stderr)
            return 1
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except StoreError as err:
        print(f"anthropic-gateway: {err}", file=sys.stderr)
        return 1
