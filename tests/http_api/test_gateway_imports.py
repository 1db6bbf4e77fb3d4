"""What building the gateway imports: redis only when a Redis URL is configured (issue 15, memory:
the redis package costs ~5 MB of RSS and ~80 ms of start-up to every gateway that does not use it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_SCRIPT = textwrap.dedent(
    """
    import sys
    from anthropic_gateway.http.app import create_app
    from anthropic_gateway.settings import load_settings

    environ = {"ANTHROPIC_GATEWAY_UPSTREAM_KEY": "k", "ANTHROPIC_GATEWAY_DATABASE_URL": sys.argv[1]}
    if len(sys.argv) > 2:
        environ["ANTHROPIC_GATEWAY_REDIS_URL"] = sys.argv[2]
    create_app(load_settings(environ=environ))
    print(sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("redis", "anthropic_gateway")}))
    """
)


def _loaded(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_gateway_without_redis_does_not_import_it(tmp_path: Path) -> None:
    assert _loaded(f"{tmp_path}/store.db") == "['anthropic_gateway']"


def test_a_gateway_with_redis_imports_it(tmp_path: Path) -> None:
    # Building connects to nothing; the URL alone decides (the same script, so the check above can fail).
    assert _loaded(f"{tmp_path}/store.db", "redis://127.0.0.1:6379/0") == "['anthropic_gateway', 'redis']"
