"""Where the gateway's memory goes (issue 15): RSS after start, once idle, under streaming load.

    python bench/memory.py                      # start, idle, first count, stream c=128 for 5 s
    python bench/memory.py --env ANTHROPIC_GATEWAY_TOKENIZER_PRELOAD=false
    python bench/memory.py --seconds 0          # no load: start-up and idle only
    python bench/memory.py --imports            # also: RSS each imported package adds (in-process)
    python bench/memory.py --seconds 60 --requests 3000   # the same work on a slow machine (peaks compare)

Starts the mock and a gateway as bench/run.py does (gateway on core 0, defaults: access log,
metrics, ledger on SQLite), on their own ports and store file. Prints, in MB:

- RSS right after the first 200 on GET /, and once idle (the tokenizer warm-up done: RSS unchanged
  for 1 s), with the breakdown from /proc/PID/smaps: anonymous memory (heap, thread arenas, Python's
  arenas, the tokenizer's tables: what the process alone pays for) and file-backed pages (shared
  libraries, clean and reclaimable), and the largest anonymous mappings;
- the latency of the first POST /v1/messages/count_tokens (must stay fast: the tokenizer is loaded);
- peak RSS (sampled every 50 ms) and VmHWM under the load, and RSS after it.

`--json` prints the figures as one JSON object instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402  (bench/run.py: the same start-up, sampling and load generator)

MB = 1024.0


def smaps(pid: int) -> dict[str, Any]:
    """Resident kB per kind of mapping, from /proc/PID/smaps."""
    total: Counter[str] = Counter(rss=0, heap=0, anon=0)  # no [heap] under another malloc (jemalloc)
    anon_maps: list[tuple[int, str]] = []
    name = ""
    start = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 5)
        if head and "-" in head[0] and not head[0].endswith(":"):
            name = head[5].strip() if len(head) > 5 else ""
            start = head[0]
        elif head[0] == "Rss:":
            kb = int(head[1])
            total["rss"] += kb
            if name == "[heap]":
                total["heap"] += kb
            elif name == "" or name.startswith("[stack") or name.startswith("[anon"):
                anon_maps.append((kb, start))
        elif head[0] == "Anonymous:":
            total["anon"] += int(head[1])
    total["file"] = total["rss"] - total["anon"]
    total["anon_mmap"] = sum(kb for kb, _ in anon_maps)
    by_start = {start: kb for kb, start in anon_maps}
    anon_maps.sort(reverse=True)
    return {
        "by_start": by_start,
        **{k: v / MB for k, v in total.items()},
        "largest_anon_mappings": [(start, kb / MB) for kb, start in anon_maps[:6]],
        "anon_mappings_over_1mb": sum(1 for kb, _ in anon_maps if kb > 1024),
    }


def status(pid: int, key: str) -> float:
    return run.rss_mb([pid], key)


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def wait_idle(pid: int, limit: float = 15.0) -> float:
    """Seconds until RSS has not moved by more than 0.2 MB for 1 s (the warm-up thread is done)."""
    t0 = time.perf_counter()
    last, since = status(pid, "VmRSS"), time.perf_counter()
    while time.perf_counter() - t0 < limit:
        time.sleep(0.05)
        now = status(pid, "VmRSS")
        if abs(now - last) > 0.2:
            last, since = now, time.perf_counter()
        elif time.perf_counter() - since >= 1.0:
            break
    return time.perf_counter() - t0


def import_costs() -> list[tuple[float, str]]:
    """RSS each top-level package adds when the server's modules are imported (a fresh interpreter)."""
    script = r"""
import importlib.abc, json, sys
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096 / 1048576
stack, own = [], {}
class Loader(importlib.abc.Loader):
    def __init__(self, inner): self.inner = inner
    def create_module(self, spec): return self.inner.create_module(spec)
    def exec_module(self, module):
        stack.append(0.0); t = rss()
        try: self.inner.exec_module(module)
        finally:
            spent = rss() - t; children = stack.pop()
            top = module.__name__.split('.')[0]
            own[top] = own.get(top, 0.0) + spent - children
            if stack: stack[-1] += spent
class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        for f in sys.meta_path:
            if f is self or not hasattr(f, 'find_spec'): continue
            spec = f.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, 'exec_module'):
                    spec.loader = Loader(spec.loader)
                return spec
        return None
sys.meta_path.insert(0, Finder())
base = rss()
import anthropic_gateway.cli, anthropic_gateway.http.app, uvloop  # what `serve` imports before start
print(json.dumps({"base": base, "total": rss() - base, "own": own}))
"""
    env = dict(os.environ, PYTHONPATH=str(run.REPO / "src"))
    out = subprocess.run([run.PY, "-c", script], capture_output=True, text=True, env=env, check=True)
    data = json.loads(out.stdout)
    rows = sorted(((mb, name) for name, mb in data["own"].items()), reverse=True)
    return [(data["base"], "(interpreter before imports)"), (data["total"], "(all imports)"), *rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mock-port", type=int, default=19020)
    ap.add_argument("--port", type=int, default=19021)
    ap.add_argument("--seconds", type=float, default=5.0, help="load duration; 0 for none")
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--requests", type=int, default=1_000_000, help="stop the load after this many requests")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the gateway (repeatable)")
    ap.add_argument("--imports", action="store_true", help="also list the RSS each package's import adds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    out_dir = run.RESULTS / "memory"
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in args.env:
        key, _, value = item.partition("=")
        os.environ[key] = value
    db = out_dir / "gateway.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    res: dict[str, Any] = {"env": args.env}
    mock = run.start_mock(args.mock_port, out_dir / "mock.log")
    gateway = None
    try:
        gateway, ready = run.start_gateway(args.port, args.mock_port, out_dir / "gateway.log")
        if ready is None:
            raise SystemExit(f"gateway did not start; see {out_dir / 'gateway.log'}")
        pid = gateway.pid
        res["startup_ms"] = ready * 1000
        res["rss_ready"] = status(pid, "VmRSS")
        res["idle_after_s"] = wait_idle(pid)
        res["rss_idle"] = status(pid, "VmRSS")
        res["threads_idle"] = threads(pid)
        res["smaps_idle"] = smaps(pid)
        res["first_count_tokens_ms"], res["first_count_tokens_status"] = run.count_tokens_ms(args.port)
        res["second_count_tokens_ms"], _ = run.count_tokens_ms(args.port)
        if args.seconds > 0:
            cell = run.Cell(f"stream c={args.concurrency}", "small", True, args.concurrency)
            url = f"http://127.0.0.1:{args.port}"
            with run.RssSampler([pid]) as sampler:
                load = run.loadgen(url, "anthropic", cell, args.seconds, 0.5, args.requests)
            res["load"] = {k: load.get(k) for k in ("requests", "errors", "rps") if k in load}
            res["rss_peak_load"] = sampler.peak
            res["vmhwm"] = status(pid, "VmHWM")
            time.sleep(1.0)
            res["rss_after_load"] = status(pid, "VmRSS")
            res["threads_after_load"] = threads(pid)
            res["smaps_after_load"] = smaps(pid)
            before = res["smaps_idle"]["by_start"]
            grown = [
                (kb - before.get(start, 0), start)
                for start, kb in res["smaps_after_load"]["by_start"].items()
            ]
            res["anon_growth_under_load"] = [
                (start, kb / MB) for kb, start in sorted(grown, reverse=True)[:6]
            ]
    finally:
        run.stop(gateway)
        run.stop(mock)
    if args.imports:
        res["imports"] = import_costs()
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    idle = res["smaps_idle"]
    print(f"gateway env: {' '.join(args.env) or '(defaults)'}")
    print(f"start-up {res['startup_ms']:.0f} ms; RSS at first 200 {res['rss_ready']:.1f} MB")
    print(
        f"idle (after {res['idle_after_s']:.1f} s): RSS {res['rss_idle']:.1f} MB = anonymous {idle['anon']:.1f} "
        f"(heap {idle['heap']:.1f}, anonymous mappings {idle['anon_mmap']:.1f}) + file-backed {idle['file']:.1f}; "
        f"{res['threads_idle']} threads"
    )
    print(
        "  largest anonymous mappings (MB):",
        ", ".join(f"{mb:.1f}" for _, mb in idle["largest_anon_mappings"]),
    )
    print(
        f"first count_tokens {res['first_count_tokens_ms']:.1f} ms (HTTP {res['first_count_tokens_status']}), "
        f"second {res['second_count_tokens_ms']:.1f} ms"
    )
    if "rss_peak_load" in res:
        after = res["smaps_after_load"]
        print(
            f"stream c={args.concurrency} for {args.seconds:g} s: {res['load']}; peak RSS {res['rss_peak_load']:.1f} MB, "
            f"VmHWM {res['vmhwm']:.1f} MB; RSS 1 s after {res['rss_after_load']:.1f} MB "
            f"(anonymous {after['anon']:.1f}, heap {after['heap']:.1f}); {res['threads_after_load']} threads"
        )
    if "anon_growth_under_load" in res:
        print(
            "  anonymous mappings that grew most (MB):",
            ", ".join(f"{mb:+.1f}" for _, mb in res["anon_growth_under_load"]),
        )
    for mb, name in res.get("imports", [])[:20]:
        print(f"  import {mb:6.1f} MB  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
