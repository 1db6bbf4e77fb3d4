"""Message Batches benchmark (issue 10): one N-request batch vs the same N requests sent one by one.

Starts the fast mock upstream (bench/mock_upstream.py) and, for each mode, a fresh gateway on its own
store file, then measures:

- ``batch``: POST /v1/messages/batches with N requests, poll until ended, then read every result line
  through /results. Requests/s from submission to ``ended``; results read time.
- ``individual``: the same N requests as POST /v1/messages, non-streamed, from C concurrent
  connections (C = the batch engine's concurrency).

Each mode reports the gateway's peak RSS (VmHWM, so nothing between samples is missed) and, for the
batch, the store's size (database + WAL) after the results are read. ``--sizes`` runs the batch mode
for several N to show the peak RSS is flat in the batch size.

``--postgres URL`` keeps the store in PostgreSQL instead (a database of the bench's own, created on
that server and dropped at the end), and ``--replicas R`` starts R gateways on it: the batch is
submitted to the first and every replica works on it; each one's share comes from its /metrics.

    python bench/batch_bench.py                      # N=10000, C=32
    python bench/batch_bench.py --sizes 1000,10000,50000 --only batch
    python bench/batch_bench.py --only batch --postgres postgresql://postgres@127.0.0.1:5432/test --replicas 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
MODEL = "bench/text-20"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], limit: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer within {limit}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_gateway(mock_port: int, db: Path | str, concurrency: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env |= {"ANTHROPIC_GATEWAY_UPSTREAM_KEY": "bench-key", "ANTHROPIC_GATEWAY_DATABASE_URL": str(db),
            "ANTHROPIC_GATEWAY_BATCH_CONCURRENCY": str(concurrency), "ANTHROPIC_GATEWAY_ACCESS_LOG": "false",
            "ANTHROPIC_GATEWAY_LOG_LEVEL": "warning"}  # fmt: skip
    cmd = [PY, "-m", "anthropic_gateway", "serve", "--port", str(port),
           "--upstream-url", f"http://127.0.0.1:{mock_port}/v1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/", proc)
    return proc, url


def params(i: int) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": f"Say hello to number {i}."}]}


async def run_batch(url: str, n: int) -> dict[str, Any]:
    body = json.dumps({"requests": [{"custom_id": f"r{i}", "params": params(i)} for i in range(n)]}).encode()
    async with aiohttp.ClientSession() as http:
        t0 = time.perf_counter()
        async with http.post(url + "/v1/messages/batches", data=body,
                             headers={"content-type": "application/json"}) as resp:  # fmt: skip
            batch = await resp.json()
            assert resp.status == 200, batch
        accepted = time.perf_counter() - t0
        while True:
            async with http.get(f"{url}/v1/messages/batches/{batch['id']}") as resp:
                batch = await resp.json()
            if batch["processing_status"] == "ended":
                break
            await asyncio.sleep(0.1)
        ended = time.perf_counter() - t0
        t1 = time.perf_counter()
        lines = succeeded = 0
        async with http.get(url + batch["results_url"]) as resp:
            async for line in resp.content:
                lines += 1
                succeeded += b'"type":"succeeded"' in line
        read = time.perf_counter() - t1
    assert lines == n and succeeded == n, (lines, succeeded, batch["request_counts"])
    return {"accepted_s": round(accepted, 3), "ended_s": round(ended, 2), "requests_per_s": round(n / ended, 1),
            "results_read_s": round(read, 2), "body_mb": round(len(body) / 1e6, 2)}  # fmt: skip


def batch_requests(url: str) -> int:
    """Batch requests this replica has answered (its /metrics)."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("gateway_requests_total{") and 'route="batch"' in line))  # fmt: skip


def pg_admin(server: str, sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(server, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def pg_database(server: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    pg_admin(server, f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(server)._replace(path="/" + name))


async def run_individual(url: str, n: int, concurrency: int) -> dict[str, Any]:
    queue = iter(range(n))
    ok = 0

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal ok
        for i in queue:
            async with http.post(url + "/v1/messages", json=params(i)) as resp:
                body = await resp.read()
                ok += resp.status == 200 and b'"type":"message"' in body

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        took = time.perf_counter() - t0
    assert ok == n, ok
    return {"ended_s": round(took, 2), "requests_per_s": round(n / took, 1)}


def store_mb(db: Path) -> float:
    return round(sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 1e6, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000", help="comma-separated batch sizes (default 10000)")
    ap.add_argument("--concurrency", type=int, default=32, help="batch_concurrency and client connections")
    ap.add_argument("--only", choices=("batch", "individual"), help="run one mode")
    ap.add_argument("--postgres", metavar="URL", help="a PostgreSQL server: the store in a database of its own there")
    ap.add_argument("--replicas", type=int, default=1, help="gateways sharing the PostgreSQL store (default 1)")
    args = ap.parse_args()
    if args.replicas > 1 and not args.postgres:
        ap.error("--replicas needs --postgres: replicas share a PostgreSQL store")
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    mock_port = free_port()
    mock = subprocess.Popen([PY, str(REPO / "bench" / "mock_upstream.py"), "--port", str(mock_port), "--chunks", "20"],
                            stdout=(work / "mock.log").open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    report: list[dict[str, Any]] = []
    try:
        wait_ready(f"http://127.0.0.1:{mock_port}/", mock)
        for n in sizes:
            modes = [args.only] if args.only else ["batch", "individual"]
            for mode in modes:
                db: Path | str = work / f"{mode}-{n}.db"
                pg_name = f"gw_bench_{os.getpid()}_{mode}_{n}"
                if args.postgres:
                    db = pg_database(args.postgres, pg_name)
                gws = []
                try:
                    for r in range(args.replicas):
                        gws.append(start_gateway(mock_port, db, args.concurrency, work / f"{mode}-{n}-{r}.log"))
                    gw, url = gws[0]
                    base_rss = peak_rss_mb(gw.pid)
                    if mode == "batch":
                        row = asyncio.run(run_batch(url, n))
                        if isinstance(db, Path):
                            row["store_mb"] = store_mb(db)
                        if args.replicas > 1:
                            shares = [batch_requests(u) for _, u in gws]
                            row["per_replica"] = shares
                            row["per_replica_per_s"] = [round(s / row["ended_s"], 1) for s in shares]
                    else:
                        row = asyncio.run(run_individual(url, n, args.concurrency))
                    row |= {"mode": mode, "n": n, "concurrency": args.concurrency, "replicas": args.replicas,
                            "store": "postgresql" if args.postgres else "sqlite",
                            "rss_at_start_mb": round(base_rss, 1), "peak_rss_mb": round(peak_rss_mb(gw.pid), 1)}  # fmt: skip
                finally:
                    for gw, _ in gws:
                        stop(gw)
                    if args.postgres:
                        pg_admin(args.postgres, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
                report.append(row)
                print(json.dumps(row), flush=True)
    finally:
        stop(mock)
    print(f"(logs and stores in {work})")


if __name__ == "__main__":
    main()
