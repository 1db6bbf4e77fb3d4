"""Cost as the work grows (issue 15): the gateway's CPU per request and added latency over body size,
number of tools and answer length, with every feature on (access log, metrics, ledger: the defaults).

    python bench/sweep.py                 # full sweep (~2 min), writes bench/results/sweep.{json,md,svg}
    python bench/sweep.py --quick         # fewer requests per point
    python bench/sweep.py --svg docs/performance-sweep.svg   # also (re)draw the plot in the docs

Bodies are built from the captured Claude Code 2.1.197 request (tests/data or /work/shared/fixtures):

- **body size** (no tools): the captured system prompt and first turn, grown to 50 KB, 200 KB, 1 MB
  and 4 MB by repeating the captured turns - the assistant's text and tool call, the user's tool
  result - each repetition reading a different part of a file (its content real text from the
  captured body), so no two turns are byte-identical;
- **tools**: the captured first turn with 0, 24 (as captured) and 100 tools (the 24 repeated under
  new names);
- **answer length**: the captured first turn, answers of 10, 200 and 2,000 chunks.

Every request of a point is the previous one plus one short new user turn at the end, as Claude Code
sends them (the same history and a little more), so the token estimate's per-message cache works as
it does in real use. Each point is sent N times one at a time (c=1) to the gateway and to the floor
(the same mock, straight, with an OpenAI body of the same size); the gateway's CPU per request comes
from /proc, latency is the median. Every gateway answer is validated (event grammar, text, usage).

In-process, the same bodies are also timed stage by stage (decode, token estimate cold and for the
next turn, translate, encode; the fastest of several runs): the figures that must grow linearly with
the body.

The plot is a plain SVG written here (no plotting dependency: matplotlib would add ~40 MB to the dev
install and CI for three line charts).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "src"))

import orjson  # noqa: E402

from loadgen import validate_anthropic_stream  # noqa: E402
from mock_upstream import expected_answer  # noqa: E402
from run import CLK_TCK, RESULTS, cpu_seconds, free_port, start_gateway, start_mock, stop  # noqa: E402

FIXTURES = (REPO / "tests/data/claude-code-2.1.197-requests.json",
            Path("/work/shared/fixtures/claude-code-2.1.197-requests.json"))  # fmt: skip
SIZES = (50_000, 200_000, 1_000_000, 4_000_000)
TOOLS = (0, 24, 100)
CHUNKS = (10, 200, 2000)


# ------------------------------------------------------------------------------------------ bodies


def fixture() -> dict[str, Any]:
    for path in FIXTURES:
        if path.exists():
            data: dict[str, Any] = json.loads(path.read_text())
            return data
    raise SystemExit("the Claude Code fixture is missing (tests/data/claude-code-2.1.197-requests.json)")


def _corpus(fx: dict[str, Any]) -> str:
    """Real text from the captured body (tool descriptions, the system prompt): a file's content."""
    parts = [t.get("description", "") for t in fx["first_turn"]["tools"]]
    parts += [b["text"] for b in fx["first_turn"]["system"] if isinstance(b, dict)]
    return "\n\n".join(p for p in parts if p)


def grown_body(fx: dict[str, Any], size: int, tools: int = 0) -> dict[str, Any]:
    """The captured second turn, its tool call and result repeated (each over another part of a
    file) until the body is ``size`` bytes."""
    base = json.loads(json.dumps(fx["second_turn"]))
    base["tools"] = tools_of(fx, tools)
    base.pop("context_management", None)  # clearing would shrink the grown history: not what is measured
    corpus = _corpus(fx)
    messages = base["messages"]
    turn = 0
    while len(orjson.dumps(base)) < size:
        turn += 1
        start = (turn * 997) % max(len(corpus) - 4000, 1)
        content = corpus[start:start + 4000] + f"\n(lines {turn * 100}-{turn * 100 + 99})"
        tool_id = f"toolu_{turn:024x}"
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": f"I'll read part {turn} of the notes."},
            {"type": "tool_use", "id": tool_id, "name": "Read",
             "input": {"file_path": f"/home/user/project/notes/part{turn}.md"}},
        ]})  # fmt: skip
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_id, "content": content},
        ]})  # fmt: skip
    # Trim the last tool result so the body lands on the size (within a few bytes).
    over = len(orjson.dumps(base)) - size
    if turn and over > 0:
        block = messages[-1]["content"][0]
        block["content"] = block["content"][: max(len(block["content"]) - over, 10)]
    return base


def tools_of(fx: dict[str, Any], n: int) -> list[dict[str, Any]]:
    real = fx["first_turn"]["tools"]
    out = []
    for i in range(n):
        tool = json.loads(json.dumps(real[i % len(real)]))
        if i >= len(real):
            tool["name"] = f"{tool['name']}_{i // len(real)}"
        out.append(tool)
    return out


def tools_body(fx: dict[str, Any], n: int) -> dict[str, Any]:
    body = json.loads(json.dumps(fx["first_turn"]))
    body["tools"] = tools_of(fx, n)
    return body


def with_turn(body: dict[str, Any], model: str, i: int) -> bytes:
    """The body for request ``i`` of a point: one more short user turn (history unchanged)."""
    msgs = body["messages"]
    extra: list[dict[str, Any]] = []
    if msgs and msgs[-1]["role"] == "user":
        extra.append({"role": "assistant", "content": f"Done with step {i}."})
    extra.append({"role": "user", "content": f"Now step {i + 1}, please."})
    out = {**body, "model": model, "stream": True, "messages": msgs + extra}
    return orjson.dumps(out)


def floor_body(size: int, model: str) -> bytes:
    """An OpenAI body of the same size for the mock (which reads only model and stream)."""
    pad = max(size - 120, 10)
    return orjson.dumps({"model": model, "stream": True, "stream_options": {"include_usage": True},
                         "messages": [{"role": "user", "content": "x" * pad}]})  # fmt: skip


# ------------------------------------------------------------------------------------------ running


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, float]:
        t0 = time.perf_counter()
        self.conn.request("POST", path, body=body, headers={"content-type": "application/json", **headers})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, data, time.perf_counter() - t0

    def close(self) -> None:
        self.conn.close()


def point(gw_port: int, mock_port: int, gw_pid: int, body: dict[str, Any], chunks: int, n: int) -> dict[str, Any]:
    model = f"bench/text-{chunks}"
    ans = expected_answer(model)
    bodies = [with_turn(body, model, i) for i in range(n + 3)]
    size = len(bodies[0])
    errors = 0
    gw = Client(gw_port)
    for b in bodies[:3]:  # warm: the history's counts cached, the connection open
        gw.post("/v1/messages", b, {"x-api-key": "bench"})
    lat: list[float] = []
    c0 = cpu_seconds([gw_pid])
    for b in bodies[3:]:
        status, data, t = gw.post("/v1/messages", b, {"x-api-key": "bench"})
        lat.append(t)
        try:
            if status != 200:
                raise ValueError(f"status {status}")
            validate_anthropic_stream(data, ans, model)
        except Exception as err:  # counted; the first one shown
            if not errors:
                print(f"  invalid answer: {err}"[:300], file=sys.stderr)
            errors += 1
    c1 = cpu_seconds([gw_pid])
    gw.close()
    fl = Client(mock_port)
    fb = floor_body(size, model)
    for _ in range(3):
        fl.post("/v1/chat/completions", fb, {"authorization": "Bearer bench-key"})
    floor = [fl.post("/v1/chat/completions", fb, {"authorization": "Bearer bench-key"})[2] for _ in range(n)]
    fl.close()
    p50, f50 = statistics.median(lat), statistics.median(floor)
    return {"body_bytes": size, "chunks": chunks, "n": n, "errors": errors,
            "cpu_ms": round(1000 * (c1 - c0) / n, 3), "cpu_resolution_ms": round(1000 / CLK_TCK / n, 3),
            "p50_ms": round(1000 * p50, 3), "floor_p50_ms": round(1000 * f50, 3),
            "added_p50_ms": round(1000 * (p50 - f50), 3)}  # fmt: skip


def requests_for(size: int, chunks: int, quick: bool) -> int:
    # Enough requests that the CPU total is far above /proc's 10 ms tick, bounded in time.
    n = 400 if size < 100_000 else 150 if size < 500_000 else 40 if size < 2_000_000 else 12
    if chunks >= 2000:
        n = min(n, 60)
    return max(n // 3, 6) if quick else n


# ------------------------------------------------------------------------------------------ stages

STAGES = r"""
import json, sys, time, gc
sys.path.insert(0, sys.argv[1])
import msgspec, orjson
from anthropic_gateway.schemas import decode_messages_request
from anthropic_gateway.tokens import count_request_tokens, clear_cache, warm_up
from anthropic_gateway.translate.request import to_openai_request
from anthropic_gateway.routing import Router
from anthropic_gateway.settings import Settings
encode = msgspec.json.Encoder().encode
route = Router(Settings(upstream_url="http://127.0.0.1:9/v1", upstream_key="bench-key")).resolve("bench/model")
warm_up(route.upstream_model)
gc.freeze(); gc.set_threshold(10_000, 50, 100)  # as the server runs (http/app.py)
def t(fn, n):
    # The fastest of n runs: on a shared machine the others measure the neighbours.
    xs = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); xs.append(time.perf_counter() - t0)
    return round(min(xs) * 1000, 3)
out = []
for path in sys.argv[2:]:
    bodies = json.load(open(path))
    n = 5 if len(bodies[0]) > 2_000_000 else 11
    raw, nxt = bodies[0].encode(), bodies[1].encode()
    req = decode_messages_request(raw)
    row = {"body_bytes": len(raw), "decode_ms": t(lambda: decode_messages_request(raw), n)}
    def cold():
        clear_cache(); count_request_tokens(req, route.upstream_model)
    row["estimate_cold_ms"] = t(cold, n)
    count_request_tokens(req, route.upstream_model)
    req2 = decode_messages_request(nxt)
    row["estimate_next_turn_ms"] = t(lambda: count_request_tokens(req2, route.upstream_model), n)
    row["translate_ms"] = t(lambda: to_openai_request(req, route, stream=True), n)
    oai = to_openai_request(req, route, stream=True)[0]
    row["encode_ms"] = t(lambda: encode(oai), n)
    out.append(row)
print(json.dumps(out))
"""


def stages(sized: list[dict[str, Any]], tmp: Path) -> list[dict[str, Any]]:
    paths = []
    for i, body in enumerate(sized):
        p = tmp / f"stage-{i}.json"
        p.write_text(json.dumps([with_turn(body, "bench/model", 0).decode(), with_turn(body, "bench/model", 1).decode()]))
        paths.append(str(p))
    out = subprocess.run([sys.executable, "-c", STAGES, str(REPO / "src"), *paths], capture_output=True,
                         timeout=600, check=False)  # fmt: skip
    if out.returncode != 0:
        print(out.stderr.decode()[-2000:], file=sys.stderr)
        return []
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


# ------------------------------------------------------------------------------------------ the plot


def svg(data: dict[str, Any]) -> str:
    """Three panels: CPU per request over body size (log-log), over tools, over answer chunks."""
    w, h, pad = 300, 220, 46
    panels = [
        ("CPU per request (ms) over body size", data["size"], "body_bytes", True,
         lambda x: f"{x / 1e6:.0f} MB" if x >= 1e6 else f"{x / 1e3:.0f} KB"),
        ("over tools (captured first turn)", data["tools"], "tools", False, lambda x: f"{x:g}"),
        ("over answer chunks", data["chunks"], "chunks", True, lambda x: f"{x:g}"),
    ]  # fmt: skip
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{3 * w}" height="{h + 40}" '
             'font-family="sans-serif" font-size="11">', '<rect width="100%" height="100%" fill="white"/>']  # fmt: skip
    import math

    for k, (title, rows, key, logx, label) in enumerate(panels):
        ox = k * w
        xs = [float(r[key]) for r in rows]
        series = [("gateway CPU", "cpu_ms", "#c0392b"), ("added p50 latency", "added_p50_ms", "#2980b9")]
        ys = [max(float(r[s]), 1e-3) for r in rows for _, s, _ in series]
        if not xs:
            continue
        fx = (lambda v: math.log10(v)) if logx else (lambda v: v)
        x0, x1 = fx(min(xs)), fx(max(xs))
        y0, y1 = math.log10(min(ys)) - 0.1, math.log10(max(ys)) + 0.1

        def px(v: float, ox: float = ox, fx: Any = fx, x0: float = x0, x1: float = x1) -> float:
            return ox + pad + (fx(v) - x0) / ((x1 - x0) or 1) * (w - pad - 14)

        def py(v: float, y0: float = y0, y1: float = y1) -> float:
            return 20 + (y1 - math.log10(max(v, 1e-3))) / ((y1 - y0) or 1) * (h - 40)

        parts.append(f'<text x="{ox + pad}" y="13" font-weight="bold">{title}</text>')
        parts.append(f'<line x1="{ox + pad}" y1="{h - 20}" x2="{ox + w - 14}" y2="{h - 20}" stroke="#444"/>')
        parts.append(f'<line x1="{ox + pad}" y1="20" x2="{ox + pad}" y2="{h - 20}" stroke="#444"/>')
        for x in xs:
            parts.append(f'<text x="{px(x):.1f}" y="{h - 6}" text-anchor="middle">{label(x)}</text>')
        for e in range(math.floor(y0), math.ceil(y1) + 1):
            for m in (1, 3):
                v = m * 10.0**e
                if y0 <= math.log10(v) <= y1:
                    parts.append(f'<text x="{ox + pad - 4}" y="{py(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
                    parts.append(f'<line x1="{ox + pad}" y1="{py(v):.1f}" x2="{ox + w - 14}" y2="{py(v):.1f}" '
                                 'stroke="#ddd"/>')  # fmt: skip
        for name, s, colour in series:
            pts = " ".join(f"{px(float(r[key])):.1f},{py(float(r[s])):.1f}" for r in rows)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
            for r in rows:
                parts.append(f'<circle cx="{px(float(r[key])):.1f}" cy="{py(float(r[s])):.1f}" r="3" fill="{colour}"/>')
            if k == 0:
                i = series.index((name, s, colour))
                parts.append(f'<text x="{ox + pad + 10}" y="{h + 12 + 14 * i}" fill="{colour}">{name} (ms)</text>')
    parts.append(f'<text x="{w + pad}" y="{h + 26}" fill="#666">log scales; c=1, streamed, access log, metrics '
                 'and ledger on; each point the median of N requests</text>')  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def table(data: dict[str, Any]) -> str:
    lines = ["| sweep | body | tools | chunks | gateway CPU/request | added p50 | errors |", "|---|---|---|---|---|---|---|"]
    for sweep in ("size", "tools", "chunks"):
        for r in data[sweep]:
            lines.append(f"| {sweep} | {r['body_bytes'] / 1000:,.0f} KB | {r['tools']} | {r['chunks']} | {r['cpu_ms']:.2f} ms "
                         f"| {r['added_p50_ms']:+.2f} ms | {r['errors']} |")  # fmt: skip
    if data.get("stages"):
        lines += ["", "| body | decode | estimate (cold) | estimate (next turn) | translate | encode |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for r in data["stages"]:
            lines.append(f"| {r['body_bytes'] / 1000:,.0f} KB | {r['decode_ms']:.2f} ms | {r['estimate_cold_ms']:.2f} ms | "
                         f"{r['estimate_next_turn_ms']:.2f} ms | {r['translate_ms']:.2f} ms | {r['encode_ms']:.2f} ms |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--svg", type=Path, help="also write the plot here (e.g. docs/performance-sweep.svg)")
    args = ap.parse_args()
    RESULTS.mkdir(exist_ok=True)
    fx = fixture()
    mock_port, gw_port = free_port(), free_port()
    mock = start_mock(mock_port, RESULTS / "sweep-mock.log")
    gw, ready = start_gateway(gw_port, mock_port, RESULTS / "sweep-gateway.log")
    if ready is None:
        stop(mock)
        raise SystemExit("the gateway did not start; see bench/results/sweep-gateway.log")
    time.sleep(1.0)  # the tokenizer warm-up
    data: dict[str, Any] = {"size": [], "tools": [], "chunks": []}
    try:
        sized = [grown_body(fx, s) for s in SIZES]
        for size, body in zip(SIZES, sized, strict=True):
            r = point(gw_port, mock_port, gw.pid, body, 10, requests_for(size, 10, args.quick))
            data["size"].append({**r, "tools": 0})
            print(f"size {size:>9,}: {r}", flush=True)
        for n in TOOLS:
            body = tools_body(fx, n)
            r = point(gw_port, mock_port, gw.pid, body, 10, requests_for(80_000, 10, args.quick))
            data["tools"].append({**r, "tools": n})
            print(f"tools {n:>4}: {r}", flush=True)
        for c in CHUNKS:
            r = point(gw_port, mock_port, gw.pid, fx["first_turn"], c, requests_for(80_000, c, args.quick))
            data["chunks"].append({**r, "tools": len(fx["first_turn"]["tools"])})
            print(f"chunks {c:>5}: {r}", flush=True)
    finally:
        stop(gw)
        stop(mock)
    data["stages"] = stages(sized, RESULTS)
    data["conditions"] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                          "load_average": os.getloadavg(), "quick": args.quick}  # fmt: skip
    (RESULTS / "sweep.json").write_text(json.dumps(data, indent=1))
    (RESULTS / "sweep.md").write_text(table(data))
    picture = svg(data)
    (RESULTS / "sweep.svg").write_text(picture)
    if args.svg:
        args.svg.write_text(picture)
    print(table(data))
    return 1 if any(r["errors"] for s in ("size", "tools", "chunks") for r in data[s]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
