"""The stream translator's text fast path (a typed msgspec decode of the common text chunk, issue 15)
gives the same bytes as the general path (orjson.loads and the dict walk) for any chunk sequence and
any split into reads: the general path is the reference, run by making the fast decode refuse."""

from __future__ import annotations

import itertools
import re
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anthropic_gateway import sse
from anthropic_gateway.errors import GatewayTimeoutError
from anthropic_gateway.translate import stream
from anthropic_gateway.translate.context import RequestContext
from anthropic_gateway.translate.stream import StreamTranslator

_RANDOM_ID = re.compile(rb"toolu_[A-Za-z0-9]+")


def _refuse(payload: bytes) -> Any:
    raise msgspec.ValidationError("general path only")


def _run(reads: list[bytes], ctx: RequestContext, fast: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, Any]:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(stream, "_decode_text", _refuse)
        t = StreamTranslator(ctx, "msg_x", 7)
        out = [t.start()]
        out += [t.feed(r) for r in reads]
        out.append(t.finish())
        # A repeated upstream tool id gets a fresh random one (common.client_tool_id): not compared.
        return _RANDOM_ID.sub(b"toolu_X", b"".join(out)), t.final_usage()


_text = st.text(min_size=0, max_size=6)
_meta = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["c1", ""]), "object": st.just("chat.completion.chunk"),
        "created": st.sampled_from([1, 0, 1.5, "x"]), "model": st.just("m"),
        "system_fingerprint": st.sampled_from([None, "fp", 3]), "provider": st.sampled_from(["P", None]),
        "usage": st.sampled_from([None, {}, {"prompt_tokens": 3, "completion_tokens": 2}]),
        "error": st.sampled_from([None, {"message": "boom", "code": 500}]), "extra": st.just(1),
        "service_tier": st.sampled_from(["default", None, 1]), "obfuscation": st.sampled_from(["Xy3", None]),
    },
)  # fmt: skip
_fragment = st.fixed_dictionaries(
    {"function": st.fixed_dictionaries(
        {}, optional={"arguments": st.one_of(st.sampled_from(['{"a":', '1}', "", " "]), _text, st.just({"a": 1})),
                      "name": st.sampled_from(["f", "g", "", None])})},
    optional={"index": st.sampled_from([0, 1, "0", True, None]), "id": st.sampled_from(["t1", "t2", "", None]),
              "type": st.sampled_from(["function", None])},
)  # fmt: skip
_delta = st.fixed_dictionaries(
    {},
    optional={
        "content": st.one_of(_text, st.none(), st.sampled_from([5, 0, {"t": "x"}, [], ["x"]])),
        "role": st.sampled_from(["assistant", None, 1]),
        "reasoning": st.sampled_from([None, "hmm", 0, {}]), "refusal": st.sampled_from([None, "no", 1]),
        "reasoning_content": st.sampled_from([None, "hmm", ""]),
        # OpenRouter's null-meaning `[]`, and real details (Claude's and others', not Claude's format)
        "reasoning_details": st.sampled_from([
            [], None, {}, [None], [{"type": "reasoning.text", "text": "t", "format": "anthropic-claude-v1", "index": 0}],
            [{"type": "reasoning.text", "signature": "sig", "format": "anthropic-claude-v1", "index": 0}],
            [{"type": "reasoning.summary", "summary": "s"}],
        ]),
        "tool_calls": st.one_of(st.none(), st.lists(_fragment, min_size=1, max_size=2)),
    },
)  # fmt: skip
_choice = st.fixed_dictionaries(
    {"delta": _delta},
    optional={
        "index": st.sampled_from([0, 1, "0"]), "finish_reason": st.sampled_from([None, "stop", "length", "error", "", 5]),
        "native_finish_reason": st.sampled_from([None, "stop"]), "logprobs": st.none(),
    },
)  # fmt: skip
_chunk = st.builds(lambda meta, choices: {**meta, "choices": choices}, _meta, st.lists(_choice, max_size=2))
_RAW = [  # what the two decoders might judge differently (both must call these malformed or not), and tools
    b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":""}}]}}]}',
    b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\":"}}]}}]}',
    b'{"choices":[{"index":0,"delta":{"content":null,"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}',
    b'{"id":"\xff","choices":[{"delta":{"content":"x"}}]}',
    b'{"created":1e999,"choices":[{"delta":{"content":"x"}}]}',
    b'{"choices":[{"delta":{"content":"\\ud800"}}]}',
    b'{"choices":[{"delta":{"content":"a","content":"b"}}]}',
    b'{"choices":[{"delta":{"content":"x"}}],"choices":[]}',
    b'{"choices":[{"delta":{"content":"x"}}]',
    b'[{"choices":[{"delta":{"content":"x"}}]}]',
    b'{"choices":[{"delta":{"content":"\\u00e9\\ud83d\\ude00"}}]}',
    b'{"choices":[{"delta":{},"finish_reason":"stop","stop_reason":"END"}]}',
    b'{"choices":[{"delta":{},"finish_reason":"error","error":{"message":"boom"}}]}',
    b'{"choices":[{"delta":{"content":"x"},"finish_reason":"length"}]}',
]

# OpenRouter's chunk as it streams (every delta carries role and null reasoning): a fixed envelope
# around generated content, so consecutive chunks differ only in their text.
def _openrouter(content: Any) -> bytes:
    return orjson.dumps({
        "id": "gen-1", "provider": "OpenAI", "model": "openai/gpt-4o", "object": "chat.completion.chunk",
        "created": 1, "choices": [{"index": 0, "delta": {"role": "assistant", "content": content, "reasoning": None,
                                                         "reasoning_details": []},
                                   "finish_reason": None, "native_finish_reason": None, "logprobs": None}],
        "system_fingerprint": "fp_1",
    })  # fmt: skip


# The same envelope around raw string bodies, as an upstream might write them: escapes orjson would
# not write (`\u0041`, `\/`), bytes that are not UTF-8 or not allowed in a JSON string, a quote.
_OR_HEAD, _OR_TAIL = _openrouter("\x00").split(b"\\u0000")
_BODIES = [
    b"w1 ", b"\\u0041", b"\\/", b"\xff", b"\xc3\xa9 caf\xc3\xa9", b"\xc3", b"\xed\xa0\x80", b"a\x7fb", b"\t", b"\\n",
    b'\\"', b"\\\\", b"", b'x","content":"y', b"\xf0\x9f\x98\x80",
]  # fmt: skip
_raw_openrouter = st.lists(st.sampled_from(_BODIES), min_size=1, max_size=3).map(
    lambda parts: _OR_HEAD + b"".join(parts) + _OR_TAIL
)
# A content key twice: the decoders keep the last, the template path must not take the first.
_twice = st.sampled_from(_BODIES).map(lambda b: b'{"choices":[{"index":0,"delta":{"content":"' + b + b'","content":"w1 "}}]}')
# An event of two `data:` lines, and the same bytes where the second line is not a data line.
_lines = st.sampled_from([b'{"choices":[{"index":0,\ndata: "delta":{"content":"w1 "}}]}',
                          b'{"choices":[{"index":0,\n"delta":{"content":"w2 "}}]}'])  # fmt: skip
_plain_text = st.text(st.sampled_from("ab !"), min_size=1, max_size=3).map(_openrouter)
_odd_text = st.text(st.sampled_from('ab "\\\n\u00e9'), min_size=1, max_size=3).map(_openrouter)
_enveloped = st.one_of(
    _plain_text, _plain_text, _plain_text, _plain_text, _odd_text, st.one_of(st.text(max_size=8), st.none()).map(_openrouter),
    _raw_openrouter, _twice, _lines,
)
_payload = st.one_of(_chunk.map(orjson.dumps), st.sampled_from(_RAW), _enveloped)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payloads=st.one_of(st.lists(_payload, max_size=12), st.lists(_enveloped, min_size=3, max_size=10)),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=6),
    stops=st.sampled_from([[], ["b"]]),
    done=st.booleans(),
    stream_tools=st.booleans(),
    max_tokens=st.sampled_from([50, 3]),
    group=st.integers(min_value=2, max_value=4),
    tail=st.sampled_from([0, 0, 1, 5, 40]),
)
def test_fast_and_general_paths_give_the_same_bytes(
    payloads: list[bytes], cuts: list[int], stops: list[str], done: bool, stream_tools: bool, max_tokens: int,
    group: int, tail: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    opening = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}\n\n'
    data = opening + b"".join(b"data: " + p + b"\n\n" for p in payloads) + (b"data: [DONE]\n\n" if done else b"")
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    events = [e + b"\n\n" for e in data.split(b"\n\n")[:-1]]
    # three reads of one event each (a template is learned), then reads of `group` events, every
    # other one cut `tail` bytes short (its last event ends in the next read)
    grouped = events[:3]
    for i in range(3, len(events), group):
        read = b"".join(events[i : i + group])
        cut = len(read) - tail if (i // group) % 2 else len(read)
        grouped += [r for r in (read[:cut], read[cut:]) if r]
    for reads in ([data[a:b] for a, b in itertools.pairwise(bounds)], events, grouped):
        ctx = RequestContext(
            client_model="claude-x", target_is_claude=False, local_stops=stops, max_tokens=max_tokens,
            stream_tool_input=stream_tools,
        )  # fmt: skip
        fast = _run(reads, ctx, True, monkeypatch)
        general = _run(reads, ctx, False, monkeypatch)
        assert fast == general, (payloads, reads)


_END = [
    b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}',
    b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9}}', b"[DONE]",
]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.one_of(*[st.text(st.sampled_from("ab !"), min_size=1, max_size=3)] * 4,
                             st.text(st.sampled_from('a "\\\n\u00e9'), max_size=3), st.none()),
                   min_size=2, max_size=14),
    odd=st.lists(st.tuples(st.integers(0, 13), st.sampled_from([*_RAW, *_BODIES])), max_size=2),
    sizes=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=6).map(lambda s: [1, 2, *s]),
    tails=st.lists(st.sampled_from([0, 0, 1, 7, 60]), min_size=1, max_size=6),
    end=st.integers(min_value=0, max_value=3),
    max_tokens=st.one_of(st.just(50), st.integers(min_value=2, max_value=8)),
)
def test_the_template_path_gives_the_general_paths_bytes(
    texts: list[str | None], odd: list[tuple[int, bytes]], sizes: list[int], tails: list[int], end: int,
    max_tokens: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A run of one envelope (the template path's case) in reads of several events, some of them
    # ending inside an event, with now and then another chunk (or a raw body in the envelope) among them.
    payloads = [_openrouter(t) for t in texts]
    for at, raw in odd:
        payloads.insert(at, raw if raw.startswith(b"{") else _OR_HEAD + raw + _OR_TAIL)
    opening = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}\n\n'
    events = [opening] + [b"data: " + p + b"\n\n" for p in payloads + _END[:end]]
    reads: list[bytes] = []
    i = 0
    for k in itertools.count():
        if i >= len(events):
            break
        size = sizes[k % len(sizes)]
        read = b"".join(events[i : i + size])
        i += size
        cut = max(len(read) - tails[k % len(tails)], 0) if k % 2 else len(read)  # every other read cut short
        reads += [r for r in (read[:cut], read[cut:]) if r]
    ctx = RequestContext(client_model="claude-x", target_is_claude=False, max_tokens=max_tokens)
    assert _run(reads, ctx, True, monkeypatch) == _run(reads, ctx, False, monkeypatch), reads


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The payloads the fast path's typed decode (stream._decode_text) is asked for from now on."""
    decoded: list[bytes] = []
    real = stream._decode_text

    def counting(payload: bytes) -> Any:
        decoded.append(payload)
        return real(payload)

    monkeypatch.setattr(stream, "_decode_text", counting)
    return decoded


def _general_path(monkeypatch: pytest.MonkeyPatch, t: StreamTranslator) -> list[bytes]:
    """The payloads that reach t's general path from now on (which then does nothing with them)."""
    general: list[bytes] = []
    monkeypatch.setattr(t, "_payload", general.append)
    return general



@pytest.mark.parametrize(
    "chunk",
    [
        b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"w1 "},"finish_reason":null}]}',
        _openrouter("w1 "),
        # OpenAI's with stream_options.include_usage
        b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","service_tier":"default",'
        b'"system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"w1 "},"logprobs":null,'
        b'"finish_reason":null}],"usage":null,"obfuscation":"k9"}',
        # DeepSeek's
        b'{"id":"1","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner","system_fingerprint":"fp_1",'
        b'"choices":[{"index":0,"delta":{"content":"w1 ","reasoning_content":null},"logprobs":null,"finish_reason":null}]}',
    ],
)
def test_the_common_text_chunk_takes_the_fast_path(chunk: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the test above: the fast path is really taken for the mock's and the real services' text chunk.
    calls = _count_decodes(monkeypatch)
    t = StreamTranslator(RequestContext(client_model="claude-x", target_is_claude=False), "msg_x")
    t.feed(b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}\n\n')
    general = _general_path(monkeypatch, t)  # the general path must not see it
    out = t.feed(b"data: " + chunk + b"\n\n")
    assert calls[1:] == [chunk] and general == []  # (the first, the answer's first text, decoded too)
    assert out == (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                   b'"delta":{"type":"text_delta","text":"w1 "}}\n\n')  # fmt: skip


def test_the_answers_role_chunk_and_first_text_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the fast path's opening: the role chunk (nothing to say) and the text that opens the
    # block are decoded as the Struct, never walked as dicts, and the template is learned from that
    # first text, so the next read is copied, not decoded.
    decoded = _count_decodes(monkeypatch)
    t = StreamTranslator(RequestContext(client_model="claude-x", target_is_claude=False), "msg_x")
    general = _general_path(monkeypatch, t)  # the general path must not see them
    role, first = _openrouter(""), _openrouter("Hi")
    out = t.feed_parts([b"data: " + role + b"\n\n", b"data: " + first + b"\n\n"])
    assert general == [] and decoded == [role, first]
    assert out == sse.text_start(0) + sse.text_delta(0, "Hi")
    assert (t.pieces, t.chars, t.open) == (1, 2, stream.TEXT)
    assert t.feed(b"data: " + _openrouter(" there") + b"\n\n") == sse.text_delta(0, " there")
    assert decoded == [role, first] and general == []


def test_the_finish_chunk_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the finish chunk's branch: decoded as the Struct, its reason kept, not walked as dicts;
    # with text in it, the general path (the text and the reason both count).
    t = StreamTranslator(RequestContext(client_model="claude-x", target_is_claude=False), "msg_x")
    t.feed(b"data: " + _openrouter("Hi") + b"\n\n")
    general = _general_path(monkeypatch, t)
    end = b'{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}'
    assert t.feed(b"data: " + end + b"\n\n") == b""
    assert general == [] and (t.finish_reason, t.native_reason, t.reported_stop) == ("stop", None, None)
    last = b'{"id":"c","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"length"}]}'
    t.feed(b"data: " + last + b"\n\n")
    assert general == [last]


def test_the_usage_chunk_is_not_decoded_as_the_struct(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the usage chunk's shortcut: a payload whose last value is an object is no _Chunk, so it
    # goes to the general path without the typed decode's exception; its usage is kept as before.
    decoded = _count_decodes(monkeypatch)
    t = StreamTranslator(RequestContext(client_model="claude-x", target_is_claude=False), "msg_x")
    t.feed(b"data: " + _openrouter("Hi") + b"\n\n")
    usage = b'{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9}}'
    assert t.feed(b"data: " + usage + b"\n\n") == b""
    assert usage not in decoded and t.usage == {"prompt_tokens": 3, "completion_tokens": 9}


def test_a_streamed_tool_calls_argument_fragments_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = _count_decodes(monkeypatch)
    ctx = RequestContext(client_model="claude-x", target_is_claude=False, stream_tool_input=True)
    t = StreamTranslator(ctx, "msg_x")
    first = b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}'
    frag = b'{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\":"}}]},"finish_reason":null}]}'
    t.feed(b"data: " + first + b"\n\n")
    general = _general_path(monkeypatch, t)  # the general path must not see it
    out = t.feed(b"data: " + frag + b"\n\n")
    assert general == []
    assert taken[-1] == frag  # the first opens the block by the general path; the fragment decodes here
    assert out == (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                   b'"delta":{"type":"input_json_delta","partial_json":"{\\"a\\":"}}\n\n')  # fmt: skip
    assert t.live is not None and t.live.args == ['{"a":']


def test_a_repeated_envelope_is_copied_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the template path: once a chunk's envelope is learned, a read that is the same envelope
    # around plain text is neither split by the SSE decoder nor decoded, and gives the same bytes.
    decoded = _count_decodes(monkeypatch)
    ctx = RequestContext(client_model="claude-x", target_is_claude=False)
    texts = ("Hi", " there", " caf\u00e9", ' "q"\n', "!", "a", "b")
    reads = [b"data: " + _openrouter(t) + b"\n\n" for t in texts[:5]]
    reads.append(b"".join(b"data: " + _openrouter(t) + b"\n\n" for t in texts[5:]))  # two events in one read
    t = StreamTranslator(ctx, "msg_x")
    t.start()
    outs = [t.feed(r) for r in reads]
    # The first chunk opens the block and is decoded and learned; then none is decoded.
    assert decoded == [_openrouter("Hi")]
    assert outs[2] == (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                       b'"delta":{"type":"text_delta","text":" caf\xc3\xa9"}}\n\n')  # fmt: skip
    assert outs[3].endswith(b'"text":" \\"q\\"\\n"}}\n\n') and outs[4].endswith(b'"text":"!"}}\n\n')
    assert outs[5] == outs[4].replace(b"!", b"a") + outs[4].replace(b"!", b"b")
    assert (t.pieces, t.chars) == (7, 2 + 6 + 5 + 5 + 1 + 1 + 1)


def test_nothing_follows_an_error_from_outside_on_the_template_path() -> None:
    t = StreamTranslator(RequestContext(client_model="claude-x", target_is_claude=False), "msg_x")
    t.start()
    for text in ("a", "b", "c"):
        assert t.feed(b"data: " + _openrouter(text) + b"\n\n")
    assert t.fail(GatewayTimeoutError("The upstream was silent for 600 s")).startswith(b"event: error")
    assert t.feed(b"data: " + _openrouter("d") + b"\n\n") == b""
    assert t.feed(b"".join(b"data: " + _openrouter(x) + b"\n\n" for x in "ef")) == b""


def test_a_read_of_several_template_events_past_max_tokens_ends_the_answer() -> None:
    t = StreamTranslator(RequestContext(client_model="claude-x", target_is_claude=False, max_tokens=2), "msg_x")
    t.start()
    t.feed(b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}\n\n')
    assert t.feed(b"data: " + _openrouter("a") + b"\n\n")  # learned; 2 pieces of text, not past 2 tokens
    both = t.feed(b"".join(b"data: " + _openrouter(x) + b"\n\n" for x in "bc"))
    assert both.count(b"text_delta") == 2 and t.over_budget and t.done
    assert t.feed(b"data: " + _openrouter("d") + b"\n\n") == b""
    assert b'"stop_reason":"max_tokens"' in t.finish()


def test_a_read_of_several_template_events_is_not_decoded_as_one_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # A read of several events in the learned envelope starts and ends like one event; it must go to
    # the run's split at once, not through a failed decode of everything between as one text first
    # (an exception per read: the costliest read size, ~7 events, was c=1's usual one).
    t = StreamTranslator(RequestContext(client_model="claude-x", target_is_claude=False), "msg_x")
    t.start()
    for text in ("Hi", " there"):  # the first opens the block, the second is learned
        t.feed(b"data: " + _openrouter(text) + b"\n\n")
    tried: list[bytes] = []
    real = t._template_delta

    def spy(raw: bytes) -> bytes | None:
        tried.append(raw)
        return real(raw)

    monkeypatch.setattr(t, "_template_delta", spy)
    out = t.feed(b"".join(b"data: " + _openrouter(text) + b"\n\n" for text in ("a", "b", "c")))
    assert tried == []
    frame = t.feed(b"data: " + _openrouter("x") + b"\n\n")
    assert out == frame.replace(b'"x"', b'"a"') + frame.replace(b'"x"', b'"b"') + frame.replace(b'"x"', b'"c"')
    assert t.feed(b"data: " + _openrouter('"q"') + b"\n\n").endswith(b'"text":"\\"q\\""}}\n\n')
    assert len(tried) == 1  # one event with escapes still takes the template's decode


def _run_pieces(reads: list[list[bytes]], ctx: RequestContext, how: str, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, Any, bool]:
    """Each read fed as its pieces (feed_parts, the served path), or joined (feed), or joined through
    the general path only."""
    with monkeypatch.context() as m:
        if how == "general":
            m.setattr(stream, "_decode_text", _refuse)
        t = StreamTranslator(ctx, "msg_x", 7)
        out = [t.start()]
        for pieces in reads:
            out.append(t.feed_parts(pieces) if how == "parts" else t.feed(b"".join(pieces)))
            if t.done:  # the service stops reading here
                break
        out.append(t.finish())
        return _RANDOM_ID.sub(b"toolu_X", b"".join(out)), t.final_usage(), t.over_budget


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payloads=st.one_of(st.lists(_payload, max_size=12), st.lists(_enveloped, min_size=3, max_size=14),
                       st.lists(_plain_text, min_size=3, max_size=14),
                       st.lists(st.one_of(_plain_text, _plain_text, _plain_text, _raw_openrouter), min_size=3, max_size=14)),
    sizes=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=4),
    end=st.integers(min_value=0, max_value=3),
    max_tokens=st.one_of(st.just(50), st.integers(min_value=2, max_value=8)),
    stops=st.sampled_from([[], [], ["b"]]),
)
def test_a_read_fed_as_its_http_chunks_gives_the_bytes_of_the_read_fed_whole(
    payloads: list[bytes], sizes: list[int], cuts: list[int], end: int, max_tokens: int, stops: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The served path hands the translator each socket read as httptools cut it: one piece per HTTP
    # chunk, usually one event each, and a read can end (so a piece) inside an event. Whatever the
    # pieces, feed_parts gives exactly what feed gives the joined read, read by read (the output budget
    # is checked once per read in both), and the general path's bytes.
    opening = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}\n\n'
    events = [opening] + [b"data: " + p + b"\n\n" for p in payloads + _END[:end]]
    data = b"".join(events)
    # the event ends, and a few cuts anywhere (a read or a piece ending inside an event)
    bounds = sorted({0, len(data), *itertools.accumulate(map(len, events)), *(c * 7 % len(data) for c in cuts)})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    reads: list[list[bytes]] = []
    i = 0
    for k in itertools.count():
        if i >= len(pieces):
            break
        size = sizes[k % len(sizes)]
        reads.append(pieces[i : i + size])
        i += size
    ctx = RequestContext(client_model="claude-x", target_is_claude=False, max_tokens=max_tokens, local_stops=stops)
    parts = _run_pieces(reads, ctx, "parts", monkeypatch)
    assert parts == _run_pieces(reads, ctx, "whole", monkeypatch), reads
    assert parts[:2] == _run_pieces(reads, ctx, "general", monkeypatch)[:2], reads


def _spy_on_decoder(t: StreamTranslator) -> list[bytes]:
    """What the translator's SSE decoder is fed from now on."""
    fed: list[bytes] = []

    class Spy(sse.SSEDecoder):
        def feed(self, chunk: bytes) -> list[bytes]:
            fed.append(chunk)
            return super().feed(chunk)

    t.decoder = Spy()
    return fed


def test_a_read_of_template_pieces_is_neither_split_nor_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the test above: pieces that are template events (the stream's first read with its role
    # chunk and learned template included, the last with the finish, the usage and [DONE]) are sliced
    # piece by piece: the SSE decoder sees only the first events and the end, never the run.
    t = StreamTranslator(RequestContext(client_model="claude-x", target_is_claude=False), "msg_x")
    t.start()
    fed = _spy_on_decoder(t)
    monkeypatch.setattr(t, "_templated", None)  # the joined read's run path: must not be reached
    opening = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    first = [opening] + [b"data: " + _openrouter(x) + b"\n\n" for x in ("Hi", " there", "a", "b", "c")]
    out = t.feed_parts(first)
    assert fed == first[:2]  # the role chunk, the block's first text (the template is learned from it)
    frame = t.feed_parts([b"data: " + _openrouter("x") + b"\n\n"])
    assert out.endswith(frame.replace(b'"x"', b'"a"') + frame.replace(b'"x"', b'"b"') + frame.replace(b'"x"', b'"c"'))
    fed.clear()
    last = [b"data: " + _openrouter(x) + b"\n\n" for x in ("d", "e")] + [b"data: " + e + b"\n\n" for e in _END]
    out = t.feed_parts(last)
    assert fed == [b"".join(last[2:])]  # the finish, the usage and [DONE] after the run: the general path
    assert out == frame.replace(b'"x"', b'"d"') + frame.replace(b'"x"', b'"e"')
    assert t.saw_done and (t.pieces, t.chars) == (8, 2 + 6 + 6)


def _learned() -> tuple[StreamTranslator, list[bytes], bytes]:
    """A translator past its first read (the template learned), a spy on its SSE decoder, and the
    text_delta frame of the text "x" in the open block."""
    t = StreamTranslator(RequestContext(client_model="claude-x", target_is_claude=False), "msg_x")
    t.start()
    fed = _spy_on_decoder(t)
    opening = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    t.feed_parts([opening] + [b"data: " + _openrouter(x) + b"\n\n" for x in ("Hi", " there", "a")])
    frame = t.feed_parts([b"data: " + _openrouter("x") + b"\n\n"])
    fed.clear()
    return t, fed, frame


def test_a_run_of_texts_with_escapes_is_sliced_not_decoded_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real answers' texts hold line ends, quotes and non-ASCII: each text of the run is decoded alone
    # (as the general path decodes a template event's), the read does not go through the SSE decoder.
    t, fed, frame = _learned()
    monkeypatch.setattr(t, "_templated", None)  # the joined read's run path: must not be reached
    pieces, chars = t.pieces, t.chars
    texts = ["line\n", 'say "hi"', "caf\u00e9", "plain", "tab\t\\"]
    out = t.feed_parts([b"data: " + _openrouter(x) + b"\n\n" for x in texts])
    assert fed == []
    assert out == b"".join(frame.replace(b'"x"', orjson.dumps(x)) for x in texts)
    assert (t.pieces - pieces, t.chars - chars) == (5, sum(map(len, texts)))


def test_a_run_with_a_text_that_is_no_json_string_is_counted_once() -> None:
    # A text that is not one JSON string's body sends the whole read to the general path: what the
    # run counted of the texts before it is taken back, not counted twice against max_tokens.
    t, fed, frame = _learned()
    pieces, chars = t.pieces, t.chars
    bodies = [b"a\\nb", b"cd", b'x","content":"y', b"ef"]
    out = t.feed_parts([b"data: " + _OR_HEAD + b + _OR_TAIL + b"\n\n" for b in bodies])
    assert fed == [b"".join(b"data: " + _OR_HEAD + b + _OR_TAIL + b"\n\n" for b in bodies)]
    assert out == b"".join(frame.replace(b'"x"', b'"' + x + b'"') for x in (b"a\\nb", b"cd", b"y", b"ef"))
    assert (t.pieces - pieces, t.chars - chars) == (4, 3 + 2 + 1 + 2)
