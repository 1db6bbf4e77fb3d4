"""setup.py's optional C extensions: an extension whose build fails leaves no older build of itself in
the source tree, where an editable install (or ``build_ext --inplace``) keeps it and the package would
import it instead of its Python fallback: the old code, silently, against sources that changed (and a
suite run on such a tree tests that old code)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
PKG = "src/anthropic_gateway"


def _tree(tmp_path: Path) -> None:
    shutil.copy(REPO / "setup.py", tmp_path / "setup.py")
    (tmp_path / "setup.cfg").write_text("[options]\npackage_dir =\n    =src\n")  # pyproject.toml's, alone
    for sub in ("tokens", "httpclient", "translate"):
        (tmp_path / PKG / sub).mkdir(parents=True)
    for header in ("_o200k_scan.h", "_o200k_unicode.h"):
        (tmp_path / PKG / "tokens" / header).write_text("")
    for name in ("tokens/_o200k", "httpclient/_chunks"):
        (tmp_path / PKG / f"{name}.c").write_text("#error a change that does not compile\n")
        (tmp_path / PKG / f"{name}{SUFFIX}").write_bytes(b"an older build")  # as the last install left it
    shutil.copy(REPO / PKG / "translate/_run.c", tmp_path / PKG / "translate/_run.c")
    (tmp_path / PKG / f"translate/_run{SUFFIX}").write_bytes(b"an older build")


CC = (sysconfig.get_config_var("CC") or "cc").split()[0]


@pytest.mark.skipif(shutil.which(CC) is None, reason="no C compiler")
def test_a_failed_optional_build_leaves_no_older_build_in_place(tmp_path: Path) -> None:
    _tree(tmp_path)
    run = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]  # optional: the install goes on without them
    assert 'building extension "anthropic_gateway.httpclient._chunks" failed' in run.stderr
    assert not (tmp_path / PKG / f"tokens/_o200k{SUFFIX}").exists()
    assert not (tmp_path / PKG / f"httpclient/_chunks{SUFFIX}").exists()
    built = (tmp_path / PKG / f"translate/_run{SUFFIX}").read_bytes()
    assert built.startswith(b"\x7fELF")  # rebuilt from its source, not the older build kept


# A tree pulled but not rebuilt keeps the last build of an extension, which may speak an older
# interface than the Python that calls it: its module must then be left unused, not called.
_OLD_BUILD = """
import sys, types
old = types.ModuleType({name!r})
{setup}
sys.modules[{name!r}] = old
from anthropic_gateway.httpclient import connection
from anthropic_gateway.translate import stream
print(connection.ChunkReader is None, stream._c_plain_run is None)
"""


@pytest.mark.parametrize(
    ("name", "setup", "expected"),
    [
        ("anthropic_gateway.httpclient._chunks", "old.Reader = object", "True False"),  # no INTERFACE
        ("anthropic_gateway.httpclient._chunks", "old.Reader = object; old.INTERFACE = 1", "True False"),  # before run()
        ("anthropic_gateway.translate._run", "old.plain_run = print", "False True"),
        ("anthropic_gateway.translate._run", "old.plain_run = print; old.INTERFACE = 2", "False True"),
    ],
)
def test_a_build_of_another_interface_is_not_used(name: str, setup: str, expected: str) -> None:
    pytest.importorskip(name)  # the other extension must be this tree's own build
    done = subprocess.run([sys.executable, "-c", _OLD_BUILD.format(name=name, setup=setup)],
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    assert done.stdout.split() == expected.split()


def test_the_built_extensions_speak_the_callers_interface() -> None:
    chunks = pytest.importorskip("anthropic_gateway.httpclient._chunks")
    run = pytest.importorskip("anthropic_gateway.translate._run")
    from anthropic_gateway.httpclient import connection
    from anthropic_gateway.translate import stream

    assert (chunks.INTERFACE, run.INTERFACE) == (connection.CHUNKS_INTERFACE, stream.RUN_INTERFACE)
    assert connection.ChunkReader is chunks.Reader and stream._c_plain_run is run.plain_run
