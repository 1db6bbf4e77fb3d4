"""Test data locations. The Claude Code request fixtures are kept in the repo so every clone has them."""

from pathlib import Path

DATA = Path(__file__).parent / "data"
CLAUDE_CODE_FIXTURE = DATA / "claude-code-2.1.197-requests.json"
# Claude Code 2.1.332: /work/shared/fixtures' captures, and the gateway's own (see the file's _about).
CLAUDE_CODE_LATEST_FIXTURE = DATA / "claude-code-2.1.332-requests.json"
CLAUDE_CODE_LATEST_CAPTURES = DATA / "claude-code-2.1.332-captures.json"
