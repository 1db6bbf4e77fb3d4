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
        "index": st.sampled_from([0, 1, "0"]), "finish_reason": st.sampled_from([None, "stop", "length"]),
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


_payload = st.one_of(
    _chunk.map(orjson.dumps), st.sampled_from(_RAW), st.one_of(st.text(max_size=8), st.none()).map(_openrouter)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payloads=st.lists(_payload, max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=6),
    stops=st.sampled_from([[], ["b"]]),
    done=st.booleans(),
    stream_tools=st.booleans(),
)
def test_fast_and_general_paths_give_the_same_bytes(
    payloads: list[bytes], cuts: list[int], stops: list[str], done: bool, stream_tools: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opening = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}\n\n'
    data = opening + b"".join(b"data: " + p + b"\n\n" for p in payloads) + (b"data: [DONE]\n\n" if done else b"")
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for reads in ([data[a:b] for a, b in itertools.pairwise(bounds)], [e + b"\n\n" for e in data.split(b"\n\n")[:-1]]):
        ctx = RequestContext(
            client_model="claude-x", target_is_claude=False, local_stops=stops, max_tokens=50,
            stream_tool_input=stream_tools,
        )  # fmt: skip
        fast = _run(reads, ctx, True, monkeypatch)
        general = _run(reads, ctx, False, monkeypatch)
        assert fast == general, (payloads, reads)


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
    calls: list[bytes] = []
    real = stream._decode_text

    def counting(payload: bytes) -> Any:
        calls.append(payload)
        return real(payload)

    monkeypatch.setattr(stream, "_decode_text", counting)
    t = StreamTranslator(RequestContext(client_model="claude-x", target_is_claude=False), "msg_x")
    t.feed(b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}\n\n')
    general: list[bytes] = []
    monkeypatch.setattr(t, "_payload", general.append)  # the general path must not see it
    out = t.feed(b"data: " + chunk + b"\n\n")
    assert calls == [chunk] and general == []
    assert out == (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                   b'"delta":{"type":"text_delta","text":"w1 "}}\n\n')  # fmt: skip


def test_a_streamed_tool_calls_argument_fragments_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[bytes] = []
    real = stream._decode_text

    def counting(payload: bytes) -> Any:
        got = real(payload)
        taken.append(payload)
        return got

    monkeypatch.setattr(stream, "_decode_text", counting)
    ctx = RequestContext(client_model="claude-x", target_is_claude=False, stream_tool_input=True)
    t = StreamTranslator(ctx, "msg_x")
    first = b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}'
    frag = b'{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\":"}}]},"finish_reason":null}]}'
    t.feed(b"data: " + first + b"\n\n")
    general: list[bytes] = []
    monkeypatch.setattr(t, "_payload", general.append)  # the general path must not see it
    out = t.feed(b"data: " + frag + b"\n\n")
    assert general == []
    assert taken[-1] == frag  # the first opens the block by the general path; the fragment decodes here
    assert out == (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                   b'"delta":{"type":"input_json_delta","partial_json":"{\\"a\\":"}}\n\n')  # fmt: skip
    assert t.live is not None and t.live.args == ['{"a":']
