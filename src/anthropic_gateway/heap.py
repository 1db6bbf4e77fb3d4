"""The C heap of the server process (glibc's malloc): fewer arenas, and freed memory handed back.

glibc gives each thread that meets contention an arena of its own (up to 8 per core), and an arena
keeps what was freed in it for reuse by that arena only. The gateway's threads are few and mostly
idle (the tokenizer warm-up, the executor's SQLite writes and imports), so their arenas were memory
held for nothing: two arenas (the main thread's and one shared by the others) cost the event loop
nothing measurable and took ~4 MB off the RSS idle and under load (bench/memory.py,
docs/performance.md). ``MALLOC_ARENA_MAX`` in the environment still wins: it is never overridden.

Other C libraries (musl, macOS) have neither knob; every function here is then a no-op.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

ARENA_MAX = 2
_M_ARENA_MAX = -8  # glibc's mallopt() parameter number (malloc.h)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return None
    if not version or not version.startswith("glibc"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def limit_arenas(count: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas at ``count``; call before threads start. True when applied."""
    if "MALLOC_ARENA_MAX" in os.environ:  # the operator's choice, already read by glibc at start
        return False
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, count))


def trim() -> None:
    """Hand the free pages of every arena back to the system (after a large build is dropped)."""
    libc = _glibc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)
