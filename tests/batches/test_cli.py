"""``anthropic-gateway batch …`` against the real gateway: exit codes, stdout, stderr, file checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batches import item, script
from conftest import GatewayProcess, free_port
from fake_upstream import FakeUpstream


def cli(gateway_port: int, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ANTHROPIC_")}
    env |= {"ANTHROPIC_GATEWAY_HOST": "127.0.0.1", "ANTHROPIC_GATEWAY_PORT": str(gateway_port), "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "anthropic_gateway", "batch", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=cwd)  # fmt: skip


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_submit_wait_then_results_list_status(gateway: GatewayProcess, upstream: FakeUpstream, tmp_path: Path) -> None:
    script(upstream)
    src = write_jsonl(tmp_path / "in.jsonl", [item("one", "ok:first"), item("two", "fail"), item("three", "ok:3")])
    done = cli(gateway.port, tmp_path, "submit", str(src), "--wait")
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.strip()
    assert batch_id.startswith("msgbatch_") and "\n" not in batch_id
    assert f"submitted 3 request(s) as {batch_id}" in done.stderr
    assert f"{batch_id} ended: 2 succeeded, 1 errored" in done.stderr
    assert "3/3" in done.stderr  # the progress bar's last state

    out = tmp_path / "out.jsonl"
    res = cli(gateway.port, tmp_path, "results", batch_id, "-o", str(out))
    assert (res.returncode, res.stdout) == (0, "")
    assert res.stderr == f"wrote {batch_id}'s results to {out}\n"
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["custom_id"], x["result"]["type"]) for x in lines] == [("one", "succeeded"), ("two", "errored"),
                                                                        ("three", "succeeded")]  # fmt: skip
    to_stdout = cli(gateway.port, tmp_path, "results", batch_id)
    assert to_stdout.returncode == 0 and to_stdout.stdout == out.read_text()

    listed = cli(gateway.port, tmp_path, "list", "--limit", "1000")
    assert listed.returncode == 0
    mine = [line for line in listed.stdout.splitlines() if line.startswith(batch_id)]
    assert len(mine) == 1 and "ended" in mine[0] and mine[0].endswith("2 succeeded, 1 errored")

    status = cli(gateway.port, tmp_path, "status", batch_id)
    assert status.returncode == 0 and status.stderr == ""
    body = json.loads(status.stdout)
    assert body["id"] == batch_id and body["progress"]["succeeded"] == 2

    cancel = cli(gateway.port, tmp_path, "cancel", batch_id)
    assert cancel.returncode == 1 and cancel.stdout == ""
    assert cancel.stderr == (f"anthropic-gateway: Batch {batch_id} has already ended; only an unfinished batch "
                             "can be canceled (HTTP 400)\n")  # fmt: skip


def test_results_of_an_unfinished_batch_and_cancel(gateway: GatewayProcess, upstream: FakeUpstream,
                                                    tmp_path: Path) -> None:  # fmt: skip
    script(upstream)
    src = write_jsonl(tmp_path / "in.jsonl", [item("slow", "slow:15"), item("next", "ok:1")])
    batch_id = cli(gateway.port, tmp_path, "submit", str(src)).stdout.strip()
    early = cli(gateway.port, tmp_path, "results", batch_id)
    assert early.returncode == 1 and early.stdout == ""
    assert early.stderr == (f"anthropic-gateway: batch {batch_id} has not ended yet (in_progress): follow it with "
                            f"`anthropic-gateway batch status {batch_id}`\n")  # fmt: skip
    cancel = cli(gateway.port, tmp_path, "cancel", batch_id)
    assert cancel.returncode == 0
    assert json.loads(cancel.stdout)["processing_status"] == "canceling"


@pytest.mark.parametrize(("lines", "message"), [
    (['{"custom_id": "a", "params": {}}', "not json"], "in.jsonl:2: not valid JSON"),
    (['{"custom_id": "a", "params": {}}', ""], "in.jsonl:2: empty line"),
    (['["a"]'], "in.jsonl:1: expected an object with custom_id and params, got list"),
    (['{"custom_id": "a b", "params": {}}'], "in.jsonl:1: custom_id must be 1-64 letters, digits, '_' or '-', got 'a b'"),
    (['{"custom_id": "a", "params": {}}', '{"custom_id": "a", "params": {}}'],
     "in.jsonl:2: custom_id 'a' is used by an earlier line"),
    (['{"custom_id": "a", "params": 1}'], "in.jsonl:1: params must be an object"),
    (['{"custom_id": "a", "params": {}, "x": 1}'], "in.jsonl:1: unknown field 'x'"),
])  # fmt: skip
def test_a_bad_file_names_its_line_and_exits_2(tmp_path: Path, lines: list[str], message: str) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    proc = cli(free_port(), tmp_path, "submit", str(src))  # checked before any gateway is asked
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith(f"anthropic-gateway: {src.parent}/{message}"), proc.stderr


def test_a_missing_file_and_no_gateway(tmp_path: Path) -> None:
    proc = cli(free_port(), tmp_path, "submit", str(tmp_path / "nope.jsonl"))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"anthropic-gateway: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory\n"
    port = free_port()
    proc = cli(port, tmp_path, "list")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith(f"anthropic-gateway: no gateway answers at http://127.0.0.1:{port} (")
    assert proc.stderr.endswith("start one with `anthropic-gateway serve`\n")


def test_an_unknown_batch_is_exit_1(gateway: GatewayProcess, tmp_path: Path) -> None:
    proc = cli(gateway.port, tmp_path, "status", "msgbatch_unknown")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == "anthropic-gateway: message_batch: no batch with id 'msgbatch_unknown' (HTTP 404)\n"
