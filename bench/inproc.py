"""The gateway's own cost per request, counted in-process (issue 15): the ASGI app (front door,
handler, service, sinks) driven directly for N requests against the bench mock on loopback, with no
HTTP server around it and no load generator beside it, so the counts are the gateway's alone.

    python bench/inproc.py                      # 2,000 non-streamed small requests: µs/request (timed)
    python bench/inproc.py --profile            # cProfile: Python calls per request, top functions
    python bench/inproc.py --body cc --n 300    # the Claude Code first-turn body (~76 KB)
    python bench/inproc.py --grow 1000000 --chunks 10 --n 30   # bench/sweep.py's 1 MB history
    python bench/inproc.py --tools 100 --chunks 10 --n 100     # bench/sweep.py's 100-tool first turn
    INPROC_SRC=/tmp/a/src python bench/inproc.py               # another revision's source tree
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \
        python bench/inproc.py --n 400 --callgrind  # instructions: `totals:` in /tmp/cg.out, over N

``--callgrind`` instruments the measured loop only (start-up and warm-up excluded) and prints the
request count; the instruction count (the same whatever the machine's load, to about 2% for small
requests, whose ledger and log batching depend on timing) is the file's ``totals:`` line, and
``callgrind_annotate`` splits it by C function. The mock runs as its own process (started here on a
free port, stopped at the end). Access log (to /dev/null), metrics and ledger (a SQLite file in a
temporary directory) are on, as in ``serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, os.environ.get("INPROC_SRC", str(REPO / "src")))  # INPROC_SRC: another tree (A/B)
sys.path.insert(0, str(BENCH))

import orjson  # noqa: E402

from loadgen import anthropic_body  # noqa: E402
from run import free_port  # noqa: E402


def _callgrind(on: bool) -> None:
    # callgrind_control (valgrind's own) switches instrumentation of this process on and off.
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


class _Flow:
    """The server protocol's flow control as ClientLeft sees it (connection_limits.py)."""

    read_paused = False

    def resume_reading(self) -> None:
        pass


async def drive(app: Any, bodies: list[bytes], n: int, hook: Any = None) -> list[int]:
    """``n`` requests after 10 warm-up ones; request ``i`` sends ``bodies[i % len(bodies)]``. Each
    scope carries the disconnect notice the gateway's server protocol gives (a tree without it: none)."""
    statuses: list[int] = []
    try:
        from anthropic_gateway.connection_limits import DISCONNECT, ClientLeft
    except ImportError:
        DISCONNECT = ClientLeft = None

    async def one(body: bytes) -> None:
        headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()), (b"x-api-key", b"bench-key-0123456789")]  # fmt: skip
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/messages", "raw_path": b"/v1/messages", "query_string": b"",
                 "root_path": "", "headers": list(headers), "client": ("127.0.0.1", 5555),
                 "server": ("127.0.0.1", 8080)}  # fmt: skip
        if ClientLeft is not None:
            scope["extensions"] = {DISCONNECT: ClientLeft(_Flow())}
        sent = False
        never = asyncio.get_running_loop().create_future()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await never
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        never.cancel()

    for i in range(10):  # warm: connection pool, caches
        await one(bodies[i % len(bodies)])
    statuses.clear()
    if hook is not None:
        hook(True)
    for i in range(10, 10 + n):
        await one(bodies[i % len(bodies)])
    if hook is not None:
        hook(False)
    return statuses


async def main_async(args: argparse.Namespace, mock_port: int, tmp: str) -> int:
    from anthropic_gateway.http import create_app
    from anthropic_gateway.ops import access_log
    from anthropic_gateway.settings import load_settings

    os.environ["ANTHROPIC_GATEWAY_UPSTREAM_KEY"] = "bench-key"
    os.environ["ANTHROPIC_GATEWAY_DATABASE_URL"] = str(Path(tmp) / "gateway.db")
    settings = load_settings(config_path=None, host="127.0.0.1", port=8080, upstream_url=f"http://127.0.0.1:{mock_port}/v1")
    sys.stdout = open(os.devnull, "w")  # the access log's lines  # noqa: SIM115
    access_log.configure(settings.access_log)
    app = create_app(settings)
    model = f"bench/text-{args.chunks}"
    if args.grow:  # as bench/sweep.py: the Claude Code history grown to GROW bytes, each request one turn more
        import sweep

        grown = sweep.grown_body(sweep.fixture(), args.grow, args.tools or 0)
        raws = [orjson.dumps({**orjson.loads(sweep.with_turn(grown, model, i)), "stream": args.stream})
                for i in range(args.n + 10)]  # fmt: skip
    elif args.tools is not None:  # as bench/sweep.py's tools points: the first turn with N tools, a turn more each
        import sweep

        body = sweep.tools_body(sweep.fixture(), args.tools)
        raws = [orjson.dumps({**orjson.loads(sweep.with_turn(body, model, i)), "stream": args.stream})
                for i in range(args.n + 10)]  # fmt: skip
    else:
        raws = [orjson.dumps(anthropic_body(args.body, args.stream, model))]

    lifespan_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan_out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    life = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                   lifespan_in.get, lifespan_out.put))  # fmt: skip
    await lifespan_in.put({"type": "lifespan.startup"})
    await lifespan_out.get()
    await asyncio.sleep(1.5)  # the tokenizer warm-up
    from anthropic_gateway import tokens

    tokens.warm_up(settings.sonnet_model)
    # The prober's first round (after 0.5 s, aiohttp imported in a thread) must be over before the
    # measured loop: under valgrind's slow clock it otherwise lands inside it (~100M instructions).
    prober = app.gateway.prober
    for _ in range(600):
        if prober._task is None or len(prober.results) == len(prober.backends):
            break
        await asyncio.sleep(0.1)
    out = sys.__stdout__
    assert out is not None
    if args.callgrind:
        statuses = await drive(app, raws, args.n, _callgrind)
        print(f"{len(statuses)} requests, statuses {sorted(set(statuses))}", file=out)
    elif args.profile:
        prof = cProfile.Profile()
        statuses = await drive(app, raws, args.n, lambda on: prof.enable() if on else prof.disable())
        stats = pstats.Stats(prof, stream=io.StringIO())
        calls = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
        print(f"{len(statuses)} requests, statuses {sorted(set(statuses))}: {calls / args.n:.1f} Python calls/request",
              file=out)  # fmt: skip
        if args.dump:
            prof.dump_stats(args.dump)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(args.sort).print_stats(args.top)
        print(buf.getvalue(), file=out)
    else:
        t0, c0 = time.perf_counter(), time.process_time()
        statuses = await drive(app, raws, args.n)
        t1, c1 = time.perf_counter(), time.process_time()
        print(f"{len(statuses)} requests, statuses {sorted(set(statuses))}: {1e6 * (t1 - t0) / args.n:.0f} µs wall, "
              f"{1e6 * (c1 - c0) / args.n:.0f} µs CPU per request (mock included in wall only)", file=out)  # fmt: skip
    await lifespan_in.put({"type": "lifespan.shutdown"})
    await lifespan_out.get()
    await life
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--body", choices=("small", "cc", "tool"), default="small")
    ap.add_argument("--stream", action="store_true", help="streamed requests (the answer is read whole)")
    ap.add_argument("--chunks", type=int, default=200)
    ap.add_argument("--grow", type=int, default=0, help="bytes: the grown Claude Code history of bench/sweep.py")
    ap.add_argument("--tools", type=int, help="bench/sweep.py's tools point: the first turn with this many tools (with --grow: the history with them)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--dump", help="--profile: also write the stats to this file")
    ap.add_argument("--callgrind", action="store_true")
    args = ap.parse_args()
    mock_port = free_port()
    mock = subprocess.Popen([sys.executable, str(BENCH / "mock_upstream.py"), "--port", str(mock_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(1.0)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                import uvloop

                return uvloop.run(main_async(args, mock_port, tmp))
            except ImportError:
                return asyncio.run(main_async(args, mock_port, tmp))
    finally:
        mock.terminate()
        mock.wait(5)


if __name__ == "__main__":
    raise SystemExit(main())
