"""`anthropic-gateway usage [--since 7d] [--until WHEN] [--by model|key|day|backend|status]`: the
totals of a running gateway's ledger (``GET /v1/usage``) as a table.

The gateway is found as `anthropic-gateway env` finds it (the same settings: environment, .env);
the key sent is the first admin key (``ANTHROPIC_GATEWAY_ADMIN_KEYS``), else the first client key,
else none (an open gateway). Exit codes: 0 printed; 1 no gateway answers, or it refused (key); 2 an
invalid configuration, command line or time.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from anthropic_gateway.settings import Settings, SettingsError, load_settings

GROUPS = ("model", "key", "day", "backend", "status")
_RELATIVE = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class UsageError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def when(value: str, now: float) -> str:
    """A ``--since`` / ``--until`` value for the API: ``7d``, ``24h``, ``30m``, ``2w`` become Unix
    seconds before now; anything else (ISO dates and times, Unix seconds) goes as it is."""
    m = _RELATIVE.match(value.strip())
    if m:
        return str(int(now - int(m[1]) * _UNITS[m[2]]))
    return value


def request_key(settings: Settings) -> str | None:
    admin, clients = settings.admin_key_list(), settings.client_keys()
    return admin[0] if admin else clients[0] if clients else None


def fetch(url: str, key: str | None, params: dict[str, str], timeout: float = 30.0) -> dict[str, Any]:
    target = f"{url}/v1/usage?{urllib.parse.urlencode(params)}"
    headers = {"Accept": "application/json", **({"x-api-key": key} if key else {})}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the gateway is on this machine
    try:
        with opener.open(urllib.request.Request(target, headers=headers), timeout=timeout) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except urllib.error.HTTPError as err:
        raise _refusal(err, url) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UsageError(f"no gateway answers at {url} ({reason}): start one with `anthropic-gateway serve`, or set "
                         "ANTHROPIC_GATEWAY_PORT to its port") from None  # fmt: skip
    except ValueError:
        raise UsageError(f"{url} answered /v1/usage with something that is not JSON: is it anthropic-gateway?") from None


def _refusal(err: urllib.error.HTTPError, url: str) -> UsageError:
    try:
        message = json.loads(err.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {err.code}"
    if err.code == 400:
        return UsageError(message, exit_code=2)
    if err.code in (401, 403):
        return UsageError(f"the gateway at {url} refused: {message} (the key sent is the first of "
                          "ANTHROPIC_GATEWAY_ADMIN_KEYS)")  # fmt: skip
    if err.code == 404:
        return UsageError(f"the gateway at {url} has no /v1/usage (an older version?)")
    return UsageError(f"the gateway at {url} answered {err.code}: {message}")


def _money(x: float) -> str:
    return f"${x:.6f}" if x < 1 else f"${x:,.4f}" if x < 100 else f"${x:,.2f}"


def render(body: dict[str, Any], by: str) -> None:
    from rich.console import Console  # deferred: only this command draws tables
    from rich.table import Table

    table = Table()
    table.add_column(by, no_wrap=True)
    for name in ("requests", "errors", "input", "output", "cache read", "cache write", "cost (USD)", "mean ms"):
        table.add_column(name, justify="right", no_wrap=True)
    rows = [*body["data"], {"group": "total", **body["total"]}]
    for n, r in enumerate(rows):
        table.add_row(str(r["group"] if r["group"] != "" else "-"), f"{r['requests']:,}", f"{r['errors']:,}",
                      f"{r['input_tokens']:,}", f"{r['output_tokens']:,}", f"{r['cache_read_input_tokens']:,}",
                      f"{r['cache_creation_input_tokens']:,}", _money(r["cost_usd"]), f"{r['mean_latency_ms']:,.0f}",
                      end_section=n == len(rows) - 2)  # fmt: skip
    # Piped output (scripts, tests) is not wrapped at 80 columns: a row stays one line.
    console = Console() if sys.stdout.isatty() else Console(width=200, no_color=True)
    console.print(f"usage {body['start']} → {body['end']}, by {by}", highlight=False, markup=False)
    console.print(table)


def run(since: str, until: str | None, by: str, environ: Mapping[str, str] | None = None) -> int:
    from anthropic_gateway import launcher  # the URL as `anthropic-gateway env` prints it

    try:
        settings = load_settings(environ=environ)
        url = launcher.base_url(settings)
        now = time.time()
        params = {"start": when(since, now), "group_by": by}
        if until:
            params["end"] = when(until, now)
        body = fetch(url, request_key(settings), params)
    except SettingsError as err:
        print(f"anthropic-gateway: {err}", file=sys.stderr)
        return 2
    except UsageError as err:
        print(f"anthropic-gateway: {err}", file=sys.stderr)
        return err.exit_code
    render(body, by)
    return 0
