"""The gateway's instructions per request through the real server, counted (issue 15).

``bench/inproc.py`` counts the ASGI app alone; this counts what a served request costs the gateway
process end to end - uvicorn's protocol, the front door, the upstream client's socket reads and the
direct stream writes included - by running ``anthropic-gateway serve`` under callgrind with
collection off, warming it up, and switching collection on (``callgrind_control -i on``) for N
requests from ``bench/loadgen.py`` only. Instruction counts do not depend on the machine's load, so
two revisions compare on a busy machine where timings cannot. The kernel's share (the system calls)
is not counted.

    python bench/served.py --stream --concurrency 32 --n 200
    python bench/served.py --stream --concurrency 1 --n 60 --mock-args="--delay 0.01 --burst 7"
    python bench/served.py --src /other/tree/src ...     # another revision's gateway, the same harness
    python bench/served.py --grow 1000000 --n 20         # bench/sweep.py's 1 MB history, c=1, 10 chunks

``--grow SIZE`` sends bench/sweep.py's Claude Code history grown to SIZE bytes instead of loadgen's
bodies, one request at a time (each the previous one plus a new turn, as Claude Code sends them),
streamed, ``bench/text-10`` answers, every answer validated.

Under callgrind the gateway runs ~50× slower, so a fast mock's whole stream arrives in one or two
socket reads; ``--mock-args="--delay D --burst K"`` paces the mock so that reads hold about K events,
as in the timed benchmark (≈ 30 events per read at c=32, ≈ 7 at c=1, measured on the bench machine).
Loopback only; every run is bounded by the request count and loadgen's timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import PY, REPO, free_port, stop, wait_ready  # noqa: E402


def totals(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="requests counted")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--body", choices=("small", "cc", "tool"), default="small")
    ap.add_argument("--chunks", type=int, default=200, help="the answer's text chunks (loadgen's bench/text-N)")
    ap.add_argument("--grow", type=int, default=0, help="bench/sweep.py's history grown to this many bytes (c=1)")
    ap.add_argument("--mock-args", default="", help='passed to mock_upstream.py, e.g. "--delay 0.01 --burst 7"')
    ap.add_argument("--src", default=str(REPO / "src"), help="the gateway's source tree (PYTHONPATH)")
    ap.add_argument("--out", default=None, help="keep the callgrind file here (for callgrind_annotate)")
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="served-"))
    out = Path(a.out) if a.out else work / "callgrind.out"
    mock_port, gw_port = free_port(), free_port()
    mock = subprocess.Popen([PY, str(BENCH / "mock_upstream.py"), "--port", str(mock_port), *a.mock_args.split()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    env = dict(os.environ, ANTHROPIC_GATEWAY_UPSTREAM_KEY="bench-key", PYTHONPATH=a.src,
               ANTHROPIC_GATEWAY_DATABASE_URL=str(work / "gateway.db"))  # fmt: skip
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", PY, "-m",
           "anthropic_gateway", "serve", "--host", "127.0.0.1", "--port", str(gw_port),
           "--upstream-url", f"http://127.0.0.1:{mock_port}/v1"]  # fmt: skip
    gw = subprocess.Popen(cmd, stdout=(work / "gateway.log").open("wb"), stderr=subprocess.STDOUT, env=env)

    grown: list[bytes] = []
    if a.grow:
        import sweep

        history = sweep.grown_body(sweep.fixture(), a.grow)
        grown = [sweep.with_turn(history, "bench/text-10", i) for i in range(a.n + 10)]

    def load_grown(n: int, first: int) -> dict[str, object]:
        import sweep
        from loadgen import validate_anthropic_stream
        from mock_upstream import expected_answer

        client, errors = sweep.Client(gw_port), 0
        for body in grown[first:first + n]:
            status, data, _ = client.post("/v1/messages", body, {"x-api-key": "bench"})
            try:
                if status != 200:
                    raise ValueError(f"status {status}")
                validate_anthropic_stream(data, expected_answer("bench/text-10"), "bench/text-10")
            except Exception as err:  # counted; the first one shown
                if not errors:
                    print(f"invalid answer: {err}"[:300], file=sys.stderr)
                errors += 1
        client.close()
        return {"errors": errors}

    def load(n: int) -> dict[str, object]:
        cmd = [PY, str(BENCH / "loadgen.py"), "--url", f"http://127.0.0.1:{gw_port}", "--target", "anthropic",
               "--body", a.body, "--concurrency", str(a.concurrency), "--duration", "900", "--warmup", "0",
               "--max-requests", str(n), "--timeout", "120", "--chunks", str(a.chunks)]  # fmt: skip
        if a.stream:
            cmd.append("--stream")
        done = subprocess.run(cmd, capture_output=True, check=True, timeout=1200)
        result: dict[str, object] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return result

    try:
        if wait_ready(gw, gw_port, 300) is None:
            raise SystemExit(f"the gateway did not start under valgrind; see {work / 'gateway.log'}")
        time.sleep(3)  # the tokenizer's warm-up and the first health probe
        if a.grow:
            load_grown(10, 0)
        else:
            load(max(2 * a.concurrency, 50))
        time.sleep(1)
        subprocess.run(["callgrind_control", "-i", "on", str(gw.pid)], check=True, capture_output=True)
        result = load_grown(a.n, 10) if a.grow else load(a.n)
        subprocess.run(["callgrind_control", "-i", "off", str(gw.pid)], check=True, capture_output=True)
    finally:
        gw.terminate()  # callgrind writes its file at exit: a slow exit under valgrind, not a kill
        try:
            gw.wait(120)
        except subprocess.TimeoutExpired:
            gw.kill()
        stop(mock)
    total = totals(out)
    errors = {k: result.get(k) for k in ("errors", "validation_errors") if result.get(k)}
    what = f"{a.grow:,}-byte history" if a.grow else a.body
    print(f"{a.n} {'streamed ' if a.stream or a.grow else ''}{what} requests at c={1 if a.grow else a.concurrency}"
          f"{' mock ' + a.mock_args if a.mock_args else ''}: {total / a.n:,.0f} instructions per request"
          f"{' ERRORS ' + str(errors) if errors else ''}")  # fmt: skip
    if a.out is None:
        out.unlink()
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
