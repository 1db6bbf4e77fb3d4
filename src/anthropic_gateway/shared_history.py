"""A long conversation's earlier messages decoded once (issue 15): Claude Code resends the whole
history on every turn, the same bytes plus a little, and a 1 MB history's decode (its tool results'
UTF-8 checked, every block made again) was the largest part of what the gateway spent on it.

A body of ``SMALLEST`` bytes or more that decoded is remembered: its bytes, its decoded messages and
(once needed) where each message ends in the bytes. A later body that starts with the same bytes up
to the end of message ``k`` has, by that alone, messages ``0..k`` parsed exactly as before: JSON is
read left to right, so the same bytes from the start are the same parse, the same values in the same
place. That body is decoded with those messages cut out and one placeholder message in their place
(a user message whose text is a random per-process nonce), and the decoded messages are those
remembered followed by the new ones. The placeholder is the proof that the cut was the top-level
``messages`` array's first elements: only if the decoded request's first message is the placeholder
(a later duplicate ``messages`` key, which JSON decoders let win, would not have it) are the
remembered messages used; otherwise, or if the cut body does not decode, the body is decoded whole as
before, so errors, their messages and field paths are never those of the cut body. The cut-out
messages were validated when first decoded, in the same position: list elements are validated one by
one, and the array's only whole-list rule (at least one message) holds for the placeholder too.

A cached tool list found after the cut messages (``schemas.DecodedCache.find_in``) is replaced by its
own placeholder in the same copy (``splice``), so a long turn's tools are not scanned either; the
decoded ``tools`` must then be that placeholder, by the same argument (``schemas._decode_spliced``).

The remembered messages are shared by every request that starts with their bytes, like the decoded
tools and system prompts of ``schemas.DecodedCache``: nobody edits them (translation builds new
dicts; context editing and threads copy with ``msgspec.structs.replace``). ``SharedHistory`` is the
request's own list of them; ``entry.holds`` tells a reader memoizing on the entry (the token
estimate's keys) that its leading messages are still the entry's objects.

Memory: a message's raw tool results and base64 data are views of the body they were decoded from,
which they keep alive. An entry counts the bytes its messages keep (``kept``) besides its own body
(kept for the comparison); once a chain of turns keeps more than twice the current body, the body is
decoded whole again (all its views then into itself). Bounded in entries and in bytes; the entry a
body continued from is replaced by the new one.
"""

from __future__ import annotations

import bisect
import re
import secrets
import threading
from collections.abc import Callable
from typing import Any

import msgspec

SMALLEST = 128 << 10  # bodies under this are decoded whole: little to save, memory better kept
ENTRIES = 8
TOTAL = 24 << 20  # bytes of bodies held (own and kept by the messages) over all entries
_HEAD = 256  # the first bytes, compared to pick candidates
_BLOCK = 64 << 10  # the common prefix is found by comparing blocks of this size, then bisecting

NONCE = secrets.token_hex(16)
PLACEHOLDER = b'{"role":"user","content":"' + NONCE.encode() + b'"}'
_SEPARATOR = re.compile(rb"[ \t\r\n]*,[ \t\r\n]*")


class _Split(msgspec.Struct):
    messages: list[msgspec.Raw]


_split = msgspec.json.Decoder(_Split)


class HistoryEntry:
    """One remembered body: its bytes, its decoded messages (a tuple: shared, never edited), where each
    message ends (``ends[i]``: the offset just past message ``i``; computed when first needed, for a
    leading run of the messages) and where the first begins; ``memo`` for readers deriving something
    per message from the message alone (the token estimate's keys), by index."""

    __slots__ = ("body", "ends", "head", "kept", "memo", "messages", "schema", "start")

    def __init__(self, body: bytes, messages: tuple[Any, ...], schema: type[Any], kept: int) -> None:
        self.body = body
        self.head = body[:_HEAD]
        self.messages = messages
        self.schema = schema
        self.kept = kept  # bytes of the buffers the messages are views of (this body, or a chain)
        self.start = -1
        self.ends: list[int] | None = None
        self.memo: list[Any] = [None] * len(messages)

    @property
    def size(self) -> int:
        return self.kept + len(self.body) if self.kept != len(self.body) else self.kept

    def holds(self, items: list[Any], upto: int) -> bool:
        """Whether ``items[:upto]`` are still exactly this entry's first ``upto`` message objects."""
        mine = self.messages
        return upto <= len(mine) and len(items) >= upto and all(items[i] is mine[i] for i in range(upto))

    def locate(self) -> bool:
        """Where the messages are in the body: from the body split into raw messages (the same array
        the decoder took: both let a later duplicate key win), each found right after the previous
        one and a comma. A run that cannot be followed stops there."""
        if self.ends is not None:
            return self.start >= 0
        ends: list[int] = []
        start = -1
        try:
            raws = _split.decode(self.body).messages
        except (msgspec.DecodeError, RecursionError):
            raws = []
        if raws and len(raws) == len(self.messages):
            # A copy of the first message earlier in the body: the placeholder check refuses the cut.
            start = self.body.find(raws[0])
            if start >= 0:
                ends = _follow(self.body, start, raws, 0)
        self.start, self.ends = start, ends
        return start >= 0


def _follow(body: bytes, pos: int, raws: list[msgspec.Raw], first: int) -> list[int]:
    """The end offsets of ``raws[first:]`` in ``body``, each after a comma, the first one at ``pos``
    if it is the array's first element (else after a comma there too); stops at the first that is not
    where it should be."""
    ends: list[int] = []
    for i in range(first, len(raws)):
        raw = raws[i]
        if i > 0:
            sep = _SEPARATOR.match(body, pos)
            if sep is None:
                break
            pos = sep.end()
        if not body.startswith(raw, pos):
            break
        pos += len(raw)
        ends.append(pos)
    return ends


class SharedHistory(list[Any]):
    """A request's messages whose first ``shared`` are ``entry``'s remembered objects."""

    __slots__ = ("entry", "shared")

    entry: HistoryEntry
    shared: int


def common_prefix(a: bytes, b: bytes) -> int:
    """The length of the longest common prefix of ``a`` and ``b`` (memcmp by blocks, then bisected)."""
    n = min(len(a), len(b))
    view = memoryview(b)
    lo = 0
    while lo < n:
        hi = min(lo + _BLOCK, n)
        if a.startswith(view[lo:hi], lo):
            lo = hi
            continue
        while hi - lo > 1:  # a mismatch in [lo, hi)
            mid = (lo + hi) // 2
            if a.startswith(view[lo:mid], lo):
                lo = mid
            else:
                hi = mid
        return lo
    return n


class HistoryCache:
    def __init__(self, entries: int = ENTRIES, total: int = TOTAL) -> None:
        self.entries, self.total = entries, total
        self._data: list[HistoryEntry] = []  # most recent last
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def _best(self, body: bytes, schema: type[Any]) -> tuple[HistoryEntry, int] | None:
        with self._lock:
            candidates = [e for e in reversed(self._data) if e.schema is schema and body.startswith(e.head)]
        best: tuple[HistoryEntry, int] | None = None
        reach = 0
        for entry in candidates:
            if not entry.locate() or not entry.ends:
                continue
            k = bisect.bisect_right(entry.ends, common_prefix(body, entry.body)) - 1
            if k >= 0 and entry.ends[k] > reach:
                best, reach = (entry, k), entry.ends[k]
        return best

    def decode(
        self, body: bytes, decode: Callable[[bytes], Any], schema: type[Any], splice: tuple[int, int, bytes] | None = None
    ) -> Any | None:
        """``body`` decoded with its leading messages from a remembered body, or None (decode it whole,
        then ``remember`` it). ``decode`` is the schema's decoder; its errors mean None. ``splice``
        (offset, length, placeholder) is a cached tool list found in the body (``schemas``): if it lies
        after the cut messages it is replaced too, in the same copy, and then the decoded ``tools`` must
        be exactly the placeholder (else None: the body is decoded whole)."""
        found = self._best(body, schema)
        if found is None:
            return None
        entry, k = found
        assert entry.ends is not None
        start, end = entry.start, entry.ends[k]
        if splice is not None and splice[0] >= end:
            at, length, placeholder = splice
            cut = b"".join((body[:start], PLACEHOLDER, body[end:at], placeholder, body[at + length :]))
        else:
            placeholder = None
            cut = b"".join((body[:start], PLACEHOLDER, body[end:]))
        try:
            req = decode(cut)
        except (msgspec.DecodeError, RecursionError):
            return None
        new = req.messages
        if not new or new[0].content != NONCE or new[0].role != "user":
            return None
        if placeholder is not None and not (isinstance(req.tools, msgspec.Raw) and bytes(req.tools) == placeholder):
            return None
        kept = entry.kept + (len(cut) if len(new) > 1 else 0)  # new messages may be views of the cut body
        if kept > 2 * len(body):
            return None  # the chain keeps too much: decoded whole, its views into itself
        messages = SharedHistory(entry.messages[: k + 1])
        messages.extend(new[1:])
        req.messages = messages
        successor = HistoryEntry(body, tuple(messages), schema, kept)
        successor.start = start
        successor.ends = ends = entry.ends[: k + 1]
        successor.memo[: k + 1] = entry.memo[: k + 1]
        if len(ends) == k + 1:  # the new messages' ends, from the cut body (small)
            try:
                raws = _split.decode(cut).messages
            except (msgspec.DecodeError, RecursionError):  # cannot happen: it decoded above
                raws = []
            if len(raws) == len(new) and raws and bytes(raws[0]) == PLACEHOLDER:
                shift = end - start - len(PLACEHOLDER)
                ends.extend(e + shift for e in _follow(cut, start + len(PLACEHOLDER), raws, 1))
        messages.entry, messages.shared = successor, len(messages)
        self._put(successor, replaces=entry)
        return req

    def remember(self, body: bytes, req: Any, schema: type[Any]) -> None:
        """Keep a body decoded whole (its messages made a ``SharedHistory`` of the new entry's)."""
        entry = HistoryEntry(body, tuple(req.messages), schema, len(body))
        messages = SharedHistory(entry.messages)
        messages.entry, messages.shared = entry, len(messages)
        req.messages = messages
        self._put(entry, replaces=None)

    def _put(self, entry: HistoryEntry, replaces: HistoryEntry | None) -> None:
        if entry.size > self.total // 2:
            return
        with self._lock:
            data = self._data
            if replaces is not None and replaces in data:
                data.remove(replaces)
            data.append(entry)
            size = sum(e.size for e in data)
            while len(data) > self.entries or size > self.total:
                size -= data.pop(0).size


histories = HistoryCache()
