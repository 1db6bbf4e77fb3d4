"""A read's run of template events built in C (translate/_run.c, ``plain_run``) against the Python run
(``_run`` / ``_plain_run``), which stays the reference: the same bytes out and the same counts for any
texts (every byte value, escapes, non-ASCII, empty ones), any pieces (cut at events or not) and what
follows the run in the read."""

from __future__ import annotations

import itertools
import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anthropic_gateway.translate import stream
from anthropic_gateway.translate.context import RequestContext
from anthropic_gateway.translate.stream import StreamTranslator

if stream._c_plain_run is None:  # pragma: no cover - installed without a compiler
    if os.environ.get("CI") == "true":  # .ci/run installs from scratch with a compiler
        raise ImportError("the C extension anthropic_gateway.translate._run is not built")
    pytest.skip("the C extension anthropic_gateway.translate._run is not built", allow_module_level=True)
plain_run: Any = stream._c_plain_run

_HEAD = b'data: {"id":"gen-1","choices":[{"index":0,"delta":{"content":"'
_TAIL = b'"},"finish_reason":null}]}\n\n'
_OPENING = b'data: {"id":"gen-1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
_END = [
    b'data: {"id":"gen-1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9}}\n\n',
    b"data: [DONE]\n\n",
]


def _event(body: bytes) -> bytes:
    return _HEAD + body + _TAIL


def _learned() -> StreamTranslator:
    t = StreamTranslator(RequestContext(client_model="claude-x", target_is_claude=False), "msg_x")
    t.start()
    t.feed_parts([_OPENING] + [_event(x) for x in (b"Hi", b" there", b"a")])
    assert t._head is not None  # the template is learned: the next read may take the run
    return t


def _feed(reads: list[list[bytes]], c: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[bytes], Any]:
    with monkeypatch.context() as m:
        if not c:
            m.setattr(stream, "_c_plain_run", None)
        t = _learned()
        out = [t.feed_parts(r) for r in reads]
        out.append(t.finish())
        return out, (t.pieces, t.chars, t.error and t.error.message, t.saw_done)


_body = st.one_of(
    st.binary(max_size=40),  # any bytes: control characters, quotes, backslashes, bytes past 0x7f
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8).map(str.encode),
    st.text(max_size=4).map(lambda s: orjson.dumps(s)[1:-1]),  # JSON string bodies: escapes, UTF-8
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    reads=st.lists(st.lists(_body, min_size=1, max_size=8), min_size=1, max_size=5),
    end=st.integers(0, 3),
    cuts=st.lists(st.integers(0, 400), max_size=3),
)
def test_the_c_run_and_the_python_run_agree(
    reads: list[list[bytes]], end: int, cuts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    pieces = [[_event(b) for b in r] for r in reads]
    pieces[-1] += _END[:end]
    if cuts:  # the last read's pieces cut elsewhere than at events (as a chunk split over reads is)
        joined = b"".join(pieces[-1])
        points = sorted({c % (len(joined) + 1) for c in cuts} | {0, len(joined)})
        pieces[-1] = [joined[a:b] for a, b in itertools.pairwise(points) if b > a]
    assert _feed(pieces, True, monkeypatch) == _feed(pieces, False, monkeypatch)


@pytest.mark.parametrize("byte", range(256))
def test_every_byte_in_a_text(byte: int, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = [[_event(b"a" + bytes([byte]) + b"b"), _event(b"c")], [_event(bytes([byte])), _event(b"d"), *_END]]
    assert _feed(reads, True, monkeypatch) == _feed(reads, False, monkeypatch)


def test_plain_run_builds_the_text_deltas_or_declines() -> None:
    prefix, suffix = b"data: {\"c\":\"", b"\"}\n\n"
    head, tail = b"<", b">"
    parts = [prefix + b"ab" + suffix, prefix + b"c" + suffix, b"data: [DONE]\n\n"]
    assert plain_run(parts, 2, prefix, suffix, head, tail) == b"<ab><c>"
    assert plain_run(parts, 3, prefix, suffix, head, tail) is None  # not a template event
    assert plain_run([prefix + suffix], 1, prefix, suffix, head, tail) is None  # an empty text
    assert plain_run([prefix + b'"' + suffix], 1, prefix, suffix, head, tail) is None  # needs an escape
    assert plain_run([prefix + b"\xc3\xa9" + suffix], 1, prefix, suffix, head, tail) is None  # not ASCII
    assert plain_run([(prefix + suffix)[:-1]], 1, prefix, suffix, head, tail) is None  # shorter than the envelope
    assert plain_run([prefix + b"x" * 40], 1, prefix, suffix, head, tail) is None  # cut before its suffix
    assert plain_run([b"data: {\"d\":\"" + b"x" * 40 + suffix], 1, prefix, suffix, head, tail) is None
    with pytest.raises(ValueError):
        plain_run(parts, 0, prefix, suffix, head, tail)
    with pytest.raises(ValueError):
        plain_run(parts, 4, prefix, suffix, head, tail)
    with pytest.raises(TypeError):
        plain_run(tuple(parts), 1, prefix, suffix, head, tail)
    with pytest.raises(TypeError):
        plain_run(parts, 1, prefix, suffix, head, "x")


def test_the_usual_read_takes_the_c_run(monkeypatch: pytest.MonkeyPatch) -> None:
    t = _learned()
    calls: list[int] = []

    def spy(parts: list[bytes], k: int, *rest: bytes) -> bytes | None:
        calls.append(k)
        result: bytes | None = plain_run(parts, k, *rest)
        return result

    monkeypatch.setattr(stream, "_c_plain_run", spy)
    monkeypatch.setattr(t, "_plain_run", None)  # the Python run: must not be reached
    pieces, chars = t.pieces, t.chars
    out = t.feed_parts([_event(b"x"), _event(b"yz"), *_END])
    assert calls == [2]
    assert out.startswith(t._text_head() + b"x" + stream._TEXT_TAIL + t._text_head() + b"yz" + stream._TEXT_TAIL)
    assert (t.pieces - pieces, t.chars - chars) == (2, 3)
    assert t.saw_done


# --- the reader's run (httpclient/_chunks.c, Reader.run) and feed_run ------------------------------

_Reader: Any = None
try:
    from anthropic_gateway.httpclient import connection as _connection

    _Reader = _connection.ChunkReader
except ImportError:  # pragma: no cover
    pass
with_reader = pytest.mark.skipif(_Reader is None, reason="the C extension anthropic_gateway.httpclient._chunks is not built")


def _wire(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


def _through_the_reader(reads: list[list[bytes]], budget: int | None) -> tuple[list[bytes], Any, list[int]]:
    """Each read as the connection hands it over with a run template set: the reader's leading run
    of template events to feed_run with the rest of the read's pieces, else the pieces to feed_parts."""
    t = _learned()
    t.budget = budget
    reader = _Reader()
    out, runs = [], []
    for pieces in reads:
        data = _wire(pieces)
        tpl = None if t.done else t.run_template()
        taken = reader.run(data, 0, tpl) if tpl is not None else None
        if taken is None:
            out.append(t.feed_parts(reader.feed(data)))
            runs.append(0)
        else:
            text, k, at = taken
            out.append(t.feed_run(text, k, reader.feed(data, at) if at < len(data) else []))
            runs.append(k)
    out.append(t.finish())
    return out, (t.pieces, t.chars, t.error and t.error.message, t.saw_done, t.over_budget), runs


def _as_pieces(reads: list[list[bytes]], budget: int | None) -> tuple[list[bytes], Any]:
    t = _learned()
    t.budget = budget
    out = [t.feed_parts(r) for r in reads]
    out.append(t.finish())
    return out, (t.pieces, t.chars, t.error and t.error.message, t.saw_done, t.over_budget)


_plain = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
                 min_size=1, max_size=6).map(str.encode)  # the run's texts


# a read's pieces: template events (mostly with plain texts: the run's), the answer's end, anything
_piece = st.one_of(
    _body.map(_event), _plain.map(_event), _plain.map(_event), st.sampled_from(_END[:2]), st.binary(min_size=1, max_size=30)
)


@with_reader
@settings(max_examples=400, deadline=None)
@given(
    reads=st.lists(st.lists(_piece, min_size=1, max_size=8), min_size=1, max_size=5),
    end=st.integers(0, 3),
    budget=st.sampled_from([None, None, 3, 8, 20]),
)
def test_the_readers_run_and_feed_parts_agree(reads: list[list[bytes]], end: int, budget: int | None) -> None:
    reads[-1] += _END[:end]
    got, state, _ = _through_the_reader(reads, budget)
    assert (got, state) == _as_pieces(reads, budget)


@with_reader
def test_the_usual_read_is_the_readers_run() -> None:
    reads = [[_event(b"x"), _event(b"yz")], [_event(b"q"), *_END]]
    got, state, runs = _through_the_reader(reads, None)
    assert runs == [2, 1]  # every template event of both reads taken by the reader
    head, tail = _learned()._text_head(), stream._TEXT_TAIL
    assert got[0] == head + b"x" + tail + head + b"yz" + tail
    assert got[1].startswith(head + b"q" + tail)
    assert (got, state) == _as_pieces(reads, None)


@with_reader
@pytest.mark.parametrize("budget", [3, 4, 5])
def test_a_run_past_the_budget_ends_the_answer_as_the_pieces_do(budget: int) -> None:
    reads = [[_event(b"a")], [_event(b"b"), _event(b"c")], [_event(b"d"), *_END]]
    got, state, runs = _through_the_reader(reads, budget)
    assert runs[0] == 1
    assert state[-1] is True  # over budget
    assert (got, state) == _as_pieces(reads, budget)


def test_run_template_is_none_off_the_template_path() -> None:
    t = StreamTranslator(RequestContext(client_model="claude-x", target_is_claude=False), "msg_x")
    assert t.run_template() is None  # nothing learned yet
    t = _learned()
    tpl = t.run_template()
    assert tpl == (t._read_prefix, t._read_suffix, t._text_head(), stream._TEXT_TAIL)
    assert t.run_template() is tpl  # kept while it holds
    t.feed_parts(_END)
    assert t.run_template() is None
