"""The status page's costs: its weight, GET /status/data's time with a full hour of buckets, and the
page's load time in Chromium.

    python bench/status_page.py                       # figures only
    python bench/status_page.py --screenshot docs/status-page.png

A gateway (uvicorn, in this process, on 127.0.0.1; an open gateway: no keys) gets a full hour of
synthetic traffic recorded into its buckets before it serves (360 ten-second buckets, ``--per-bucket``
requests each over 12 models, 8 key labels, 2 backends). Then:

- **weight**: index.html + app.js + app.css (+ icon.svg) as served, raw and gzip -9;
- **/status/data**: ``--requests`` sequential GETs of ``range=1h`` and ``range=15m`` on one keep-alive
  connection, wall-clock per answer (median, p95, max) and the answer's size; and the builder alone
  (StatusData.build + orjson) in-process;
- **record**: µs per request of the status sink beside the metrics sink (best of 5 × 50,000);
- **load time**: ``--loads`` fresh browser contexts (no cache) open /status; the Performance API's
  navigation ``loadEventEnd`` and the page's ``status-rendered`` mark (first data drawn).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import http.client
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from anthropic_gateway.ops.record import RequestRecord  # noqa: E402
from anthropic_gateway.status.buckets import SLOTS, STEP  # noqa: E402

MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "anthropic/claude-sonnet-4",
          "openai/gpt-5", "google/gemini-2.5-pro", "deepseek/deepseek-chat", "qwen/qwen3-coder",
          "meta-llama/llama-4-maverick", "mistralai/devstral", "x-ai/grok-4", "moonshotai/kimi-k2"]  # fmt: skip
KEYS = ["key-backend", "key-frontend", "key-data", "key-ml", "key-ops", "key-ci", "key-support", "admin"]


def fill(buckets: object, per_bucket: int, seed: int = 7) -> int:
    """A full hour of records, ``per_bucket`` per 10 seconds, ending now."""
    rng = random.Random(seed)
    now = time.time()
    start = (int(now // STEP) - SLOTS + 1) * STEP
    n = 0
    real_clock = buckets.clock  # type: ignore[attr-defined]
    try:
        for slot in range(SLOTS):
            t = start + slot * STEP + 5
            buckets.clock = lambda t=t: t  # type: ignore[attr-defined]
            wave = 1 + 0.6 * __import__("math").sin(slot / 40)
            for _ in range(max(1, int(per_bucket * wave))):
                stream = rng.random() < 0.7
                seconds = rng.lognormvariate(0.3, 0.6)
                r = RequestRecord(f"req_{n}", "POST", "/v1/messages", started=0.0, started_at=t - seconds,
                                  route="/v1/messages", key_label=rng.choice(KEYS), model=rng.choice(MODELS),
                                  backend=rng.choice(("openrouter", "local-vllm")), stream=stream)  # fmt: skip
                r.status = rng.choices((200, 429, 400, 500, 529), (96, 2, 1, 0.5, 0.5))[0]
                if r.status >= 500:
                    r.error_type = "api_error"
                r.finished = seconds
                r.upstream_seconds = seconds * 0.998
                r.first_token_at = seconds * rng.uniform(0.1, 0.4) if stream else None
                r.input_tokens = rng.randint(200, 4000)
                r.cache_read_tokens = rng.randint(0, 30000)
                r.cache_write_tokens = rng.randint(0, 2000) if rng.random() < 0.2 else 0
                r.output_tokens = rng.randint(20, 1200)
                r.cost_usd = (r.input_tokens * 3 + r.cache_read_tokens * 0.3 + r.cache_write_tokens * 3.75
                              + r.output_tokens * 15) / 1e6  # fmt: skip
                r.cache = rng.choice(("hit", "miss", None, None))
                buckets.record(r)  # type: ignore[attr-defined]
                n += 1
    finally:
        buckets.clock = real_clock  # type: ignore[attr-defined]
    return n


def serve(per_bucket: int) -> tuple[object, int, int]:
    """The filled gateway, served from a thread of this process (``--serve`` runs it alone)."""
    import uvicorn

    from anthropic_gateway.http import create_app
    from anthropic_gateway.settings import load_settings

    tmp = tempfile.mkdtemp(prefix="status-bench-")
    settings = load_settings(environ={"ANTHROPIC_GATEWAY_DATABASE_URL": f"{tmp}/gw.db",
                                      "ANTHROPIC_GATEWAY_HEALTH_PROBE_INTERVAL": "0",
                                      "ANTHROPIC_GATEWAY_CATALOGUE_REFRESH_HOURS": "0",
                                      "ANTHROPIC_GATEWAY_TOKENIZER_PRELOAD": "false"})  # fmt: skip
    app = create_app(settings)
    gw = app.gateway
    n = fill(gw.status, per_bucket)
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", loop="uvloop")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return gw, port, n


def weight() -> dict[str, int]:
    static = ROOT / "src/anthropic_gateway/status/static"
    out = {}
    for name in ("index.html", "app.js", "app.css", "icon.svg"):
        body = (static / name).read_bytes()
        out[name] = len(body)
        out[name + ".gz"] = len(gzip.compress(body, 9, mtime=0))
    out["page"] = sum(out[n] for n in ("index.html", "app.js", "app.css"))
    out["page.gz"] = sum(out[n + ".gz"] for n in ("index.html", "app.js", "app.css"))
    return out


def time_data(port: int, rng: str, n: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", f"/status/data?range={rng}")  # warm-up: today's ledger part is read once a day
    conn.getresponse().read()
    times, size = [], 0
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", f"/status/data?range={rng}")
        resp = conn.getresponse()
        body = resp.read()
        times.append((time.perf_counter() - t) * 1000)
        assert resp.status == 200, body[:200]
        size = len(body)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
            "max_ms": round(times[-1], 2), "bytes": size}  # fmt: skip


def sink_cost(n: int = 50_000) -> dict[str, float]:
    """µs per record of the status sink, beside the metrics sink (the same records, the same run)."""
    from anthropic_gateway.ops.metrics import Metrics
    from anthropic_gateway.status.buckets import StatusBuckets

    r = RequestRecord("req_1", "POST", "/v1/messages", route="/v1/messages", key_label="key-a", model="claude-sonnet-5",
                      backend="default", status=200, stream=True, cost_usd=0.001, upstream_seconds=0.2)  # fmt: skip
    r.finished, r.first_token_at = r.started + 0.21, r.started + 0.05
    r.input_tokens, r.output_tokens, r.cache_read_tokens = 1000, 100, 5000
    out = {}
    for name, sink in (("status", StatusBuckets()), ("metrics", Metrics(["x"], ["default"], lambda: (0, 0)))):
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(n):
                sink.record(r)
            best = min(best, (time.perf_counter() - t) / n * 1e6)
        out[name + "_sink_us"] = round(best, 2)
    return out


def time_builder(gw: object, n: int) -> dict[str, float]:
    from anthropic_gateway.status.data import RANGES, StatusData

    builder = StatusData(gw)  # type: ignore[arg-type]

    async def run() -> list[float]:
        out = []
        await builder.build(RANGES["1h"])  # today's ledger part, once
        for _ in range(n):
            t = time.perf_counter()
            orjson.dumps(await builder.build(RANGES["1h"]))
            out.append((time.perf_counter() - t) * 1000)
        return out

    loop = asyncio.new_event_loop()
    try:
        times = sorted(loop.run_until_complete(run()))
    finally:
        loop.close()
    return {"median_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(len(times) * 0.95) - 1], 2)}


def load_time(port: int, loads: int, screenshot: str | None) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    loaded, rendered = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        for i in range(loads):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/status")
            page.wait_for_selector("body[data-loaded]")
            page.wait_for_selector("#c-requests[data-points] path")
            t = page.evaluate("""() => ({load: performance.getEntriesByType('navigation')[0].loadEventEnd,
                                         rendered: performance.getEntriesByName('status-rendered')[0].startTime})""")
            loaded.append(t["load"])
            rendered.append(t["rendered"])
            if screenshot and i == loads - 1:
                page.set_viewport_size({"width": 1280, "height": 1330})
                page.wait_for_timeout(300)
                page.screenshot(path=screenshot)
            context.close()
        browser.close()
    return {"load_event_ms_median": round(statistics.median(loaded), 1),
            "first_data_drawn_ms_median": round(statistics.median(rendered), 1),
            "first_data_drawn_ms_max": round(max(rendered), 1)}  # fmt: skip


def spawn(per_bucket: int) -> tuple[subprocess.Popen[str], int]:
    """The gateway in a process of its own: the clients here do not share its GIL."""
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--per-bucket", str(per_bucket)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, int(line.split()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--per-bucket", type=int, default=30, help="requests per 10 seconds (default 30: ~11k per hour)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--loads", type=int, default=10)
    ap.add_argument("--screenshot", metavar="PNG")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    gw, port, n = serve(args.per_bucket)
    if args.serve:
        print(f"port {port} requests {n}", flush=True)
        threading.Event().wait()
    report = {"requests_recorded": n, "weight_bytes": weight(), "data_1h_builder": time_builder(gw, args.requests),
              "record": sink_cost()}
    proc, port = spawn(args.per_bucket)
    try:
        report["data_1h_http"] = time_data(port, "1h", args.requests)
        report["data_15m_http"] = time_data(port, "15m", args.requests)
        if not args.no_browser:
            report["page_load"] = load_time(port, args.loads, args.screenshot)
    finally:
        proc.terminate()
        proc.wait(10)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
