"""`anthropic-gateway top`: the status page in a terminal, from the same ``GET /status/data``.

A live table redrawn every ``--interval`` seconds (Ctrl-C ends it); ``--once`` prints it once and
exits (scripts, tests). The gateway is the one `anthropic-gateway env` points at unless ``--url``
says otherwise; the key sent is ``--key``, else the first of ``ANTHROPIC_GATEWAY_ADMIN_KEYS``, else
none (an open gateway). Every value is drawn as plain text (a model name is never rich markup).
Exit codes: 0 shown; 1 no gateway answers, or it refused the key; 2 an invalid configuration or range.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from anthropic_gateway.settings import SettingsError, load_settings
from anthropic_gateway.usage_report import UsageError, request_key

RANGES = ("15m", "1h", "24h", "7d")


def fetch(url: str, key: str | None, rng: str, timeout: float = 10.0) -> dict[str, Any]:
    target = f"{url}/status/data?{urllib.parse.urlencode({'range': rng})}"
    headers = {"Accept": "application/json", **({"x-api-key": key} if key else {})}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(target, headers=headers), timeout=timeout) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {err.code}"
        if err.code in (401, 403):
            raise UsageError(f"the gateway at {url} refused: {message} (send the admin key with --key, or set "
                             "ANTHROPIC_GATEWAY_ADMIN_KEYS)") from None  # fmt: skip
        if err.code == 404:
            raise UsageError(f"the gateway at {url} has no /status/data (an older version?)") from None
        raise UsageError(f"the gateway at {url} answered {err.code}: {message}",
                         exit_code=2 if err.code == 400 else 1) from None  # fmt: skip
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UsageError(f"no gateway answers at {url} ({reason}): start one with `anthropic-gateway serve`, or "
                         "pass --url") from None  # fmt: skip
    except ValueError:
        raise UsageError(f"{url} answered /status/data with something that is not JSON") from None


def _n(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}" if x < 10 else f"{x:,.0f}"


def _usd(x: float | None) -> str:
    return "-" if x is None else f"${x:,.4f}" if x < 1 else f"${x:,.2f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def view(d: dict[str, Any]) -> Any:
    """A rich renderable of one answer."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def table(title: str, *columns: str) -> Table:
        t = Table(title=Text(title), title_justify="left", expand=False)
        for i, c in enumerate(columns):
            t.add_column(Text(c), justify="left" if i == 0 else "right", no_wrap=True)
        return t

    def row(t: Table, *cells: Any) -> None:
        t.add_row(*(Text(str(c)) for c in cells))  # text, never markup: clients choose model names

    tot = d["totals"]
    lat, ttft, over = tot["latency_ms"], tot["ttft_ms"], tot["overhead_ms"]
    tps = tot["tokens_per_second"]
    rc = d["response_cache"]
    summary = table(f"anthropic-gateway · last {d['range']} · {_clock(d['now'])}", "figure", "value")
    row(summary, "requests", f"{tot['requests']:,} ({_n(tot['requests_per_second'], 2)}/s)")
    row(summary, "errors 4xx / 5xx", f"{tot['by_class']['4xx']:,} / {tot['by_class']['5xx']:,} "
                                     f"({_pct(tot['error_rate'])})")  # fmt: skip
    row(summary, "in flight", f"{d['in_flight']['requests']} requests, {d['in_flight']['streams']} streams")
    row(summary, "latency p50/p95/p99 ms", f"{_ms(lat['p50'])} / {_ms(lat['p95'])} / {_ms(lat['p99'])}")
    row(summary, "first token p50/p95 ms", f"{_ms(ttft['p50'])} / {_ms(ttft['p95'])}")
    row(summary, "gateway overhead p50/p99 ms", f"{_ms(over['p50'])} / {_ms(over['p99'])}")
    row(summary, "tokens/s in/out/cache read/write",
        " / ".join(_n(tps[k], 1) for k in ("input", "output", "cache_read", "cache_write")))
    row(summary, "cache-read share", _pct(tot["cache_read_share"]))
    row(summary, "cost", f"{_usd(tot['cost_usd'])} ({_usd(tot['cost_per_hour'])}/h)")
    row(summary, f"today {d['today']['date']}", f"{_usd(d['today']['cost_usd'])}, {d['today']['requests']:,} requests")
    row(summary, "response cache hit ratio", _pct(rc["hit_ratio"]) if rc["enabled"] else "off")

    models = table("cost today by model", "model", "requests", "cost")
    for r in d["today"]["by_model"][:10]:
        row(models, r["name"] or "-", f"{r['requests']:,}", _usd(r["cost_usd"]))
    keys = table("cost today by key", "key label", "requests", "cost")
    for r in d["today"]["by_key"][:10]:
        row(keys, r["name"] or "-", f"{r['requests']:,}", _usd(r["cost_usd"]))
    backends = table("backends", "backend", "last probe", "probe ms", "requests", "error rate")
    for b in d["backends"]:
        p = b["probe"]
        row(backends, b["name"], p["detail"] if p else "not probed", _ms(p["latency_ms"]) if p else "-",
            f"{b['requests']:,}", _pct(b["error_rate"]))  # fmt: skip
    parts: list[Any] = [summary, models, keys, backends]
    if d["batches"]:
        batches = table("batches in progress", "batch", "status", "total", "pending", "running", "succeeded", "errored")
        for b in d["batches"]:
            c = b["counts"]
            row(batches, b["id"], b["status"], b["total"], c["pending"], c["running"], c["succeeded"], c["errored"])
        parts.append(batches)
    recent = table("last requests", "time", "key label", "model", "status", "ms", "in", "out", "cost")
    for r in d["recent"][:15]:
        row(recent, _clock(r["at"]), r["key"] or "-", r["model"] or "-", r["status"], _ms(r["latency_ms"]),
            f"{r['input_tokens']:,}", f"{r['output_tokens']:,}", _usd(r["cost_usd"]))  # fmt: skip
    parts.append(recent)
    return Group(*parts)


def run(url: str | None, key: str | None, rng: str, interval: float, once: bool) -> int:
    from rich.console import Console

    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"anthropic-gateway: {err}", file=sys.stderr)
        return 2
    from anthropic_gateway import launcher

    base = (url or launcher.base_url(settings)).rstrip("/")
    key = key or request_key(settings)
    try:
        if once:
            console = Console() if sys.stdout.isatty() else Console(width=200, no_color=True)
            console.print(view(fetch(base, key, rng)))
            return 0
        from rich.live import Live

        with Live(view(fetch(base, key, rng)), auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(view(fetch(base, key, rng)), refresh=True)
    except UsageError as err:
        print(f"anthropic-gateway: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 0
