"""The user-facing documents say what is true: install line, licence, changelog, quickstart settings,
the systemd unit, troubleshooting messages, the performance figures' new home."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from anthropic_gateway import __version__
from anthropic_gateway.cli import _parser
from anthropic_gateway.keys import missing_key_error
from anthropic_gateway.routing import Router
from anthropic_gateway.settings import load_settings

REPO = Path(__file__).parents[1]
README = (REPO / "README.md").read_text()
QUICKSTART = (REPO / "docs" / "quickstart.md").read_text()
TROUBLESHOOTING = (REPO / "docs" / "troubleshooting.md").read_text()
UNIT = REPO / "examples" / "anthropic-gateway.service"
KEYS = {"OPENROUTER_API_KEY": "sk-or-x", "OPENAI_API_KEY": "sk-x", "ANTHROPIC_GATEWAY_UPSTREAM_KEY": "sk-x"}


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_the_readme_install_line_puts_the_command_on_path_and_is_used_everywhere() -> None:
    first = _blocks(README, "sh")[0]
    assert first == "pipx install . && OPENROUTER_API_KEY=sk-or-... anthropic-gateway serve\n"
    # The venv alternative also puts the command on PATH, so every later bare `anthropic-gateway` works.
    assert 'python3 -m venv .venv && .venv/bin/pip install . && export PATH="$PWD/.venv/bin:$PATH"' in README
    assert ".venv/bin/anthropic-gateway" not in README
    assert _blocks(README, "sh")[1] == "bash .ci/run\n"  # the test command stays


def test_the_readme_keeps_one_performance_line_and_the_figures_moved() -> None:
    assert "| figure | target | measured |" not in README and "## Benchmark" not in README
    assert "[docs/performance.md](docs/performance.md)" in README
    performance = (REPO / "docs" / "performance.md").read_text()
    assert "| figure | target | measured |" in performance and "bench/ab.sh" in performance


def test_the_licence_is_the_mit_licence_pyproject_declares() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c) ")


def test_the_changelog_has_the_current_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{__version__}]" in changelog


def test_every_quickstart_toml_file_loads_and_routes_as_described(tmp_path: Path) -> None:
    blocks = _blocks(QUICKSTART, "toml")
    assert len(blocks) == 1
    (tmp_path / "gateway.toml").write_text(blocks[0])
    settings = load_settings(environ=KEYS, config_path=tmp_path / "gateway.toml")
    router = Router(settings)
    haiku = router.resolve("claude-haiku-4-5-20251001")
    assert (haiku.backend.name, haiku.upstream_model, haiku.backend.key) == ("local", "qwen2.5-coder:7b", None)
    assert router.resolve("small-cloud").backend.key is not None
    assert router.resolve("claude-sonnet-4-5").backend.name == "default"


def test_every_quickstart_variable_is_a_setting_or_a_key() -> None:
    exports = re.findall(r"^export (.+)$", QUICKSTART, re.M)
    environ = dict(KEYS)
    for line in exports:
        for word in shlex.split(line.split("#")[0]):
            name, _, value = word.partition("=")
            environ[name] = value
    assert "ANTHROPIC_GATEWAY_UPSTREAM_URL" in environ
    load_settings(environ=environ)  # an unknown ANTHROPIC_GATEWAY_* name would stop it


def test_the_systemd_unit_runs_a_valid_serve_command(tmp_path: Path) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    binary, *args = shlex.split(unit["Service"]["ExecStart"])
    assert binary.endswith("/bin/anthropic-gateway")
    parsed = _parser().parse_args(args)
    assert (parsed.command, str(parsed.config)) == ("serve", "/etc/anthropic-gateway/gateway.toml")
    assert unit["Service"]["RestartPreventExitStatus"] == "2"  # a configuration error is not retried
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    checked = tmp_path / "anthropic-gateway.service"  # the binary must exist for verify
    checked.write_text(UNIT.read_text().replace(binary, "/bin/true"))
    proc = subprocess.run(["systemd-analyze", "verify", str(checked)], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_troubleshooting_quotes_the_messages_the_gateway_prints() -> None:
    default = Router(load_settings(environ={})).backends["default"]
    assert f"`API Error: 500 {missing_key_error(default).message}`" in TROUBLESHOOTING
    for needle in ("~/.cache/anthropic-gateway/gateway-PORT.log", "is not a model this gateway serves",
                   "port 8082 is already in use on 127.0.0.1", "not starting Claude Code, its requests would fail",
                   "unknown setting ANTHROPIC_GATEWAY_", "refusing to serve an open gateway on 0.0.0.0",
                   "prompt is too long: N tokens > M maximum", "Upstream connection error: cannot connect to"):  # fmt: skip
        assert needle in TROUBLESHOOTING

