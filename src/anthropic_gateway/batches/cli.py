"""``anthropic-gateway batch submit|list|status|results|cancel``: Message Batches from the shell.

It talks to a running gateway at the address and with the key ``anthropic-gateway env`` would give
Claude Code (the settings: host, port, the first of api_keys). Exit codes: 0 done; 1 the gateway
refused or could not be reached (its error is printed); 2 a bad file or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from anthropic_gateway.batches.envelope import CUSTOM_ID

POLL_SECONDS = 0.5
CHUNK = 64 * 1024


class CLIError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub: Any) -> None:
    batch = sub.add_parser(
        "batch", help="submit and follow Message Batches on a running gateway",
        description="Message Batches on a running gateway (its address and key come from the same settings "
        "as `anthropic-gateway env`). Exit codes: 0 done, 1 the gateway refused or is not running, 2 a bad "
        "file or configuration.",
    )  # fmt: skip
    cmds = batch.add_subparsers(dest="batch_command", metavar="SUBCOMMAND", required=True)
    submit = cmds.add_parser("submit", help="validate FILE (one {custom_id, params} per line) and submit it",
                             description="Validate FILE (JSON Lines, one {custom_id, params} object per line; the "
                             "first bad line is named) and submit it as a batch; prints the batch id.")  # fmt: skip
    submit.add_argument("file", type=Path, metavar="FILE")
    submit.add_argument("--wait", action="store_true", help="show a progress bar until the batch has ended")
    cmds.add_parser("list", help="the most recent batches").add_argument(
        "--limit", type=int, default=20, metavar="N", help="how many (1-1000, default 20)")  # fmt: skip
    cmds.add_parser("status", help="a batch and its live progress, as JSON").add_argument("id", metavar="ID")
    results = cmds.add_parser("results", help="an ended batch's results (JSON Lines)")
    results.add_argument("id", metavar="ID")
    results.add_argument("-o", "--output", type=Path, metavar="FILE", help="write them to FILE, not stdout")
    cmds.add_parser("cancel", help="cancel a batch").add_argument("id", metavar="ID")


def run(args: argparse.Namespace) -> int:
    try:
        if args.batch_command == "submit":
            body, count = read_requests(args.file)  # the file first: no gateway needed to find a bad line
            api = Gateway.from_settings()
            return _submit(api, body, count, args.wait)
        api = Gateway.from_settings()
        if args.batch_command == "list":
            return _list(api, args.limit)
        if args.batch_command == "status":
            print(json.dumps(api.json("GET", f"/v1/messages/batch/{args.id}/status"), indent=2))
            return 0
        if args.batch_command == "results":
            return _results(api, args.id, args.output)
        print(json.dumps(api.json("POST", f"/v1/messages/batches/{args.id}/cancel"), indent=2))
        return 0
    except CLIError as err:
        print(f"anthropic-gateway: {err}", file=sys.stderr)
        return err.code


# --- the file --------------------------------------------------------------------------------------


def read_requests(path: Path) -> tuple[bytes, int]:
    """The creation body built from FILE's lines, after checking each; a bad line is named."""
    try:
        handle = path.open("rb")
    except OSError as err:
        raise CLIError(f"cannot read {path}: {err.strerror}", 2) from None
    parts: list[bytes] = []
    seen: set[str] = set()
    with handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                raise CLIError(f"{path}:{n}: empty line; each line must be one {{custom_id, params}} object", 2)
            _check_line(path, n, line, seen)
            parts.append(line.strip())
    if not parts:
        raise CLIError(f"{path}: no requests; each line must be one {{custom_id, params}} object", 2)
    return b'{"requests":[' + b",".join(parts) + b"]}", len(parts)


def _check_line(path: Path, n: int, line: bytes, seen: set[str]) -> None:
    where = f"{path}:{n}"
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        raise CLIError(f"{where}: not valid JSON ({err})", 2) from None
    if not isinstance(obj, dict):
        raise CLIError(f"{where}: expected an object with custom_id and params, got {type(obj).__name__}", 2)
    extra = set(obj) - {"custom_id", "params"}
    if extra:
        raise CLIError(f"{where}: unknown field {sorted(extra)[0]!r}; a line holds custom_id and params only", 2)
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
        raise CLIError(f"{where}: custom_id must be 1-64 letters, digits, '_' or '-', got {custom_id!r}", 2)
    if custom_id in seen:
        raise CLIError(f"{where}: custom_id {custom_id!r} is used by an earlier line", 2)
    seen.add(custom_id)
    if not isinstance(obj.get("params"), dict):
        raise CLIError(f"{where}: params must be an object (a Messages request)", 2)


# --- talking to the gateway ------------------------------------------------------------------------


class Gateway:
    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key

    @classmethod
    def from_settings(cls) -> Gateway:
        from anthropic_gateway.launcher import base_url
        from anthropic_gateway.settings import SettingsError, load_settings

        try:
            settings = load_settings()
        except SettingsError as err:
            raise CLIError(str(err), 2) from None
        keys = settings.client_keys() or settings.admin_key_list()
        return cls(base_url(settings), keys[0] if keys else "anthropic-gateway")

    def open(self, method: str, path: str, body: bytes | None = None) -> Any:
        headers = {"x-api-key": self.key, "anthropic-version": "2023-06-01"}
        if body is not None:
            headers["content-type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=600)
        except urllib.error.HTTPError as err:
            raise CLIError(_error_text(err)) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise CLIError(f"no gateway answers at {self.url} ({reason}): start one with "
                           "`anthropic-gateway serve`") from None  # fmt: skip

    def json(self, method: str, path: str, body: bytes | None = None) -> Any:
        with self.open(method, path, body) as resp:
            return orjson.loads(resp.read())


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        message = orjson.loads(err.read())["error"]["message"]
    except Exception:
        message = err.reason
    return f"{message} (HTTP {err.code})"


def _submit(api: Gateway, body: bytes, count: int, wait: bool) -> int:
    batch = api.json("POST", "/v1/messages/batches", body)
    print(batch["id"])
    print(f"submitted {count} request(s) as {batch['id']}", file=sys.stderr)
    if wait:
        final = _follow(api, batch["id"], count)
        print(f"{final['id']} ended: {_counts(final['request_counts'])}", file=sys.stderr)
    return 0


def _follow(api: Gateway, batch_id: str, total: int) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(batch_id, total=total)
        while True:
            status = api.json("GET", f"/v1/messages/batch/{batch_id}/status")
            progress = status["progress"]
            done = total - progress["pending"] - progress["running"]
            failed = progress["errored"] + progress["expired"] + progress["canceled"]
            bar.update(task, completed=done, description=f"{batch_id} ({failed} failed)")
            if status["processing_status"] == "ended":
                result: dict[str, Any] = status
                return result
            time.sleep(POLL_SECONDS)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no requests"


def _list(api: Gateway, limit: int) -> int:
    page = api.json("GET", f"/v1/messages/batches?limit={limit}")
    for b in page["data"]:
        print(f"{b['id']}  {b['processing_status']:<11}  {b['created_at']}  {_counts(b['request_counts'])}")
    return 0


def _results(api: Gateway, batch_id: str, output: Path | None) -> int:
    batch = api.json("GET", f"/v1/messages/batches/{batch_id}")
    if not batch.get("results_url"):
        raise CLIError(f"batch {batch_id} has not ended yet ({batch['processing_status']}): "
                       f"follow it with `anthropic-gateway batch status {batch_id}`")  # fmt: skip
    with api.open("GET", batch["results_url"]) as resp:
        if output is None:
            _copy(resp, sys.stdout.buffer)
            sys.stdout.flush()
        else:
            with output.open("wb") as out:
                _copy(resp, out)
            print(f"wrote {batch_id}'s results to {output}", file=sys.stderr)
    return 0


def _copy(resp: BinaryIO, out: BinaryIO) -> None:
    for chunk in _chunks(resp):
        out.write(chunk)


def _chunks(resp: BinaryIO) -> Iterator[bytes]:
    while chunk := resp.read(CHUNK):
        yield chunk
