"""The chunked body's C reader (httpclient/_chunks.c) against httptools, which stays the reference.

The connection hands a chunked body to the reader right after its headers and takes httptools back at
the last chunk or at anything the reader does not take (extensions, trailers, malformed framing). The
property tests feed the same bytes, cut into the same reads, to one connection with the reader and to
one without it (``ChunkReader = None``: an install without a C compiler) and compare everything the
response's owner can see, read by read: the pieces delivered, status, headers, the end, the error,
whether the connection is kept, and a second response on the same connection.

``test_the_streaming_suites_without_the_extension`` runs the suite's streaming paths (the pool over
loopback, the translator's run, the served gateway's streams) with this extension and the
translator's (translate/_run.c) made unimportable, as a compiler-less install has it.

A sanitizer build (run once for the review; see docs/performance.md):

    gcc -shared -fPIC -fsanitize=address,undefined -fno-sanitize-recover=undefined -g -O1 \\
        -I$(python -c "import sysconfig;print(sysconfig.get_paths()['include'])") \\
        src/anthropic_gateway/httpclient/_chunks.c -o COPY/src/anthropic_gateway/httpclient/_chunks$(python3-config --extension-suffix)
    PYTHONPATH=COPY/src LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \\
        ASAN_OPTIONS=detect_leaks=0 python -m pytest tests/httpclient
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anthropic_gateway.httpclient import connection
from anthropic_gateway.httpclient.connection import Connection, Response
from anthropic_gateway.translate import stream

FORCED_OFF = os.environ.get("GATEWAY_TEST_CHUNKS_OFF") == "1"  # the run below, without the extension
if connection.ChunkReader is None and not FORCED_OFF:  # pragma: no cover - installed without a compiler
    # Skipped, except under CI=true (.ci/run installs from scratch with a compiler), where a missing
    # extension is a failure.
    _why = "the C extension anthropic_gateway.httpclient._chunks is not built: reinstall with `pip install -e '.[dev]'`"
    if os.environ.get("CI") == "true":
        raise ImportError(_why)
    pytest.skip(_why, allow_module_level=True)
Reader: Any = connection.ChunkReader
with_reader = pytest.mark.skipif(FORCED_OFF, reason="the extension is off in this run")
REPO = Path(__file__).resolve().parents[2]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def wire(payloads: list[bytes], end: bytes = b"0\r\n\r\n") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in payloads) + end


# --- the reader alone ----------------------------------------------------------------------------


@with_reader
def test_the_reader_cuts_a_read_into_its_payloads() -> None:
    r = Reader()
    assert r.tail is None
    assert r.feed(wire([b"abc", b"de" * 100])[:-5]) == [b"abc", b"de" * 100]
    assert r.tail is None
    assert r.feed(b"0\r\n\r\n") == []
    assert r.tail == b"0\r\n\r\n"  # the last chunk is httptools'


@with_reader
def test_the_reader_keeps_what_a_read_cut_off() -> None:
    body = wire([b"hello", b"x" * 300])
    r = Reader()
    got: list[list[bytes]] = []
    for i in range(len(body)):
        got.append(r.feed(body[i : i + 1]))
        if r.tail is not None:
            break
    assert b"".join(b"".join(g) for g in got) == b"hello" + b"x" * 300
    assert all(p for g in got for p in g)  # never an empty piece
    assert r.tail == b"0\r\n"  # the last chunk's line from its start (its LF tells it is the last)


@with_reader
@pytest.mark.parametrize(
    ("body", "pieces", "tail"),
    [
        (b"3;ext=1\r\nabc\r\n", [], b"3;ext=1\r\nabc\r\n"),  # an extension: httptools' from the line on
        (b"3\r\nabc\r\n 4\r\n", [b"abc"], b" 4\r\n"),
        (b"3\r\nabc\r\n4 \r\n", [b"abc"], b"4 \r\n"),
        (b"3\r\nabc\r\n4\n", [b"abc"], b"4\n"),
        (b"3\r\nabc\r\n\r\n", [b"abc"], b"\r\n"),
        (b"3\r\nabc\r\n0000000000000004\r\n", [b"abc"], b"0000000000000004\r\n"),  # past 15 digits
        (b"3\r\nabc\r\n1000000000000000\r\n", [b"abc"], b"1000000000000000\r\n"),  # 2**60: 16 digits
        (b"3\r\nabc\r\n10000000000000004\r\n", [b"abc"], b"10000000000000004\r\n"),  # 2**64 + 4, would wrap to 4
        (b"3\r\nabcX", [b"abc"], b"\r"),  # not CR LF after the data: httptools' own error follows
        (b"3\r\nabc\rX", [b"abc"], b"\r"),
        (b"3\r\nabc\n", [b"abc"], b"\r"),
        (b"g\r\n", [], b"g\r\n"),
    ],
)
def test_the_reader_stops_where_httptools_must_take_over(body: bytes, pieces: list[bytes], tail: bytes) -> None:
    r = Reader()
    assert r.feed(body) == pieces
    assert r.tail == tail
    with pytest.raises(RuntimeError):
        r.feed(b"1\r\nx\r\n")  # a stopped reader is not used again


@with_reader
def test_the_largest_size_taken_only_slices_what_arrives() -> None:
    r = Reader()  # 15 digits, 2**60 - 1 bytes declared: nothing is allocated for them
    assert r.feed(b"3\r\nabc\r\nfffffffffffffff\r\nxy") == [b"abc", b"xy"]
    assert r.feed(b"z" * 5) == [b"zzzzz"]
    assert r.tail is None


@with_reader
def test_a_size_line_split_over_reads_comes_back_whole_in_the_tail() -> None:
    r = Reader()
    assert r.feed(b"3\r\nabc\r\n00") == [b"abc"]
    assert r.feed(b"0") == []
    assert r.feed(b"0;x") == []
    assert r.tail == b"0000;x"


@with_reader
def test_the_reader_takes_a_start_and_checks_its_arguments() -> None:
    r = Reader()
    data = HEAD + wire([b"abc"], b"")
    assert r.feed(data, len(HEAD)) == [b"abc"]
    assert r.feed(data, len(data)) == []
    with pytest.raises(ValueError):
        r.feed(data, len(data) + 1)
    with pytest.raises(ValueError):
        r.feed(data, -1)
    with pytest.raises(TypeError):
        r.feed(bytearray(data))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Reader(1)  # type: ignore[call-arg]


@with_reader
def test_the_reader_holds_no_reference_it_should_not() -> None:
    data = wire([b"a" * 50] * 10, b"")
    before = sys.getrefcount(data)
    r = Reader()
    for _ in range(100):
        pieces = r.feed(data)
        assert [sys.getrefcount(pieces[i]) for i in range(10)] == [2] * 10  # the list's and getrefcount's own
        assert sys.getrefcount(pieces) == 2
    assert sys.getrefcount(data) == before
    r.feed(b"0\r\n\r\n")
    tail = r.tail
    assert sys.getrefcount(tail) == 3  # the reader's, this name's, getrefcount's


_P, _S = b'data: {"c":"', b'"}\n\n'  # a template event's envelope, as the translator learns one
_TPL = (_P, _S, b"<", b">")


@with_reader
def test_the_run_takes_the_leading_template_events_of_a_read() -> None:
    r = Reader()
    data = HEAD + wire([_P + b"ab" + _S, _P + b"c" + _S, b"data: [DONE]\n\n", _P + b"d" + _S], b"0\r\n\r\n")
    text, k, at = r.run(data, len(HEAD), _TPL)
    assert (text, k) == (b"<ab><c>", 2)
    assert r.feed(data, at) == [b"data: [DONE]\n\n", _P + b"d" + _S]  # the rest, as feed() cuts it
    assert r.tail == b"0\r\n\r\n"
    # nothing to take: a read that does not begin with a whole template event, or the last chunk
    for first in (b"data: [DONE]\n\n", _P + _S, _P + b'"' + _S, _P + b"\xc3\xa9" + _S, _P + b"\x1f" + _S):
        assert Reader().run(wire([first, _P + b"x" + _S], b""), 0, _TPL) is None
    assert Reader().run(b"0\r\n\r\n", 0, _TPL) is None
    assert Reader().run(b"", 0, _TPL) is None


@with_reader
@pytest.mark.parametrize("cut", [1, 2, 3, 5, 20, 24, 25])
def test_the_run_takes_only_whole_chunks(cut: int) -> None:
    # "14\r\n" + 20 bytes + CR LF: a read cut anywhere in the second chunk leaves it to feed()
    first, second = _P + b"ab" + _S, _P + b"cdef" + _S
    data = wire([first, second], b"")
    at_second = len(wire([first], b""))
    r = Reader()
    text, k, at = r.run(data[: at_second + cut], 0, _TPL)
    assert (text, k, at) == (b"<ab>", 1, at_second)
    pieces = r.feed(data[: at_second + cut], at)
    pieces += r.feed(data[at_second + cut :])
    assert b"".join(pieces) == second and r.tail is None


@with_reader
def test_the_run_never_starts_inside_a_chunk_or_a_size_line() -> None:
    data = wire([_P + b"ab" + _S, _P + b"c" + _S], b"")
    for cut in (1, 2, 3, 4, 10, len(data) - 2, len(data) - 1):
        r = Reader()
        r.feed(data[:cut])
        assert r.run(data, cut, _TPL) is None  # the reader is mid-chunk: feed() takes the read
    r = Reader()
    r.feed(wire([b"x"], b"") + b"1")  # a size line begun
    assert r.run(wire([_P + b"c" + _S], b""), 0, _TPL) is None


@with_reader
@pytest.mark.parametrize("size", ["1a", "01a", "1A", "0" * 13 + "1a"])
def test_the_run_reads_sizes_as_feed_does(size: str) -> None:
    payload = _P + b"x" * (26 - len(_P) - len(_S)) + _S  # 26 bytes: 0x1a
    data = size.encode() + b"\r\n" + payload + b"\r\n"
    assert Reader().run(data, 0, _TPL) == (b"<" + b"x" * (26 - len(_P) - len(_S)) + b">", 1, len(data))
    assert Reader().run(b"0" * (16 - len(size)) + data, 0, _TPL) is None  # 16 digits: past what feed() takes
    assert Reader().run(data.replace(b"\r\n", b"\n", 1), 0, _TPL) is None
    assert Reader().run(data[:-2] + b"\n\r", 0, _TPL) is None  # not CR LF after the data: feed() stops there


@with_reader
def test_the_run_checks_its_arguments_and_holds_no_reference() -> None:
    r = Reader()
    data = wire([_P + b"a" + _S] * 10, b"")
    with pytest.raises(ValueError):
        r.run(data, len(data) + 1, _TPL)
    with pytest.raises(ValueError):
        r.run(data, -1, _TPL)
    with pytest.raises(TypeError):
        r.run(bytearray(data), 0, _TPL)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        r.run(data, 0, list(_TPL))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        r.run(data, 0, _TPL[:3])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        r.run(data, 0, (_P, _S, "<", b">"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        r.run(data, 0)  # type: ignore[call-arg]
    before = [sys.getrefcount(x) for x in (data, *_TPL)]
    for _ in range(100):
        taken = r.run(data, 0, _TPL)
        assert taken is not None and taken[1:] == (10, len(data))
        counts = sys.getrefcount(taken), sys.getrefcount(taken[0])
        assert counts == (2, 2)  # this name's (the tuple's) and getrefcount's own
    assert [sys.getrefcount(x) for x in (data, *_TPL)] == before
    assert r.feed(b"0\r\n\r\n") == [] and r.tail == b"0\r\n\r\n"  # still at a size line
    with pytest.raises(RuntimeError):
        r.run(data, 0, _TPL)  # stopped: not used again


# --- the connection, with and without the reader --------------------------------------------------


class _Pool:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events: list[str] = []

    def forget(self, conn: Connection) -> None:
        self.events.append("forget")

    def put(self, conn: Connection) -> None:
        self.events.append("put")

    def discard(self, conn: Connection) -> None:
        self.events.append("discard")


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _observe(
    loop: asyncio.AbstractEventLoop, responses: list[list[bytes]], use_reader: bool, sink: bool,
    run: tuple[bytes, bytes, bytes, bytes] | None = None, joined: bool = False,
) -> list[Any]:  # fmt: skip
    """What a response's owner sees of each response on one connection (each a list of reads), read
    by read, with or without the reader. With ``run`` (a template whose head and tail are its own
    prefix and suffix, so that a run's text_deltas are its pieces' bytes) a read's run goes to the
    run sink: what each read delivered is then compared joined."""
    saved = connection.ChunkReader
    connection.ChunkReader = saved if use_reader else None
    try:
        pool = _Pool(loop)
        conn = Connection(pool, ("http", "x", 1))  # type: ignore[arg-type]
        transport = _Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        seen: list[Any] = []
        for reads in responses:
            if conn.lost or transport.closed:
                seen.append("closed")
                break
            response = conn.response = Response(conn, 60.0, loop.time() + 60.0)
            conn.reader = None
            got: list[list[bytes]] = []
            if sink:
                response.sink = got.append
            if run is not None:
                response.run = run
                response.run_sink = lambda pieces, text, k, got=got: got.append([text, *pieces])
            for data in reads:
                conn.data_received(data)
                delivered = [p for g in got for p in g] + response.take_parts()
                got.clear()
                if joined:
                    delivered = [b"".join(delivered)] if delivered else []
                seen.append(("read", delivered, response.status, response.finished, response.ended))
            error = response.error
            seen.append((
                "end", response.status, dict(response.headers), response.ended, response._keep,
                type(error).__name__ if error else None, str(error) if error else None,
                transport.closed, conn.lost,
            ))  # fmt: skip
            response.release() if response.ended else response.close()
            seen.append(list(pool.events))
        return seen
    finally:
        connection.ChunkReader = saved


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@st.composite
def _size_line(draw: st.DrawFn, n: int) -> bytes:
    digits = f"{n:x}" if draw(st.booleans()) else f"{n:X}"
    if draw(st.integers(0, 9)) == 0:
        digits = "0" * draw(st.integers(1, 16)) + digits
    ext = b""
    if draw(st.integers(0, 9)) == 0:
        ext = draw(st.sampled_from([b";a=b", b";x", b' ;q="1"', b";" + b"e" * 40]))
    return digits.encode() + ext + b"\r\n"


@st.composite
def _body(draw: st.DrawFn) -> bytes:
    payloads = draw(st.lists(st.binary(min_size=1, max_size=300), max_size=12))
    out = [draw(_size_line(len(p))) + p + b"\r\n" for p in payloads]
    out.append(draw(_size_line(0)))
    if draw(st.integers(0, 5)) == 0:
        out.append(draw(st.sampled_from([b"X-Trailer: 1\r\n", b"A: b\r\nC: d\r\n"])))
    out.append(b"\r\n")
    return b"".join(out)


@st.composite
def _response(draw: st.DrawFn) -> bytes:
    head = draw(st.sampled_from([
        HEAD,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ]))  # fmt: skip
    if draw(st.integers(0, 7)) == 0:
        body = draw(st.binary(max_size=40))
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    data = head + draw(_body())
    if draw(st.integers(0, 3)) == 0:  # malformed framing: a byte changed, dropped or added
        at = draw(st.integers(len(head), len(data)))
        byte = draw(st.sampled_from([b"\r", b"\n", b"0", b"a", b";", b" ", b"x", b"\x00"]))
        how = draw(st.sampled_from(["set", "drop", "add"]))
        if how == "set":
            data = data[:at] + byte + data[at + 1 :]
        elif how == "drop":
            data = data[:at] + data[at + 1 :]
        else:
            data = data[:at] + byte + data[at:]
    if draw(st.integers(0, 9)) == 0:
        data += draw(st.sampled_from([b"junk", b"\r\n"]))
    return data


@with_reader
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=_response(),
    second=_response(),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    cuts2=st.lists(st.integers(0, 10_000), max_size=6),
    sink=st.booleans(),
)
def test_the_reader_and_httptools_agree(
    loop: asyncio.AbstractEventLoop, first: bytes, second: bytes, cuts: list[int], cuts2: list[int], sink: bool
) -> None:
    responses = [_split(first, cuts), _split(second, cuts2)]
    assert _observe(loop, responses, True, sink) == _observe(loop, responses, False, sink)


@with_reader
@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=30),
    cuts=st.lists(st.integers(0, 10_000), max_size=40),
)
def test_a_well_formed_stream_goes_through_the_reader(
    loop: asyncio.AbstractEventLoop, payloads: list[bytes], cuts: list[int]
) -> None:
    # the usual stream: the reader takes every read after the headers (httptools only its last chunk)
    reads = _split(HEAD + wire(payloads), cuts)
    seen = _observe(loop, [reads, [HEAD + wire([b"again"])]], True, True)
    assert seen == _observe(loop, [reads, [HEAD + wire([b"again"])]], False, True)
    assert b"".join(p for s in seen if s[0] == "read" for p in s[1]) == b"".join(payloads) + b"again"
    assert seen[-1] == ["put", "put"]  # both went back to the pool: the parser was left ready


@st.composite
def _templated(draw: st.DrawFn) -> bytes:
    """A stream whose chunks are mostly template events (plain texts, some needing escapes, empty
    ones), with others between them, maybe malformed as _response's are."""
    texts = st.one_of(
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=6).map(str.encode),
        st.binary(max_size=6),
    )
    payloads = draw(st.lists(st.one_of(texts.map(lambda t: _P + t + _S), texts.map(lambda t: _P + t + _S),
                                       st.binary(min_size=1, max_size=40)), max_size=20))  # fmt: skip
    head = draw(st.sampled_from([HEAD, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"]))
    data = head + b"".join(draw(_size_line(len(p))) + p + b"\r\n" for p in payloads) + b"0\r\n\r\n"
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(len(head), len(data)))
        byte = draw(st.sampled_from([b"\r", b"\n", b"0", b"a", b";", b" ", b"x", b"\x00"]))
        data = data[:at] + byte + data[at + draw(st.integers(0, 1)) :]
    return data


@with_reader
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.one_of(_templated(), _response()),
    second=_templated(),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    cuts2=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_the_readers_run_and_httptools_agree(
    loop: asyncio.AbstractEventLoop, first: bytes, second: bytes, cuts: list[int], cuts2: list[int]
) -> None:
    responses = [_split(first, cuts), _split(second, cuts2)]
    tpl = (_P, _S, _P, _S)
    assert _observe(loop, responses, True, True, tpl, True) == _observe(loop, responses, False, True, None, True)


@with_reader
def test_the_usual_read_goes_to_the_run_sink(loop: asyncio.AbstractEventLoop) -> None:
    pool = _Pool(loop)
    conn = Connection(pool, ("http", "x", 1))  # type: ignore[arg-type]
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    response = conn.response = Response(conn, 60.0, loop.time() + 60.0)
    got: list[Any] = []
    response.sink = got.append
    response.run_sink = lambda pieces, text, k: got.append((text, k, pieces))
    conn.data_received(HEAD + wire([_P + b"a" + _S], b""))
    assert got == [[_P + b"a" + _S]]  # no template set: pieces
    response.run = _TPL
    conn.data_received(wire([_P + b"b" + _S, _P + b"cd" + _S, b"data: [DONE]\n\n"], b"0\r\n\r\n"))
    assert got[1:] == [(b"<b><cd>", 2, [b"data: [DONE]\n\n"])]
    assert conn.reader is None and response.ended and response._keep  # the last chunk was httptools'


@with_reader
def test_the_reader_is_used_between_the_headers_and_the_last_chunk(loop: asyncio.AbstractEventLoop) -> None:
    pool = _Pool(loop)
    conn = Connection(pool, ("http", "x", 1))  # type: ignore[arg-type]
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    response = conn.response = Response(conn, 60.0, loop.time() + 60.0)
    got: list[list[bytes]] = []
    response.sink = got.append
    conn.data_received(HEAD + b"3\r\nabc\r\n2\r")
    assert isinstance(conn.reader, Reader)
    assert got == [[b"abc"]]
    conn.data_received(b"\nde\r\n0\r\n\r\n")
    assert conn.reader is None
    assert got == [[b"abc"], [b"de"]]
    assert response.ended and response._keep


# --- the suite's streaming paths without the extension ---------------------------------------------


@pytest.mark.skipif(FORCED_OFF, reason="this run is the one without the extension")
def test_the_streaming_suites_without_the_extension(tmp_path: Path) -> None:
    # As a compiler-less install has it: the import fails (None in sys.modules) in the test process
    # and in every gateway it starts (PYTHONPATH reaches them).
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['anthropic_gateway.httpclient._chunks'] = None\n"
        "sys.modules['anthropic_gateway.translate._run'] = None\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "GATEWAY_TEST_CHUNKS_OFF": "1"}
    suites = [
        "tests/httpclient/test_pool.py",
        "tests/httpclient/test_chunks.py",
        "tests/unit/test_stream_fast_path.py",
        "tests/http_api/test_direct_start.py",
        "tests/http_api/test_direct_write.py",
        "tests/e2e/test_basics.py",
        "tests/e2e/test_tool_input_streaming.py",
        "tests/e2e/test_disconnect.py",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1]


@pytest.mark.skipif(not FORCED_OFF, reason="only in the run without the extension")
def test_the_extension_is_off_in_this_run() -> None:
    assert connection.ChunkReader is None
    assert stream._c_plain_run is None
