"""The SSE decoder on reads cut anywhere: events come out whole and once, however the bytes arrive."""

from __future__ import annotations

from anthropic_gateway.sse import SSEDecoder


def _feed_all(reads: list[bytes]) -> tuple[list[bytes], list[int]]:
    d = SSEDecoder()
    out: list[bytes] = []
    pending: list[int] = []
    for r in reads:
        out += d.feed(r)
        pending.append(d.pending)
    return out + d.close(), pending


def test_a_large_event_in_many_reads_without_line_ends_comes_out_once_and_whole() -> None:
    data = b'{"x":"' + b"a" * 200_000 + b'"}'
    raw = b"data: " + data + b"\n\ndata: [DONE]\n\n"
    reads = [raw[i : i + 4096] for i in range(0, len(raw), 4096)]
    events, pending = _feed_all(reads)
    assert events == [data, b"[DONE]"]
    # While the event is incomplete, pending counts every byte received of it.
    assert pending[0] == 4096 and pending[10] == 11 * 4096
    assert pending[-1] == 0


def test_every_cut_of_a_crlf_stream_gives_the_same_events() -> None:
    raw = b"data: one\r\n\r\n: keep-alive\r\n\r\ndata: two\r\ndata: lines\r\n\r\ndata: [DONE]\r\n\r\n"
    for cut in range(1, len(raw)):
        events, _ = _feed_all([raw[:cut], raw[cut:]])
        assert events == [b"one", b"two\nlines", b"[DONE]"], cut


def test_an_unterminated_last_event_is_given_by_close_and_forgotten() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: {") == [] and d.feed(b'"a":1}') == []
    assert d.pending == 13
    assert d.close() == [b'{"a":1}']
    assert d.pending == 0 and d.close() == []
