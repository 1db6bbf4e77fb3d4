"""docs/cli.md shows the `--help` output of every command exactly as the CLI prints it (80 columns).

After changing a help text, regenerate the blocks with ``python tests/test_cli_doc.py``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from anthropic_gateway.cli import _parser

DOC = Path(__file__).parents[1] / "docs" / "cli.md"
# <!-- help: serve --> then a ```text block: the output of `anthropic-gateway serve --help`.
BLOCK = re.compile(r"<!-- help:(?P<cmd>[a-z ]*) -->\n```text\n(?P<body>.*?)```\n", re.S)
ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "80"}


def help_text(command: str) -> subprocess.CompletedProcess[str]:
    args = [*command.split(), "--help"]
    return subprocess.run([sys.executable, "-m", "anthropic_gateway", *args],
                          capture_output=True, text=True, timeout=30, env=ENV)  # fmt: skip


def commands() -> list[str]:
    """The top level and every subcommand with a help of its own (`claude` passes --help to Claude Code)."""
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return ["", *(name for name, p in sub.choices.items() if p.add_help)]


def test_every_command_has_its_help_in_the_doc() -> None:
    documented = [m["cmd"].strip() for m in BLOCK.finditer(DOC.read_text())]
    assert documented == commands()
    assert "## anthropic-gateway claude" in DOC.read_text()


def test_the_documented_help_is_what_the_cli_prints() -> None:
    for match in BLOCK.finditer(DOC.read_text()):
        proc = help_text(match["cmd"].strip())
        assert (proc.returncode, proc.stderr) == (0, "")
        assert match["body"] == proc.stdout, f"docs/cli.md is stale for '{match['cmd'].strip()}': run python {__file__}"


if __name__ == "__main__":  # regenerate the blocks in place
    text = DOC.read_text()
    DOC.write_text(BLOCK.sub(lambda m: f"<!-- help:{m['cmd']} -->\n```text\n{help_text(m['cmd'].strip()).stdout}```\n", text))
