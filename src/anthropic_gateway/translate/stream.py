"""Upstream chat-completion chunks → Anthropic SSE events: one state object, no I/O.

    t = StreamTranslator(ctx, message_id, input_estimate)
    out = t.start()                  # message_start + ping, sent once the upstream answered 2xx
    out += t.feed(raw_bytes)         # every network read, whole: all its events come back at once
    out += t.finish()                # at end of stream: closes blocks, message_delta, message_stop

Invariants (checked by the tests' grammar checker): block indices 0..n in order, at most one block
open, every block started / given deltas / stopped exactly once; message_delta is held until the
trailing usage chunk or the end; nothing follows an error event.

Tool calls (`ctx.stream_tool_input`): a call's block starts once its name is known and each argument
fragment goes out as an input_json_delta as it arrives, as Anthropic streams them. One call streams
at a time; a call that starts while the streaming one's JSON is still incomplete (fragments interleaved
by `index`) waits and goes out whole after it. Finished arguments that are not valid JSON end the
block as Anthropic's unbuffered tool streaming does: content_block_stop after what was sent (the
SDKs' accumulators then hold the partial input, or raise their own parse error).
Otherwise (backends whose tool JSON is known to break) calls are buffered per upstream `index` and
emitted whole (start, one input_json_delta, stop) when other content resumes or the answer ends, so
their JSON is validated - and repaired if need be - before the client sees a byte of it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from operator import itemgetter
from typing import Annotated, Any

import msgspec
import orjson

from anthropic_gateway import sse
from anthropic_gateway.errors import APIError, GatewayError, sse_error_frame
from anthropic_gateway.translate.common import (
    anthropic_usage,
    client_tool_id,
    detail_text,
    envelope,
    hidden_thinking,
    is_claude_detail,
    merge_details,
    parse_tool_arguments,
    reported_stop,
    stop_reason_for,
)
from anthropic_gateway.translate.context import RequestContext
from anthropic_gateway.translate.stops import StopScanner
from anthropic_gateway.upstream_errors import from_stream_error, redact

# The optional C extension (_run.c): a read's run of plain template events in one call. A build of
# another interface (a tree pulled and not rebuilt) is not used: the Python path in _run is.
RUN_INTERFACE = 1
_c_plain_run: Callable[[list[bytes], int, bytes, bytes, bytes, bytes], bytes | None] | None
try:
    from anthropic_gateway.translate._run import INTERFACE as _INTERFACE
    from anthropic_gateway.translate._run import plain_run as _c_plain_run
except ImportError:  # pragma: no cover - an install without a C compiler, or a build older than INTERFACE
    _c_plain_run = None
else:
    if _INTERFACE != RUN_INTERFACE:
        _c_plain_run = None

log = logging.getLogger(__name__)

TEXT, THINKING, TOOL = 1, 2, 3
_TEXT_ONLY = frozenset({"content", "role"})
# How many upstream deltas may wait for a late Claude signature before the block is closed without it.
MAX_DEFERRED = 512
# An upstream that never ends an event must not grow the buffer without bound.
MAX_EVENT_BYTES = 16 * 1024 * 1024
# Output tokens are counted locally, cheaply, to end a stream whose upstream ignores max_tokens: a
# lower bound of the real count, so an upstream that keeps to it is never cut short. Each upstream
# delta that carries text holds at least one token (OpenAI-compatible servers stream whole tokens),
# and a token is at most this many characters on average over an answer.
MAX_CHARS_PER_TOKEN = 8


class _Function(msgspec.Struct, forbid_unknown_fields=True):
    arguments: str
    name: None = None


class _Fragment(msgspec.Struct, forbid_unknown_fields=True):
    index: int
    function: _Function
    id: str | None = None
    type: str | None = None


class _Delta(msgspec.Struct, forbid_unknown_fields=True):
    content: str | None = None
    tool_calls: list[_Fragment] | None = None
    role: str | None = None
    # What OpenRouter (`reasoning`, `reasoning_details`), DeepSeek and vLLM (`reasoning_content`) and
    # OpenAI (`refusal`) put in every delta when they mean nothing: only the null / empty forms.
    reasoning: None = None
    reasoning_content: None = None
    reasoning_details: Annotated[list[None], msgspec.Meta(max_length=0)] | None = None
    refusal: None = None


class _Choice(msgspec.Struct, forbid_unknown_fields=True):
    delta: _Delta
    index: int = 0
    finish_reason: str | None = None  # a string: the finish chunk (the hot paths take only None)
    native_finish_reason: None = None
    logprobs: None = None


class _Chunk(msgspec.Struct, forbid_unknown_fields=True):
    """The overwhelmingly common chunks: one more piece of text, or one more argument fragment of a
    tool call, and nothing else. Every field is typed and no unknown one is allowed, so a chunk that
    decodes as this one is valid JSON (msgspec rejects what orjson rejects in the values it decodes;
    it only skips, less strictly, values it does not decode, and here there are none) and means
    nothing to the general path but its text or its fragment."""

    choices: list[_Choice]
    id: str = ""
    object: str = ""
    created: int = 0
    model: str = ""
    system_fingerprint: str | None = None
    provider: str = ""
    usage: None = None  # OpenAI with include_usage: null in every chunk but the last
    service_tier: str | None = None
    obfuscation: str = ""  # OpenAI's random padding


# A typed decode of only these fields costs a fraction of orjson.loads to dicts and the dict walk after.
_decode_text = msgspec.json.Decoder(_Chunk).decode
_NOT_TEXT = (msgspec.DecodeError, msgspec.ValidationError)
_text_delta = sse.text_delta
_json_delta = sse.input_json_delta
_TEXT_TAIL = sse.TEXT_DELTA_TAIL
# A text's bytes are its JSON string's as they are when none of these is in it (and it is UTF-8).
_unplain = re.compile(rb'[\x00-\x1f"\\]').search
# The same test and isascii() in one pass, for a run's joined texts: every byte either forbids turned into
# a quote (a bytes.translate table, no regex charset loop per byte), then one memchr for the quote.
_QUOTED = bytes(b if 0x20 <= b < 0x80 and b not in b'"\\' else 0x22 for b in range(256))
_CONTENT_KEY = b'"content":"'
# Envelopes learned before giving up on the template path for this stream.
MAX_TEMPLATES = 4
# Events of a read taken one by one before the template path may apply (the stream's first ones), and
# other events after a run of template events in one read (the finish, the usage, [DONE]).
MAX_STEPS = 4


# A delta's fields the translator reads as text or as a list: any other type (a number, an object)
# carries nothing it could translate faithfully. Empty or null values mean absent, as before.
_DELTA_TEXT = ("content", "refusal", "reasoning", "reasoning_content")
_DELTA_LISTS = ("tool_calls", "reasoning_details")


def _mistyped(delta: dict[str, Any]) -> str | None:
    """The first delta field of the wrong JSON type, or None."""
    for key in _DELTA_TEXT:
        value = delta.get(key)
        if value and not isinstance(value, str):
            return key
    for key in _DELTA_LISTS:
        value = delta.get(key)
        if value and not isinstance(value, list):
            return key
    return None


class _ToolCall:
    __slots__ = ("args", "checked", "id", "name", "whole")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name = ""
        self.args: list[str] = []
        self.checked = 0  # len(args) when `whole` was last decided
        self.whole = False


def _complete(call: _ToolCall) -> bool:
    """Whether a call's arguments so far are a whole JSON value. None yet counts as not whole: a call
    that starts meanwhile may be interleaved with this one's arguments still to come."""
    if call.checked != len(call.args):
        call.checked = len(call.args)
        try:
            orjson.loads("".join(call.args))
        except orjson.JSONDecodeError:
            call.whole = False
        else:
            call.whole = True
    return call.whole


class StreamTranslator:
    def __init__(self, ctx: RequestContext, message_id: str, input_estimate: int = 0, secret: str | None = None) -> None:
        self.ctx = ctx
        self.secret = secret  # the upstream key: never echoed to the client in an error
        self.message_id = message_id
        self.input_estimate = input_estimate
        self.decoder = sse.SSEDecoder()
        self.index = 0  # index the next block gets
        self.open = 0  # TEXT, THINKING or 0
        self.tools: dict[int, _ToolCall] = {}  # calls not yet closed, the streaming one included
        self.last_tool: int | None = None
        self.live: _ToolCall | None = None  # the call whose block is open (open == TOOL)
        self.live_idx: int | None = None
        self.closed: set[int] = set()  # indices of this run's calls whose blocks are closed
        self.cut_tool = False  # a streamed call ended with arguments that are not whole JSON
        self.had_tools = False
        self.seen_ids: set[str] = set()
        # thinking block state
        self.claude_thinking = False
        self.signature: str | None = None
        self.detail_index: Any = None  # reasoning_details `index` of the open Claude thinking block
        self.other_details: list[dict[str, Any]] = []
        self.hidden: list[str] = []  # the open Claude block's text when ctx.omit_thinking
        self.deferred: list[dict[str, Any]] | None = None
        # end state
        self.finish_reason: str | None = None
        self.native_reason: Any = None
        self.reported_stop: str | None = None
        self.usage: dict[str, Any] | None = None
        self.saw_done = False
        self.stop_sequence: str | None = None
        self.refused = False
        self.error: GatewayError | None = None
        self.stops = StopScanner(ctx.local_stops) if ctx.local_stops else None
        self.out: list[bytes] = []
        self.stop_reason_sent: str | None = None  # the stop_reason of message_delta, once sent
        self._usage_sent: dict[str, Any] | None = None  # ... and its usage
        # output budget (see MAX_CHARS_PER_TOKEN)
        self.budget = ctx.max_tokens
        self.pieces = 0  # deltas that carried text
        self.chars = 0  # characters of text, thinking and tool arguments
        self.over_budget = False
        # the text template (see _learn): (prefix, suffix, slice start, slice end) of a payload
        self._tpl: tuple[bytes, bytes, int, int] | None = None
        self._learning = True
        self._tries = 0
        self._read_prefix = self._read_suffix = b""  # the template as a whole read: b"data: " ... b"\n\n"
        self._read_sep = b""  # between two template events in one read
        self._cut_from = self._cut_to = 0
        self._middle = itemgetter(slice(0, 0))  # a template event's text: part[len(prefix) : -len(suffix)]
        self._head: bytes | None = None  # set while the next read may take the template path
        self._head_index = -1
        self._head_bytes = b""
        self._run_tpl: tuple[bytes, bytes, bytes, bytes] | None = None  # run_template()'s, kept while it holds

    @property
    def done(self) -> bool:
        """True once nothing more should be read from the upstream."""
        return self.saw_done or self.error is not None or self.stop_sequence is not None or self.over_budget

    # --- public API ----------------------------------------------------------------------------

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self.message_id, "type": "message", "role": "assistant", "model": self.ctx.client_model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self.input_estimate, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 0},
        }  # fmt: skip
        return sse.frame(b"message_start", {"type": "message_start", "message": message}) + sse.PING

    def feed(self, chunk: bytes) -> bytes:
        """One network read → the bytes of every event it completes."""
        head = self._head
        if head is not None and chunk.startswith(self._read_prefix) and chunk.endswith(self._read_suffix):
            # The hottest path: the read is the learned envelope around one more text (see _learn).
            text = chunk[self._cut_from : self._cut_to]
            frame: bytes | None = None
            if text and text.isascii() and _unplain(text) is None:
                # No JSON escape in it: the text_delta's string is these very bytes (a read of
                # several events never gets here: the quotes between them are escapes to _unplain).
                self.pieces += 1
                self.chars += len(text)
                frame = head + text + _TEXT_TAIL
            elif chunk.find(b"\n") == len(chunk) - 2:
                # One event whose text has escapes or non-ASCII (its first line end is its last: a
                # template's text has none). A read of several events is _templated's at once, not
                # a failed decode of them all as one text (an exception per read).
                frame = self._template_delta(text)
            if frame is not None:
                budget = self.budget
                if budget is not None and (self.pieces > budget or self.chars > budget * MAX_CHARS_PER_TOKEN):
                    self._head = None
                    self._over_budget(budget)
                return frame
            # Several events (or one that needs escapes): what _translate would do, one call less.
            templated = self._templated(chunk)
            data = templated if templated is not None else self._feed(chunk)
        else:
            data = self._translate(chunk)
        budget = self.budget
        if budget is not None and (self.pieces > budget or self.chars > budget * MAX_CHARS_PER_TOKEN) and not self.done:
            self._head = None
            self._over_budget(budget)
        return data

    def feed_parts(self, parts: list[bytes]) -> bytes:
        """One network read as the HTTP layer cut it (one piece per HTTP chunk): exactly what
        ``feed(b"".join(parts))`` gives. An upstream's stream is one HTTP chunk per event, so a read of
        several template events is cut already: its texts are sliced from the pieces, with no search
        of the read for its line ends."""
        if len(parts) == 1:
            return self.feed(parts[0])
        if self._head is not None:  # the usual read: a run of template events (then maybe a few others)
            data = self._run(parts)
            if data is None:
                data = self._translate(b"".join(parts))
        elif not (self._learning or self._tpl is not None) or self.deferred is not None or self.stops is not None or self.done:
            return self.feed(b"".join(parts))
        else:
            # As _translate: the stream's first events one by one (the general path may learn the
            # template), then the template path for the rest - cut where the HTTP chunks end.
            data = b""
            for i in range(min(MAX_STEPS, len(parts))):
                data += self._feed(parts[i])
                if self._head is not None:
                    parts = parts[i + 1 :]
                    break
            else:
                parts = parts[MAX_STEPS:]
                if parts:
                    data += self._feed(b"".join(parts))
                parts = []
            if parts:
                run = self._run(parts) if len(parts) > 1 and self._head is not None else None
                data += run if run is not None else self._translate(b"".join(parts))
        budget = self.budget
        if budget is not None and (self.pieces > budget or self.chars > budget * MAX_CHARS_PER_TOKEN) and not self.done:
            self._head = None
            self._over_budget(budget)
        return data

    def run_template(self) -> tuple[bytes, bytes, bytes, bytes] | None:
        """While the next read may take the template path: (prefix, suffix, head, tail) of a template
        event as whole-read bytes and of its text_delta around the text, for a reader that builds a
        run of them itself (httpclient/_chunks.c's Reader.run); else None."""
        head = self._head
        if head is None:
            return None
        tpl = self._run_tpl
        if tpl is None or tpl[2] is not head:
            tpl = self._run_tpl = (self._read_prefix, self._read_suffix, head, _TEXT_TAIL)
        return tpl

    def feed_run(self, run: bytes, k: int, rest: list[bytes]) -> bytes:
        """One network read whose first ``k`` pieces were template events with plain texts (as
        ``run_template()`` gave them), their text_deltas ``run`` built by the reader, then the read's
        other pieces ``rest``: exactly what ``feed_parts`` of all the read's pieces gives."""
        head = self._head
        assert head is not None
        self.pieces += k
        self.chars += len(run) - k * (len(head) + len(_TEXT_TAIL))
        data = run + self.feed_parts(rest) if rest else run
        budget = self.budget
        if budget is not None and (self.pieces > budget or self.chars > budget * MAX_CHARS_PER_TOKEN) and not self.done:
            self._head = None
            self._over_budget(budget)
        return data

    def _run(self, parts: list[bytes]) -> bytes | None:
        """Pieces that start with several template events (then at most a few others): their
        text_deltas in one join, what follows through the general path; None when they are not
        that (the caller feeds the whole read then)."""
        suffix = self._read_suffix
        n = k = len(parts)
        while not parts[k - 1].endswith(suffix):  # the run ends with the last piece that ends an event
            k -= 1
            if k == 0 or n - k > MAX_STEPS:
                return None
        if _c_plain_run is not None:
            # Each piece one template event with a plain text (the usual read): the same bytes as
            # below, built in one pass; anything else (pieces not cut at events, escapes) goes on below.
            head = self._head
            assert head is not None
            data = _c_plain_run(parts, k, self._read_prefix, suffix, head, _TEXT_TAIL)
            if data is not None:
                self.pieces += k
                self.chars += len(data) - k * (len(head) + len(_TEXT_TAIL))
                return data + self._feed(b"".join(parts[k:])) if k < n else data
        run = parts if k == n else parts[:k]
        texts = list(map(self._middle, run))
        # Checked the other way round: the texts, rebuilt into template events, must give back the
        # pieces' bytes exactly (however the pieces cut them), and need no escape.
        if self._read_prefix + self._read_sep.join(texts) + suffix != b"".join(run):
            return None
        data = self._plain_run(texts)
        if data is None:
            return None
        return data + self._feed(b"".join(parts[k:])) if k < n else data

    def _translate(self, chunk: bytes) -> bytes:
        if self._head is not None:
            if chunk.startswith(self._read_prefix):
                data = self._templated(chunk)  # several events in one read
                if data is not None:
                    return data
        elif (self._learning or self._tpl is not None) and self.deferred is None and self.stops is None and not self.done:
            # No template applies yet (the stream's first events, or the read completes an event the
            # last one began): a few events one by one through the general path, which may learn
            # one, then the template path for the rest.
            data = b""
            for _ in range(MAX_STEPS):
                at = chunk.find(b"\n\n") + 2
                if not 2 <= at < len(chunk):
                    break
                data += self._feed(chunk[:at])
                chunk = chunk[at:]
                if self._head is not None:
                    return data + self._translate(chunk)
            return data + self._feed(chunk)
        return self._feed(chunk)

    def _feed(self, chunk: bytes) -> bytes:
        """The general path: the SSE decoder, and each event by the Struct or the dict walk. Output
        budget is checked by the caller, once per read."""
        out = self.out
        # The hot paths: one more piece of the open text block, or one more argument fragment of the
        # tool call being streamed, when nothing else can apply (no held deltas, stop sequences,
        # other tool calls); anything else takes the general path. Only the general path changes
        # what this depends on, so it is decided again only after that.
        fast = self._fast()
        tpl = self._tpl if fast and self.open == TEXT else None
        for payload in self.decoder.feed(chunk):
            if fast:
                if tpl is not None and payload.startswith(tpl[0]) and payload.endswith(tpl[1]):
                    frame = self._template_delta(payload[tpl[2] : tpl[3]])
                    if frame is not None:
                        out.append(frame)
                        continue
                try:
                    # Refused without the decoder's exception: not a JSON object ([DONE]), or one whose
                    # last value is an object (the usage chunk's "usage":{...}: no _Chunk field is one).
                    choices = (
                        _decode_text(payload).choices if payload.startswith(b"{") and not payload.endswith(b"}}") else None
                    )
                except _NOT_TEXT:
                    pass
                else:
                    if choices:
                        choice = choices[0]
                        delta = choice.delta
                        content, calls = delta.content, delta.tool_calls
                        reason = choice.finish_reason
                        if reason is not None:
                            # The answer's finish chunk ({"delta":{},"finish_reason":"stop"}): as _payload
                            # reads it (a typed chunk holds no native reason and no stop string);
                            # with text, calls or an "error" reason, the general path.
                            if not content and calls is None and reason != "error":
                                if reason:
                                    self.finish_reason = reason
                                    self.native_reason = self.reported_stop = None
                                continue
                        elif calls is None:
                            if content and self.open == TEXT:
                                out.append(_text_delta(self.index, content))
                                self.pieces += 1
                                self.chars += len(content)
                                if self._learning:
                                    tpl = self._learn(payload, content)
                                continue
                            if not content:  # the role chunk ({"role":"assistant","content":""}): nothing to say
                                continue
                            if not self.open:  # the answer's first text: its block opens, as _delta opens it
                                self.pieces += 1
                                self.chars += len(content)
                                self._emit_text(content)
                                tpl = self._learn(payload, content) if self._learning else self._tpl
                                continue
                        elif not content and len(calls) == 1 and self.open == TOOL:
                            frag = calls[0]
                            args = frag.function.arguments
                            if args and not frag.id and frag.index == self.live_idx:
                                assert self.live is not None
                                self.live.args.append(args)
                                out.append(_json_delta(self.index, args))
                                self.pieces += 1
                                self.chars += len(args)
                                continue
            elif self.done:
                break
            self._payload(payload)
            fast = self._fast()
            tpl = self._tpl if fast and self.open == TEXT else None
        if self.decoder.pending > MAX_EVENT_BYTES and self.error is None:
            self._fail(APIError("The upstream sent a stream event larger than 16 MB"))
        # The next read may take the template path if nothing but the text could change meanwhile.
        if self._tpl is not None and self.open == TEXT and not self.decoder.pending and self._fast():
            self._head = self._text_head()
        else:
            self._head = None
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        return data

    def finish(self) -> bytes:
        """End of the upstream stream (or an early stop): close everything, then message_delta/stop."""
        for payload in self.decoder.close():
            if self.done:
                break
            self._payload(payload)
        if self.error is not None:
            return self._take()
        if self.stop_sequence is None and self.finish_reason is None and not self.saw_done:
            self._fail(APIError("The upstream connection closed before the response was complete"))
            return self._take()
        while self.deferred is not None and self.error is None:
            self._resume()
        self._flush_stops()
        if self.stop_sequence is not None:
            self._drop_waiting_tools()  # generation ended at the stop sequence, as in the non-streamed path
        self._flush_tools()
        self._close()
        if self.error is not None:
            return self._take()
        self.out.append(self._message_delta())
        self.out.append(sse.MESSAGE_STOP)
        return self._take()

    def final_usage(self) -> dict[str, Any]:
        """The answer's Anthropic usage (the upstream's figures once its usage chunk arrived): once
        message_delta went out, the usage it carried (nothing changes after it)."""
        if self._usage_sent is not None:
            return self._usage_sent
        usage = anthropic_usage(self.usage, self.input_estimate)
        if self.over_budget and self.budget is not None:  # ended here: no usage chunk came
            usage["output_tokens"] = max(usage["output_tokens"], self.budget)
        return usage

    def fail(self, err: GatewayError) -> bytes:
        """An error from outside the stream (timeout, connection lost): one error event, nothing after."""
        if self.error is None:
            self._fail(err)
        return self._take()

    # --- internals -----------------------------------------------------------------------------

    def _take(self) -> bytes:
        if not self.out:
            return b""
        data = b"".join(self.out)
        self.out.clear()
        return data

    def _text_head(self) -> bytes:
        """The open text block's text_delta frame up to its text (built once per block)."""
        if self._head_index != self.index:
            self._head_index = self.index
            self._head_bytes = sse.text_delta_head(self.index)
        return self._head_bytes

    def _template_delta(self, raw: bytes) -> bytes | None:
        """The text_delta for a chunk that is the template's envelope around ``raw`` (the bytes
        between its content string's quotes), or None when ``raw`` is not one whole, non-empty JSON
        string body (the general path then decides what the chunk is)."""
        if not raw:
            return None
        if _unplain(raw) is None:
            if raw.isascii():
                chars = len(raw)
            else:
                try:
                    chars = len(raw.decode())
                except UnicodeDecodeError:
                    return None
            self.pieces += 1
            self.chars += chars
            return self._text_head() + raw + _TEXT_TAIL
        try:
            text = orjson.loads(b'"' + raw + b'"')
        except orjson.JSONDecodeError:
            return None  # not one JSON string: e.g. the read holds more than one event
        if not text:
            return None
        self.pieces += 1
        self.chars += len(text)
        return _text_delta(self.index, text)

    def _templated(self, chunk: bytes) -> bytes | None:
        """A read that starts with several template events: their text_deltas in one join; what
        follows them (a few other events, an event cut off by the read's end) through the general
        path. None: the general path takes the whole read (a text that needs escapes, say)."""
        # The run of template events ends at the end of the last one: found from the read's end,
        # past at most a few other events (the finish, the usage, [DONE]) and a cut-off one.
        suffix = self._read_suffix
        end = chunk.rfind(suffix) + len(suffix)
        if end < len(suffix):
            return None
        if end < len(chunk) and chunk.find(b"\n\n", end) >= 0 and chunk.count(b"\n\n", end) > MAX_STEPS:
            return None
        run = chunk[:end] if end < len(chunk) else chunk
        # Cut at the line ends (a one-byte separator is a memchr; a longer one is searched for at
        # several instructions a byte): the template events are every other piece, each without
        # its b"\n\n". Then checked the other way round: the texts, rebuilt into template events,
        # must give back the run's bytes exactly.
        parts = run.split(b"\n")
        if len(parts) < 3:
            return None
        cut_from, cut_to = self._cut_from, self._cut_to + 2  # each line lacks the event's b"\n\n"
        texts = [p[cut_from:cut_to] for p in parts[0:-1:2]]
        if run != self._read_prefix + self._read_sep.join(texts) + suffix:
            return None
        data = self._plain_run(texts)
        if data is None:
            return None
        return data + self._feed(chunk[end:]) if end < len(chunk) else data

    def _plain_run(self, texts: list[bytes]) -> bytes | None:
        """The text_deltas of a run of template events, given their texts (the bytes between the
        content string's quotes, each from one event whose envelope was checked): one join when no
        text needs a JSON escape, else each text as the general path takes a template event
        (``_template_delta``). None, with nothing counted, when a text is not one whole non-empty
        JSON string body: the general path then takes the whole read. ``texts`` is used up."""
        joined = b"".join(texts)
        if b"" in texts:
            return None
        head = self._head
        assert head is not None
        if joined.translate(_QUOTED).find(b'"') >= 0:
            # Escapes or non-ASCII (real answers' line ends and quotes): each text decided alone as
            # _template_delta decides a template event's (the general path's own test), the read not
            # taken through the SSE decoder and the envelope checks again for it.
            chars = 0
            for i, raw in enumerate(texts):
                if _unplain(raw) is None:  # the JSON string's body as it is (UTF-8 checked)
                    if raw.isascii():
                        chars += len(raw)
                    else:
                        try:
                            chars += len(raw.decode())
                        except UnicodeDecodeError:
                            return None
                    continue
                try:
                    text = orjson.loads(b'"' + raw + b'"')
                except orjson.JSONDecodeError:
                    return None  # not one JSON string
                if not text:
                    return None
                chars += len(text)
                texts[i] = orjson.dumps(text)[1:-1]  # as _text_delta writes it
            self.chars += chars
        else:
            self.chars += len(joined)
        self.pieces += len(texts)
        texts[0] = head + texts[0]
        texts[-1] += _TEXT_TAIL
        return (_TEXT_TAIL + head).join(texts)

    def _learn(self, payload: bytes, content: str) -> tuple[bytes, bytes, int, int] | None:
        """A text chunk that took the Struct path: its bytes around the text become the template
        that later chunks are compared with, byte for byte.

        Sound because the chunk decoded as the strict `_Chunk` (valid JSON, no field but known
        ones): a `"content":"` there can only be the delta's content key (inside a JSON string a
        quote is escaped; a key ending in an escaped quote is no known field), and when it occurs
        once and its string's bytes are the text itself, a later chunk that is the same prefix and
        suffix around other text with no quote, backslash or control character is the same chunk
        with only that text changed, valid JSON again, and orjson would encode that text as those
        very bytes. An envelope that changes from chunk to chunk (OpenAI's `obfuscation`) stops the
        learning after a few tries."""
        tpl = self._tpl
        if tpl is not None and payload.startswith(tpl[0]) and payload.endswith(tpl[1]):
            return tpl  # the envelope held; only the text needed escaping
        self._tpl = self._head = None
        self._tries += 1
        if self._tries > MAX_TEMPLATES:
            self._learning = False
            return None
        at = payload.find(_CONTENT_KEY)
        if at < 0 or payload.find(_CONTENT_KEY, at + 1) >= 0 or payload.find(b"\n") >= 0 or payload.find(b"\r") >= 0:
            return None
        start = at + len(_CONTENT_KEY)
        string = orjson.dumps(content)  # the text as the upstream wrote it, if it escapes as orjson does
        end = start + len(string) - 2
        if not payload.startswith(string[1:], start):
            return None
        prefix, suffix = payload[:start], payload[end:]
        self._tpl = tpl = (prefix, suffix, start, end - len(payload))  # the suffix holds the closing quote
        self._read_prefix = b"data: " + prefix
        self._read_suffix = suffix + b"\n\n"
        self._read_sep = self._read_suffix + self._read_prefix
        self._cut_from = len(self._read_prefix)
        self._cut_to = -len(self._read_suffix)
        self._middle = itemgetter(slice(self._cut_from, self._cut_to))
        return tpl

    def _fast(self) -> bool:
        """Whether the next chunk may take feed's hot paths (text into the open text block, or an
        argument fragment into the streamed tool call's block) if it has their shape."""
        if self.deferred is not None or self.stops is not None or self.done:
            return False
        if self.open == TEXT or not self.open:  # (no block open yet: the answer's first text may open one)
            return not self.tools
        return self.open == TOOL and self.live is not None

    def _fail(self, err: GatewayError) -> None:
        # Appends only: events already produced from the same read go out before the error.
        self.error = err
        self._head = None
        if self.secret:
            err.message = redact(err.message, self.secret)
        self.out.append(sse_error_frame(err))

    def _payload(self, payload: bytes) -> None:
        if payload == b"[DONE]":
            self.saw_done = True
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._fail(APIError("The upstream sent a malformed stream chunk (invalid JSON)"))
            return
        if not isinstance(chunk, dict):
            return
        if chunk.get("error") is not None:
            self._fail(from_stream_error(chunk["error"]))
            return
        usage = chunk.get("usage")
        if usage and isinstance(usage, dict):
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            return
        choice = choices[0] if isinstance(choices, list) else None
        if not isinstance(choice, dict):
            self._fail(APIError("The upstream sent a malformed stream chunk (choices)"))
            return
        delta = choice.get("delta")
        if delta and not isinstance(delta, dict):
            self._fail(APIError("The upstream sent a malformed stream chunk (delta)"))
            return
        if delta:
            field = _mistyped(delta)
            if field is not None:
                self._fail(APIError(f"The upstream sent a malformed stream chunk (delta.{field})"))
                return
            if self.deferred is not None:
                self._defer(delta)
            else:
                self._delta(delta)
        reason = choice.get("finish_reason")
        if reason:
            if reason == "error":
                self._fail(from_stream_error(choice.get("error") or "the upstream reported finish_reason 'error'"))
                return
            self.finish_reason = reason
            self.native_reason = choice.get("native_finish_reason")
            self.reported_stop = reported_stop(choice)

    def _over_budget(self, budget: int) -> None:
        """The upstream went past max_tokens: end the answer as Anthropic ends one at max_tokens."""
        log.info("upstream output passed max_tokens (%d); stream ended by the gateway", budget)
        self.over_budget = True
        self.finish_reason, self.native_reason = "length", None

    def _delta(self, delta: dict[str, Any]) -> None:
        content = delta.get("content")
        if content and self.open == TEXT and self.stops is None and not self.tools and delta.keys() <= _TEXT_ONLY:
            # The hot path: one more piece of the text block already open.
            self.out.append(sse.text_delta(self.index, content))
            self.pieces += 1
            self.chars += len(content)
            return
        details = delta.get("reasoning_details")
        reasoning = delta.get("reasoning") or delta.get("reasoning_content")
        calls = delta.get("tool_calls")
        if (content or calls) and self.open == THINKING and self.claude_thinking and self.signature is None:
            # Claude's signature may arrive after the answer started; hold the answer until it does.
            if details:
                self._reasoning_details(details)
            if self.signature is None:
                self.deferred = [{"content": content, "tool_calls": calls, "refusal": delta.get("refusal")}]
                return
            details = None
        self._count(content, reasoning if not details else None, details, calls, delta.get("refusal"))
        if details:
            self._reasoning_details(details)
        elif reasoning:
            self._reasoning_text(reasoning)
        if content:
            self._text(content)
        refusal = delta.get("refusal")
        if refusal:
            self.refused = True
            self._text(refusal)
        if calls:
            self._tool_fragments(calls)

    def _count(self, content: Any, reasoning: Any, details: Any, calls: Any, refusal: Any) -> None:
        chars = sum(len(t) for t in (content, reasoning, refusal) if isinstance(t, str))
        if isinstance(details, list):
            chars += sum(len(d["text"]) for d in details if isinstance(d, dict) and isinstance(d.get("text"), str))
        if isinstance(calls, list):
            for c in calls:
                fn = c.get("function") if isinstance(c, dict) else None
                args = fn.get("arguments") if isinstance(fn, dict) else None
                if isinstance(args, str):
                    chars += len(args)
        if chars:
            self.pieces += 1
            self.chars += chars

    # -- late signatures

    def _defer(self, delta: dict[str, Any]) -> None:
        assert self.deferred is not None
        self.deferred.append(delta)
        for d in delta.get("reasoning_details") or ():
            if isinstance(d, dict) and d.get("signature") and is_claude_detail(d):
                self.signature = d["signature"]
        if self.signature is not None or len(self.deferred) > MAX_DEFERRED:
            self._resume()

    def _resume(self) -> None:
        queued, self.deferred = self.deferred or [], None
        if self.signature is None:
            log.warning("thinking signature did not arrive; closing the thinking block without it")
            self.claude_thinking = False  # closes with the gateway's envelope instead
        for delta in queued:
            # Not `done`: [DONE] may already have arrived, and what was held must still go out.
            if self.error is not None or self.stop_sequence is not None:
                return
            # A replayed delta may open another unsigned Claude block; what follows then waits again.
            # (A signature-only detail arriving after its block closed carries nothing, opens nothing.)
            if self.deferred is not None:
                self._defer(delta)
            else:
                self._delta(delta)

    # -- thinking

    def _open_thinking(self) -> None:
        # Tool calls buffered since this block opened mean the model moved on: reasoning that comes
        # now is a new block after those calls.
        if self.open == THINKING and not self.tools:
            return
        self._flush_stops()
        self._flush_tools()
        if self.error is not None:
            return
        self._close()
        self.out.append(sse.thinking_start(self.index))
        self.open = THINKING
        self.claude_thinking = False
        self.signature = None
        self.other_details = []

    def _reasoning_text(self, text: str) -> None:
        self._open_thinking()
        if self.error is not None:
            return
        self.out.append(sse.thinking_delta(self.index, text))

    def _reasoning_details(self, details: list[Any]) -> None:
        for d in details:
            if not isinstance(d, dict):
                continue
            if is_claude_detail(d):
                if d.get("type") == "reasoning.encrypted":
                    self._redacted(d.get("data") or "")
                    continue
                text = d.get("text")
                if text:
                    if self.open == THINKING and self.claude_thinking and (
                        self.signature is not None or d.get("index") != self.detail_index
                    ):
                        self._close()  # a signed block is complete, or this is another one
                    self._open_thinking()
                    if self.error is not None:
                        return
                    self.claude_thinking = True
                    self.detail_index = d.get("index")
                    if self.ctx.omit_thinking:
                        self.hidden.append(text)
                    else:
                        self.out.append(sse.thinking_delta(self.index, text))
                if d.get("signature") and self.open == THINKING:
                    self.signature = d["signature"]
                    self.claude_thinking = True
            else:
                self._open_thinking()
                if self.error is not None:
                    return
                self.other_details.append(d)
                text = detail_text(d)
                if text:
                    self.out.append(sse.thinking_delta(self.index, text))

    def _redacted(self, data: str) -> None:
        self._flush_stops()
        self._flush_tools()
        if self.error is not None:
            return
        self._close()
        self.out.append(sse.block_start(self.index, {"type": "redacted_thinking", "data": data}))
        self.out.append(sse.block_stop(self.index))
        self.index += 1

    # -- text

    def _text(self, text: str) -> None:
        if self.stops is not None:
            text, matched = self.stops.feed(text)
            if matched is not None:
                self.stop_sequence = matched
                self._drop_waiting_tools()  # generation ended at the stop sequence: buffered calls never completed
        if text:
            self._emit_text(text)

    def _emit_text(self, text: str) -> None:
        if self.tools:  # text after tool calls is a new block after them, not more of the earlier one
            self._flush_tools()
            if self.error is not None:
                return
        if self.open != TEXT:
            self._close()
            self.out.append(sse.text_start(self.index))
            self.open = TEXT
        self.out.append(sse.text_delta(self.index, text))

    # -- tool calls

    def _flush_stops(self) -> None:
        """Text held back for a possible stop sequence goes out before a block of another kind."""
        if self.stops is not None and self.stop_sequence is None:
            rest = self.stops.flush()
            if rest:
                self._emit_text(rest)

    def _tool_fragments(self, calls: list[Any]) -> None:
        self._flush_stops()  # text held back for a stop sequence precedes the call
        for frag in calls:
            if not isinstance(frag, dict):
                continue
            idx = frag.get("index")
            fid = frag.get("id")
            fn = frag.get("function")
            args = fn.get("arguments") if isinstance(fn, dict) else None
            if args and not isinstance(args, str):
                args = orjson.dumps(args).decode()
            live = self.live
            if live is not None and idx == self.live_idx and not fid and args:
                # The tool hot path: one more argument fragment of the call being streamed.
                live.args.append(args)
                self.out.append(sse.input_json_delta(self.index, args))
                continue
            if not isinstance(idx, int):
                last = self.tools.get(self.last_tool) if self.last_tool is not None else None
                new_call = last is None or (fid and last.id and fid != last.id)
                idx = (max((*self.tools, *self.closed), default=-1) + 1) if new_call else self.last_tool
                assert idx is not None
            elif idx in self.closed:
                if args and args.strip():
                    log.warning("arguments for a tool call that already ended were dropped (%d chars)", len(args))
                continue
            call = self.tools.get(idx)
            if call is None:
                call = self.tools[idx] = _ToolCall()
            self.last_tool = idx
            if fid and call.id is None:
                call.id = fid
            if isinstance(fn, dict) and fn.get("name") and not call.name:
                call.name = fn["name"]
            if call is live:
                if args:
                    call.args.append(args)
                    self.out.append(sse.input_json_delta(self.index, args))
                continue
            if args:
                call.args.append(args)
            if self.ctx.stream_tool_input and call.name and (live is None or _complete(live)):
                self._start_live(idx, call)
                if self.error is not None:
                    return

    def _start_live(self, idx: int, call: _ToolCall) -> None:
        """The call's block opens (closing the block before it); what it already has goes out."""
        self._close()
        if self.error is not None:
            return
        self.out.append(sse.block_start(self.index, self._tool_block(call)))
        if call.args:
            self.out.append(sse.input_json_delta(self.index, "".join(call.args)))
        self.open = TOOL
        self.live = call
        self.live_idx = idx

    def _tool_block(self, call: _ToolCall) -> dict[str, Any]:
        name = self.ctx.tool_names.get(call.name, call.name)
        return {"type": "tool_use", "id": client_tool_id(call.id, self.seen_ids), "name": name, "input": {}}

    def _drop_waiting_tools(self) -> None:
        """Calls not started yet never completed; the streaming one is closed as it stands."""
        self.tools = {i: c for i, c in self.tools.items() if c is self.live}

    def _flush_tools(self) -> None:
        """Other content resumes, or the answer ends: the run of tool calls is over."""
        if not self.tools:
            return
        if self.open == TOOL:
            self._close()
        calls, self.tools, self.last_tool = self.tools, {}, None
        self.closed = set()
        self._close()
        for call in calls.values():
            if not call.name:
                self._fail(APIError("The upstream sent a tool call without a function name"))
                return
            parsed = parse_tool_arguments("".join(call.args))
            if parsed is None:
                self._fail(APIError(
                    f"The model produced arguments for tool '{call.name}' that are not valid JSON and could not be repaired"
                ))  # fmt: skip
                return
            self.out.append(sse.block_start(self.index, self._tool_block(call)))
            self.out.append(sse.input_json_delta(self.index, orjson.dumps(parsed).decode()))
            self.out.append(sse.block_stop(self.index))
            self.index += 1
            self.had_tools = True

    def _close_live(self) -> None:
        call = self.live
        assert call is not None
        self.live = self.live_idx = None
        for i, c in list(self.tools.items()):
            if c is call:
                del self.tools[i]
                self.closed.add(i)
        self.had_tools = True
        if call.args and not _complete(call):
            self.cut_tool = True
            # As Anthropic's unbuffered tool streaming ends: the block closes after what was sent.
            log.warning("tool '%s' ended with arguments that are not valid JSON (%d chars)", call.name,
                        sum(map(len, call.args)))  # fmt: skip

    # -- blocks and the end

    def _close(self) -> None:
        if not self.open:
            return
        if self.open == TOOL:
            self._close_live()
        elif self.open == THINKING:
            if self.signature is not None:
                sig = self.signature
                if self.ctx.omit_thinking:
                    sig, self.hidden = hidden_thinking(sig, "".join(self.hidden)), []
            elif self.hidden:  # unsigned after all: the text is all there is to keep
                self.out.append(sse.thinking_delta(self.index, "".join(self.hidden)))
                self.hidden = []
                sig = envelope({"t": "text"})
            elif self.other_details:
                sig = envelope({"d": merge_details(self.other_details)})
            else:
                sig = envelope({"t": "text"})
            self.out.append(sse.block_delta(self.index, {"type": "signature_delta", "signature": sig}))
        self.out.append(sse.block_stop(self.index))
        self.open = 0
        self.index += 1

    def _message_delta(self) -> bytes:
        if self.stop_sequence is not None:
            reason, matched = "stop_sequence", self.stop_sequence
        else:
            reason = stop_reason_for(self.finish_reason, self.native_reason, self.had_tools, self.refused)
            if (self.cut_tool and self.finish_reason == "length") or self.over_budget:
                reason = "max_tokens"  # as Anthropic ends a tool call cut by max_tokens
            matched = None
            seqs = self.ctx.stop_sequences
            if reason == "end_turn" and seqs:
                if self.reported_stop is not None and self.reported_stop in seqs:
                    reason, matched = "stop_sequence", self.reported_stop
                elif self.native_reason == "stop_sequence" and len(seqs) == 1:
                    reason, matched = "stop_sequence", seqs[0]
        usage = self._usage_sent = self.final_usage()
        self.stop_reason_sent = reason
        event = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": matched}, "usage": usage}
        if self.ctx.context_management is not None:
            event["context_management"] = self.ctx.context_management
        return sse.frame(b"message_delta", event)

