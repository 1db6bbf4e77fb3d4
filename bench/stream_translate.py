"""The stream translator alone (issue 15): StreamTranslator.feed over the bench mock's real byte stream
(bench/mock_upstream.build_stream), in-process, no I/O, so the cost per upstream chunk is the
translator's and the SSE codec's alone.

    python bench/stream_translate.py                          # µs per stream, per split (timed)
    python bench/stream_translate.py --profile                # cProfile: calls per chunk, top functions
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \
        python bench/stream_translate.py --callgrind --n 200 --split chunk   # `totals:` / (n*chunks)
    python bench/stream_translate.py --parts --split 30       # reads as the served path feeds them
    INPROC_SRC=/tmp/a/src python bench/stream_translate.py    # another revision's source tree

Splits: `chunk` feeds one read per upstream event (the mock writes each event as its own HTTP chunk,
and the direct path feeds each socket read), `coalesced` feeds reads of ~16 KB (a fast upstream's reads
hold many events), N feeds reads of N whole events (what the served benchmark reads: ≈ 30 at c=32, ≈ 7 at
c=1). `--shape openrouter`: OpenRouter's chunk envelope (see mock_upstream). Models: bench/text-200 (200 text chunks) and bench/tool-5 (text, then a tool call
in fragments). ``--callgrind`` instruments the measured loop only and prints the chunk count.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, os.environ.get("INPROC_SRC", str(BENCH.parent / "src")))
sys.path.insert(0, str(BENCH))

from anthropic_gateway.translate.context import RequestContext  # noqa: E402
from anthropic_gateway.translate.stream import StreamTranslator  # noqa: E402
from mock_upstream import SHAPES, build_stream  # noqa: E402


def _callgrind(on: bool) -> None:
    # callgrind_control (valgrind's own) switches instrumentation of this process on and off.
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], check=False,
                   capture_output=True)  # fmt: skip


def reads(model: str, split: str, size: int = 16384, shape: str = "plain") -> list[bytes]:
    events = build_stream(model, 200, shape)
    if split == "chunk":
        return events
    if split.isdigit():  # N whole events per read: the served benchmark's reads (≈ 30 at c=32, ≈ 7 at c=1)
        n = int(split)
        return [b"".join(events[i : i + n]) for i in range(0, len(events), n)]
    data = b"".join(events)
    return [data[i : i + size] for i in range(0, len(data), size)]


def pieces(model: str, split: str, shape: str = "plain") -> list[list[bytes]]:
    """The reads as the upstream client hands them over: one piece per HTTP chunk (the mock writes an
    event per chunk), N whole events per read."""
    events = build_stream(model, 200, shape)
    n = int(split) if split.isdigit() else 1
    return [events[i : i + n] for i in range(0, len(events), n)]


def run_once(model: str, parts: list[bytes] | list[list[bytes]], stream_tools: bool) -> bytes:
    ctx = RequestContext(client_model="claude-x", target_is_claude=False, stream_tool_input=stream_tools,
                         max_tokens=4096)  # fmt: skip
    t = StreamTranslator(ctx, "msg_bench", 10)
    out = [t.start()]
    if parts and isinstance(parts[0], list):
        # --parts: as the served path feeds (feed_parts), or the joined read where a tree predates it
        feed_parts = getattr(t, "feed_parts", None) or (lambda ps: t.feed(b"".join(ps)))
        for p in parts:
            out.append(feed_parts(p))
    else:
        for p in parts:
            out.append(t.feed(p))  # type: ignore[arg-type]
    out.append(t.finish())
    return b"".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bench/text-200")
    ap.add_argument("--split", default=None, help="chunk, coalesced or N (N whole events per read); default: chunk, coalesced, 7 and 30")
    ap.add_argument("--n", type=int, default=300, help="streams per measurement")
    ap.add_argument("--shape", choices=SHAPES, default="plain", help="the chunks' envelope (mock_upstream --shape)")
    ap.add_argument("--stream-tools", action="store_true", help="ctx.stream_tool_input (Claude Code's case)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--parts", action="store_true",
                    help="feed each read as its HTTP chunks (feed_parts, the served path) instead of one bytes")
    a = ap.parse_args(argv)
    if a.split is not None and a.split not in ("chunk", "coalesced") and not a.split.isdigit():
        ap.error("--split: chunk, coalesced or a number of events per read")
    for split in (a.split,) if a.split else ("chunk", "coalesced", "7", "30"):
        parts: list[bytes] | list[list[bytes]] = (
            pieces(a.model, split, a.shape) if a.parts and split != "coalesced" else reads(a.model, split, shape=a.shape)
        )
        events = len(build_stream(a.model, 200, a.shape))
        for _ in range(20):
            run_once(a.model, parts, a.stream_tools)  # warm-up
        if a.callgrind:
            _callgrind(True)
            for _ in range(a.n):
                run_once(a.model, parts, a.stream_tools)
            _callgrind(False)
            print(f"{a.model} {a.shape} {split}: {a.n} streams x {events} events = {a.n * events} events, {len(parts)} reads")
            continue
        if a.profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(a.n):
                run_once(a.model, parts, a.stream_tools)
            prof.disable()
            s = io.StringIO()
            st = pstats.Stats(prof, stream=s)
            calls = st.total_calls  # type: ignore[attr-defined]
            print(f"{a.model} {a.shape} {split}: {calls / a.n:.0f} Python calls/stream, {calls / a.n / events:.2f} per event")
            st.sort_stats("tottime").print_stats(12)
            print(s.getvalue())
            continue
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(a.n):
                run_once(a.model, parts, a.stream_tools)
            best = min(best, (time.perf_counter() - t0) / a.n)
        print(f"{a.model} {a.shape} {split}: {best * 1e6:.0f} µs/stream, {best * 1e6 / events:.2f} µs/event ({len(parts)} reads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
