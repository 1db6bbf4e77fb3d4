"""`anthropic-gateway` itself: no arguments, `serve --help`, a busy port."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "100"}


def _run(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anthropic_gateway", *args],
                          capture_output=True, text=True, timeout=30, env={**ENV, **env}, cwd=cwd)  # fmt: skip


def test_no_arguments_prints_the_help_not_an_argparse_error() -> None:
    proc = _run()
    assert proc.returncode == 2
    assert proc.stderr == ""
    assert proc.stdout == _run("--help").stdout
    assert proc.stdout.startswith("usage: anthropic-gateway [-h] [--version] COMMAND ...\n")
    assert "the following arguments are required" not in proc.stdout


def test_serve_help_names_the_key_and_the_environment_variables() -> None:
    proc = _run("serve", "--help")
    assert (proc.returncode, proc.stderr) == (0, "")
    out = proc.stdout
    assert "upstream key:\n  OPENROUTER_API_KEY (or ANTHROPIC_GATEWAY_UPSTREAM_KEY) holds the default\n" in out
    assert "environment:\n  Every setting is an environment variable ANTHROPIC_GATEWAY_<NAME>" in out
    assert "need\n  no key." in out  # local servers


def test_a_busy_port_is_one_line_naming_the_port_and_the_flag(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = _run("serve", "--port", str(port), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        f"anthropic-gateway: port {port} is already in use on 127.0.0.1 (another gateway?): stop what holds it, "
        "or pick another port with --port N (ANTHROPIC_GATEWAY_PORT)\n"
    )


def test_an_address_that_is_not_this_machines_is_one_line(tmp_path: Path) -> None:
    proc = _run("serve", "--host", "192.0.2.1", "--port", "8082", cwd=tmp_path,  # TEST-NET-1: never local
                ANTHROPIC_GATEWAY_TRUSTED_NETWORK="true")  # fmt: skip
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (
        "anthropic-gateway: cannot listen on 192.0.2.1:8082 (Cannot assign requested address): change --host or --port\n"
    )
