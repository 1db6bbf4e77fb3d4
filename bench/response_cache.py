"""Response cache figures: a hit's latency against a miss with a 200-token answer from the mock, in
both modes, and the memory one cached entry takes.

    python bench/response_cache.py [--n 200] [--delay 0.005]

Starts bench/mock_upstream.py and a gateway (response cache on), sends N distinct requests (misses)
and the same N again (hits), sequentially over one keep-alive connection, and prints medians / p90.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, path: str = "/") -> None:
    for _ in range(400):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing on port {port}")


def _body(i: int, stream: bool) -> bytes:
    return json.dumps({"model": "claude-sonnet-5", "max_tokens": 400, "temperature": 0, "stream": stream,
                       "messages": [{"role": "user", "content": f"Question number {i}"}]}).encode()  # fmt: skip


def _timed(conn: http.client.HTTPConnection, body: bytes) -> tuple[float, str]:
    t = time.perf_counter()
    conn.request("POST", "/v1/messages", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - t
    assert resp.status == 200, data[:200]
    return elapsed, resp.getheader("x-gateway-cache") or "-"


def latency(n: int, delay: float = 0.0) -> dict[str, dict[str, float]]:
    mock_port, gw_port = _free_port(), _free_port()
    mock = subprocess.Popen([sys.executable, str(ROOT / "bench" / "mock_upstream.py"), "--port", str(mock_port),
                             "--delay", str(delay)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")},
           "ANTHROPIC_GATEWAY_BACKEND_KIND": "openai-compatible", "ANTHROPIC_GATEWAY_SONNET_MODEL": "bench/text-200",
           "ANTHROPIC_GATEWAY_RESPONSE_CACHE": "true", "ANTHROPIC_GATEWAY_ACCESS_LOG": "false",
           "ANTHROPIC_GATEWAY_DATABASE_URL": ":memory:", "ANTHROPIC_GATEWAY_LOG_LEVEL": "warning"}  # fmt: skip
    gw = subprocess.Popen([sys.executable, "-m", "anthropic_gateway", "serve", "--port", str(gw_port),
                           "--upstream-url", f"http://127.0.0.1:{mock_port}/v1"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait(gw_port)
        out: dict[str, dict[str, float]] = {}
        conn = http.client.HTTPConnection("127.0.0.1", gw_port, timeout=30)
        for stream in (False, True):
            mode = "sse" if stream else "json"
            for i in range(20):  # warm-up, then measured
                _timed(conn, _body(10_000 + i + (1000 if stream else 0), stream))
            for phase, want in (("miss", "miss"), ("hit", "hit")):
                times = []
                for i in range(n):
                    t, head = _timed(conn, _body(i + (100_000 if stream else 0), stream))
                    assert head == want, (phase, head)
                    times.append(t * 1000)
                times.sort()
                out[f"{mode} {phase}"] = {"median_ms": round(statistics.median(times), 3),
                                          "p90_ms": round(times[int(0.9 * len(times))], 3)}  # fmt: skip
        return out
    finally:
        gw.terminate()
        mock.terminate()
        gw.wait(10)
        mock.wait(10)


def memory_per_entry(n: int = 2000) -> dict[str, float]:
    """Bytes of Python heap per stored 200-token answer (tracemalloc), against the bytes the store counts."""
    import orjson

    from anthropic_gateway.cache.store import MemoryStore

    text = "".join(f"w{i} " for i in range(200))
    message = {"id": "msg_x", "type": "message", "role": "assistant", "model": "claude-sonnet-5",
               "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
               "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                         "output_tokens": 200}}  # fmt: skip
    store = MemoryStore(1 << 40)
    value = len(orjson.dumps({"m": message, "usd": None}))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()

    async def fill() -> None:  # keys and values are made here: the heap figure includes them
        for i in range(n):
            await store.put(f"{i:064x}", orjson.dumps({"m": {**message, "id": f"msg_{i:08d}"}, "usd": None}), 3600)

    asyncio.run(fill())
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    heap = sum(s.size_diff for s in after.compare_to(before, "filename"))
    counted = asyncio.run(store.usage()).bytes
    return {"entries": n, "value_bytes": value, "heap_bytes_per_entry": round(heap / n, 1),
            "store_counted_bytes_per_entry": round(counted / n, 1)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--delay", type=float, default=0.0, help="the mock's seconds between streamed chunks")
    args = ap.parse_args()
    out = {"delay": args.delay, "latency": latency(args.n, args.delay), "memory": memory_per_entry()}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
