"""Soak: many mixed requests against the fast mock upstream, with RSS, fds and threads watched.

    python bench/soak.py                    # 100,000 requests, concurrency 32
    python bench/soak.py --requests 20000   # a shorter run

The mix, by request number: streamed text (40%), non-streamed text (25%), streamed tool calls (10%),
client errors - invalid JSON, an unknown model, a bad field (10%), streams the client abandons after
the first bytes (10%), non-streamed requests the client gives up on after 5 ms (5%). Every answer is
checked for its status and shape. RSS, open fds and threads of the gateway are sampled after the first
10% of the requests and at the end (after a short settle); the run passes when the end RSS is within
10% of the first sample, fds (give or take 4 pooled upstream connections) and threads are back where they were, and there were no unexpected answers.
Loopback only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aiohttp

import run as bench

SMALL = {"max_tokens": 50, "messages": [{"role": "user", "content": "Hello"}]}


def kind_of(n: int) -> str:
    r = n % 20
    return ("stream" if r < 8 else "json" if r < 13 else "tool" if r < 15 else "error" if r < 17
            else "abandon" if r < 19 else "giveup")  # fmt: skip


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


async def one(session: aiohttp.ClientSession, url: str, n: int, stats: dict[str, int]) -> None:
    kind = kind_of(n)
    headers = {"content-type": "application/json", "x-api-key": "soak", "anthropic-version": "2023-06-01"}
    body: Any
    if kind == "stream":
        body = {"model": "bench/text-50", "stream": True, **SMALL}
    elif kind == "tool":
        body = {"model": "bench/tool-5", "stream": True, **SMALL,
                "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}  # fmt: skip
    elif kind == "json":
        body = {"model": "bench/text-20", **SMALL}
    elif kind == "error":
        body = [b"{not json", {"model": "no-such-model", **SMALL}, {"model": "bench/x", "max_tokens": -1,
                "messages": []}][n % 3]  # fmt: skip
    elif kind == "abandon":
        body = {"model": "bench/text-400", "stream": True, **SMALL}
    else:
        body = {"model": "bench/text-2000", **SMALL}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        if kind == "giveup":
            try:
                async with asyncio.timeout(0.005):
                    async with session.post(url, data=data, headers=headers) as resp:
                        await resp.read()
                stats["giveup_answered"] += 1
            except TimeoutError:
                stats["giveup"] += 1
            return
        async with session.post(url, data=data, headers=headers) as resp:
            if kind == "abandon":
                await resp.content.readany()
                resp.close()  # the client walks away mid-stream
                stats["abandon"] += 1
                return
            raw = await resp.read()
            ok = (resp.status == 200 and (b"event: message_stop" in raw if kind in ("stream", "tool")
                  else b'"type":"message"' in raw)) if kind != "error" else (
                  resp.status in (400, 404) and b'"type":"error"' in raw)  # fmt: skip
            stats["ok" if ok else "unexpected"] += 1
            if not ok and stats["unexpected"] <= 5:
                print(f"unexpected answer to a {kind} request: {resp.status} {raw[:300]!r}", file=sys.stderr)
    except (aiohttp.ClientError, OSError) as err:
        stats["unexpected"] += 1
        if stats["unexpected"] <= 5:
            print(f"client error on a {kind} request: {err!r}", file=sys.stderr)


async def load(url: str, start: int, count: int, concurrency: int, stats: dict[str, int], deadline: float) -> None:
    queue = iter(range(start, start + count))
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def worker() -> None:
            for n in queue:
                if time.monotonic() > deadline:
                    return
                await one(session, url, n, stats)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def sample(pid: int) -> dict[str, float]:
    return {"rss_mb": round(bench.rss_mb([pid]), 1), "fds": fds(pid), "threads": threads(pid)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-seconds", type=float, default=1800, help="stop the run after this long whatever the count")
    args = ap.parse_args()
    bench.RESULTS.mkdir(exist_ok=True)
    mock_port, gw_port = bench.free_port(), bench.free_port()
    mock = bench.start_mock(mock_port, bench.RESULTS / "soak-mock.log")
    gw, started = bench.start_gateway(gw_port, mock_port, bench.RESULTS / "soak-gateway.log")
    if started is None:
        bench.stop(mock)
        raise SystemExit("the gateway did not start; see bench/results/soak-gateway.log")
    url = f"http://127.0.0.1:{gw_port}/v1/messages"
    stats: dict[str, int] = {k: 0 for k in ("ok", "unexpected", "abandon", "giveup", "giveup_answered")}
    deadline = time.monotonic() + args.max_seconds
    first = args.requests // 10
    t0 = time.perf_counter()
    try:
        asyncio.run(load(url, 0, first, args.concurrency, stats, deadline))
        time.sleep(2)
        base = sample(gw.pid)
        asyncio.run(load(url, first, args.requests - first, args.concurrency, stats, deadline))
        time.sleep(2)
        end = sample(gw.pid)
    finally:
        elapsed = time.perf_counter() - t0
        bench.stop(gw)
        bench.stop(mock)
    done = sum(stats.values())
    growth = (end["rss_mb"] - base["rss_mb"]) / base["rss_mb"]
    # A few more pooled keep-alive connections to the upstream at the end than at the sample are not a leak.
    passed = (growth <= 0.10 and end["fds"] <= base["fds"] + 4 and end["threads"] <= base["threads"]
              and not stats["unexpected"])  # fmt: skip
    print(json.dumps({"requests": done, "seconds": round(elapsed, 1), "per_second": round(done / elapsed),
                      "after_first_10pct": base, "end": end, "rss_growth": f"{growth:+.1%}", "answers": stats,
                      "passed": passed}, indent=1))  # fmt: skip
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
