"""Provider prompt caching through the gateway: a 10-turn Claude Code 2.1.332 conversation (built
from the captures' haiku turns: each turn adds a tool call, its result and a `<total_tokens>` system
message carrying the moving breakpoint; earlier `<total_tokens>` messages stay in the history without
it) sent through the gateway to an upstream that caches like Anthropic: a breakpoint writes the
prefix up to it; a request reads the longest written prefix ending at or up to 20 blocks before one of
its breakpoints. Prints the share of input tokens served as cache reads.

    python bench/prompt_cache_replay.py                      # this checkout
    git archive REV src | tar -x -C /tmp/before && python bench/prompt_cache_replay.py --src /tmp/before/src
    python bench/prompt_cache_replay.py --cch                # a per-request cch= in the attribution block

Tokens are estimated as the JSON size of a block / 4 (the share, not the count, is the figure).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "tests" / "data" / "claude-code-2.1.332-requests.json"
LOOKBACK = 20


def conversation(turns: int, cch: bool, captures: Path = CAPTURES) -> list[dict[str, Any]]:
    data = json.loads(captures.read_text())
    first, second = data["haiku_first_turn"], data["haiku_second_turn"]
    assistant, result = second["messages"][2], second["messages"][3]
    opening = copy.deepcopy(second["messages"][:2])  # user, the environment system message (unmarked)
    bodies = [copy.deepcopy(first)]
    history = list(opening)
    for t in range(1, turns):
        call = copy.deepcopy(assistant)
        call["content"][1]["id"] = f"toolu_{t:02d}"
        res = copy.deepcopy(result)
        res["content"][0]["tool_use_id"] = f"toolu_{t:02d}"
        note = f"<total_tokens>{14997420 - 5000 * t} tokens left</total_tokens>"
        body = copy.deepcopy(second)
        body["messages"] = [*history, call, res,
                            {"role": "system", "content": [{"type": "text", "text": note,
                                                            "cache_control": {"type": "ephemeral"}}]}]  # fmt: skip
        bodies.append(body)
        history += [call, res, {"role": "system", "content": note}]
    if cch:
        for i, body in enumerate(bodies):
            body["system"][0]["text"] += f" cch={hashlib.sha1(str(i).encode()).hexdigest()[:5]};"
    return bodies


# --- an upstream that caches like Anthropic ------------------------------------------------------


def blocks(body: dict[str, Any]) -> list[tuple[bytes, bool]]:
    """(block JSON without its mark, whether it carries a breakpoint), in prompt order."""
    out: list[tuple[bytes, bool]] = []

    def add(item: Any) -> None:
        mark = isinstance(item, dict) and "cache_control" in item
        plain = {k: v for k, v in item.items() if k != "cache_control"} if isinstance(item, dict) else item
        out.append((json.dumps(plain, sort_keys=True).encode(), mark))

    for tool in body.get("tools") or ():
        add(tool)
    for msg in body["messages"]:
        content = msg.get("content")
        if msg.get("tool_calls"):
            add({"calls": msg["tool_calls"]})
        if isinstance(content, list):
            for part in content:
                add(part)
        elif content:
            add({"role": msg["role"], "text": content, **({"cache_control": 1} if "cache_control" in msg else {})})
    if "cache_control" in body and out:
        out[-1] = (out[-1][0], True)
    return out


class PrefixCache:
    def __init__(self) -> None:
        self.written: set[bytes] = set()

    def usage(self, body: dict[str, Any]) -> dict[str, Any]:
        bl = blocks(body)
        hashes, tokens = [], []
        h, total = hashlib.sha256(), 0
        for raw, _ in bl:
            h.update(raw)
            hashes.append(h.copy().digest())
            total += max(len(raw) // 4, 1)
            tokens.append(total)
        marks = [i for i, (_, m) in enumerate(bl) if m]
        read = 0
        for b in marks:
            for p in range(b, max(b - LOOKBACK, -1), -1):
                if hashes[p] in self.written:
                    read = max(read, tokens[p])
                    break
        last = tokens[marks[-1]] if marks else 0
        written = max(last - read, 0)
        self.written.update(hashes[b] for b in marks)
        return {"prompt_tokens": total, "completion_tokens": 1,
                "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written}}  # fmt: skip


def run_upstream(port: int, cache: PrefixCache, seen: list[dict[str, Any]]) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        usage = cache.usage(body)
        chunks = [{"choices": [{"index": 0, "delta": {"content": "ok"}}]},
                  {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                  {"choices": [], "usage": usage}]  # fmt: skip
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for c in chunks:
            await resp.write(b"data: " + json.dumps({"id": "gen", "object": "chat.completion.chunk", **c}).encode()
                             + b"\n\n")  # fmt: skip
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/v1/chat/completions", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=False)


# --- the run -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _usage_of(sse_text: str) -> dict[str, Any]:
    for frame in sse_text.split("\n\n"):
        if frame.startswith("event: message_delta"):
            return dict(json.loads(frame.split("data: ", 1)[1])["usage"])
    raise RuntimeError(f"no message_delta in {sse_text[:300]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(ROOT / "src"), help="the gateway source tree to run")
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--cch", action="store_true", help="a per-request cch= in the attribution block")
    ap.add_argument("--captures", type=Path, default=CAPTURES)
    args = ap.parse_args()
    up_port, gw_port = _free_port(), _free_port()
    cache, seen = PrefixCache(), []
    threading.Thread(target=run_upstream, args=(up_port, cache, seen), daemon=True).start()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}, "PYTHONPATH": args.src,
           "ANTHROPIC_GATEWAY_BACKEND_KIND": "openrouter", "ANTHROPIC_GATEWAY_UPSTREAM_KEY": "sk-bench",
           "ANTHROPIC_GATEWAY_HAIKU_MODEL": "anthropic/claude-haiku-4.5", "ANTHROPIC_GATEWAY_DATABASE_URL": ":memory:",
           "ANTHROPIC_GATEWAY_ACCESS_LOG": "false", "ANTHROPIC_GATEWAY_LOG_LEVEL": "warning"}  # fmt: skip
    gw = subprocess.Popen([sys.executable, "-m", "anthropic_gateway", "serve", "--port", str(gw_port),
                           "--upstream-url", f"http://127.0.0.1:{up_port}/v1"], env=env)  # fmt: skip
    try:
        for _ in range(400):
            try:
                c = http.client.HTTPConnection("127.0.0.1", gw_port, timeout=1)
                c.request("GET", "/")
                c.getresponse().read()
                break
            except OSError:
                time.sleep(0.05)
        rows, totals = [], {"input": 0, "read": 0, "write": 0}
        conn = http.client.HTTPConnection("127.0.0.1", gw_port, timeout=60)
        for i, body in enumerate(conversation(args.turns, args.cch, args.captures)):
            conn.request("POST", "/v1/messages", json.dumps(body).encode(),
                         {"content-type": "application/json", "x-claude-code-session-id": "bench-session"})  # fmt: skip
            resp = conn.getresponse()
            text = resp.read().decode()
            assert resp.status == 200, text[:300]
            u = _usage_of(text)
            fresh, read, write = u["input_tokens"], u["cache_read_input_tokens"], u["cache_creation_input_tokens"]
            totals["input"] += fresh + read + write
            totals["read"] += read
            totals["write"] += write
            rows.append({"turn": i + 1, "input": fresh + read + write, "cache_read": read, "cache_write": write})
        share = totals["read"] / totals["input"]
        later = rows[1:]
        share_later = sum(r["cache_read"] for r in later) / sum(r["input"] for r in later)
        print(json.dumps({"src": args.src, "cch": args.cch, "turns": rows,
                          "session_id_sent": [b.get("session_id") for b in seen][:1],
                          "share_cache_read": round(share, 4), "share_cache_read_turns_2_on": round(share_later, 4)},
                         indent=1))  # fmt: skip
    finally:
        gw.terminate()
        gw.wait(10)
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop(asyncio.new_event_loop())
    raise SystemExit(main())
