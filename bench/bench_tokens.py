"""Token-counter benchmark on the Claude Code request (~78 KB): warm calls and the first call.

    python bench/bench_tokens.py [--fixture PATH] [--model MODEL] [--repeat N]
    python bench/bench_tokens.py --texts        # raw o200k counts: the C extension against tiktoken

``--texts`` times ``Table.count(text)`` and ``len(encode_ordinary(text))`` (best of 7 timeit runs) on
1 KB and 76 KB of the Claude Code first turn's JSON, 1 MB of standard-library source, and 82 KB of
mixed non-ASCII text (Cyrillic, CJK, Devanagari, emoji), and checks that the counts agree.

Everything runs pinned to one core. "warm" is count_request_tokens on an already-decoded request whose
system prompt and tools were seen before (the second turn after the first, then repeated), "warm+decode"
adds decoding the body, as the route does. "first call" runs in a fresh interpreter: the time of the first
count_request_tokens, tokenizer load included, plus the same after start_warm_up() was started at
start-up and had time to finish (what a server that warms up in its lifespan sees).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The repository's copy of shared/fixtures' capture (tests/paths.py), so that a worktree finds it too.
DEFAULT_FIXTURE = Path(__file__).resolve().parents[1] / "tests/data/claude-code-2.1.197-requests.json"

_FIRST_CALL = """
import json, os, sys, time
os.sched_setaffinity(0, {0})
t0 = time.perf_counter()
from anthropic_gateway.schemas import decode_messages_request
from anthropic_gateway import tokens
t1 = time.perf_counter()
if sys.argv[3] == "warm-up":
    tokens.start_warm_up(sys.argv[2]).join()
body = json.dumps(json.load(open(sys.argv[1]))["first_turn"]).encode()
req = decode_messages_request(body)
t2 = time.perf_counter()
n = tokens.count_request_tokens(req, sys.argv[2])
t3 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "first_call_ms": (t3 - t2) * 1e3, "tokens": n}))
"""


def _pin() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})


def first_call(fixture: Path, model: str, mode: str, runs: int) -> list[dict[str, float]]:
    out = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", _FIRST_CALL, str(fixture), model, mode],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        out.append(json.loads(proc.stdout))
    return out


def warm(fixture: Path, model: str, repeat: int) -> tuple[list[float], list[float], int]:
    from anthropic_gateway.schemas import decode_messages_request
    from anthropic_gateway.tokens import count_request_tokens

    data = json.loads(fixture.read_bytes())
    first = json.dumps(data["first_turn"]).encode()
    second = json.dumps(data["second_turn"]).encode()
    count_request_tokens(decode_messages_request(first), model)  # system prompt and tools now seen
    req = decode_messages_request(second)
    n = count_request_tokens(req, model)
    counted, decoded = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        count_request_tokens(req, model)
        t1 = time.perf_counter()
        count_request_tokens(decode_messages_request(second), model)
        t2 = time.perf_counter()
        counted.append((t1 - t0) * 1e3)
        decoded.append((t2 - t1) * 1e3)
    return counted, decoded, n


def texts(fixture: Path) -> None:
    import sysconfig
    import timeit

    from anthropic_gateway.tokens import _o200k, vocab

    table = _o200k.Table(vocab.read_file("o200k_base"))
    enc = vocab.get_encoding("o200k_base")
    cc = json.dumps(json.loads(fixture.read_bytes())["first_turn"])
    stdlib = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    source = ""
    for path in stdlib:
        source += path.read_text("utf-8", "surrogateescape")
        if len(source) >= 1_000_000:
            break
    mixed = ("Привет, мир! Это тест. 日本語のテキストです。 नमस्ते दुनिया 👍🏽 emoji 👨\u200d👩\u200d👧 ok. " * 1200)[:100_000]
    samples = [("1 KB (CC)", cc[:1024]), ("76 KB (CC first turn)", cc), ("1 MB (stdlib .py)", source[:1_000_000]),
               ("82 KB non-ASCII", mixed)]  # fmt: skip
    print(f"{'text':<24} {'chars':>9} {'tokens':>8} {'C ms':>9} {'tiktoken ms':>12} {'ratio':>6}")
    for label, text in samples:
        n = table.count(text)
        assert n == len(enc.encode_ordinary(text)), label
        number = max(1, 200_000 // len(text))
        c = min(timeit.repeat(lambda t=text: table.count(t), number=number, repeat=7)) / number * 1e3
        tk = min(timeit.repeat(lambda t=text: len(enc.encode_ordinary(t)), number=number, repeat=7)) / number * 1e3
        print(f"{label:<24} {len(text):>9} {n:>8} {c:>9.3f} {tk:>12.3f} {tk / c:>5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE)
    parser.add_argument("--model", default="anthropic/claude-sonnet-4.5")
    parser.add_argument("--repeat", type=int, default=500)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--texts", action="store_true", help="raw o200k counts: C extension vs tiktoken")
    args = parser.parse_args()
    _pin()
    if args.texts:
        texts(args.fixture)
        return

    counted, decoded, n = warm(args.fixture, args.model, args.repeat)
    print(f"fixture {args.fixture.name}, model {args.model}, {n} tokens (second turn), one core")
    for label, xs in (("warm count", counted), ("warm decode+count", decoded)):
        xs.sort()
        print(f"{label:<22} median {statistics.median(xs):.3f} ms  p99 {xs[int(len(xs) * 0.99) - 1]:.3f} ms")
    for mode, label in (("lazy", "first call (lazy load)"), ("warm-up", "first call after warm-up")):
        runs = first_call(args.fixture, args.model, mode, args.cold_runs)
        ms = sorted(r["first_call_ms"] for r in runs)
        print(f"{label:<26} median {statistics.median(ms):.1f} ms  min {ms[0]:.1f}  max {ms[-1]:.1f}"
              f"  (import {statistics.median(r['import_ms'] for r in runs):.1f} ms)")  # fmt: skip


if __name__ == "__main__":
    main()
