"""Test data locations. The Claude Code request fixture is kept in the repo so every clone has it."""

from pathlib import Path

CLAUDE_CODE_FIXTURE = Path(__file__).parent / "data" / "claude-code-2.1.197-requests.json"
