"""End-to-end tests with the real Claude Code CLI (pinned in .ci/run) against the real gateway and a
scripted fake OpenAI-compatible upstream, all on loopback. See harness.py for the run helpers."""
