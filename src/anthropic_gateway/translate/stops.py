"""Local stop-sequence matching with a hold-back buffer.

Upstreams take at most a few stop strings and never say which one fired, so the gateway scans the
generated text itself: it can report the matched sequence, honour any number of them, and never emits
text past a match. Text that could be the start of a sequence is held back until it is decided.
"""

from __future__ import annotations


class StopScanner:
    def __init__(self, sequences: list[str]) -> None:
        self.sequences = sequences
        self.hold = max(len(s) for s in sequences) - 1
        self.buffer = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        """Returns (text safe to emit, matched sequence or None). After a match, stop feeding."""
        buf = self.buffer + text
        best_end = -1
        matched: str | None = None
        for seq in self.sequences:
            at = buf.find(seq)
            # The sequence that completes first in generation order wins, i.e. the smallest end.
            if at != -1 and (matched is None or at + len(seq) < best_end):
                best_end, matched = at + len(seq), seq
        if matched is not None:
            self.buffer = ""
            return buf[: best_end - len(matched)], matched
        cut = len(buf) - self.hold
        if cut <= 0:
            self.buffer = buf
            return "", None
        self.buffer = buf[cut:]
        return buf[:cut], None

    def flush(self) -> str:
        rest, self.buffer = self.buffer, ""
        return rest


def apply_stop_sequences(text: str, sequences: list[str]) -> tuple[str, str | None]:
    """Whole-text form for non-streamed answers."""
    scanner = StopScanner(sequences)
    emitted, matched = scanner.feed(text)
    return (emitted, matched) if matched is not None else (emitted + scanner.flush(), None)
