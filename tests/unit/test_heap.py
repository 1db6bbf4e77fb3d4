"""glibc's malloc arenas capped for the server process (issue 15, memory), measured from outside."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from anthropic_gateway import heap

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="glibc only")

# Eight threads allocating at the same moment, then the thread arenas glibc made, counted in
# /proc/self/maps (each is a mapping of at most 64 MB aligned to 64 MB).
_SCRIPT = textwrap.dedent(
    """
    import ctypes, sys, threading
    from anthropic_gateway import heap

    applied = heap.limit_arenas() if sys.argv[1] == "limit" else None
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    barrier = threading.Barrier(8)

    def work():
        barrier.wait()
        for _ in range(2000):
            libc.free(ctypes.c_void_p(libc.malloc(1000)))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    arenas = 0
    for line in open("/proc/self/maps"):
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if len(fields) == 5 and start % (64 << 20) == 0 and end - start <= 64 << 20:
            arenas += 1
    print(applied, arenas)
    """
)


def _run(mode: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, timeout=60, env=environ, check=True
    )
    applied, arenas = result.stdout.split()
    return applied, int(arenas)


def test_limited_threads_share_one_arena() -> None:
    assert _run("limit") == ("True", 1)  # ARENA_MAX 2: the main thread's arena and one more


def test_unlimited_threads_get_arenas_of_their_own() -> None:
    # The same script without the cap: proves the count above measures the cap.
    applied, arenas = _run("none")
    assert applied == "None" and arenas > 1


def test_the_environment_wins() -> None:
    # MALLOC_ARENA_MAX=1 (only the main arena) is kept: overridden to 2, one thread arena would show.
    assert _run("limit", MALLOC_ARENA_MAX="1") == ("False", 0)
