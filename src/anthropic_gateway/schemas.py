"""Anthropic Messages API request schemas (msgspec), and the one function that decodes a body.

Policy for what a client may send:
- unknown top-level fields and unknown fields inside known objects are accepted and ignored;
- unknown content-block types are dropped (with a debug log) - Claude Code keeps adding block types
  and a strict validator is the most common way peer gateways broke;
- malformed input of a known shape (wrong type, missing field, bad base64, unknown media type) is a
  400 ``invalid_request_error`` whose message names the field path.

msgspec is used rather than pydantic because validating Claude Code's 78 KB bodies costs about a third
of the time, and this runs on every request.
"""

from __future__ import annotations

import binascii
import functools
import logging
import re
import secrets
import threading
from collections import OrderedDict
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from anthropic_gateway import shared_history
from anthropic_gateway.errors import InvalidRequestError, shown

log = logging.getLogger(__name__)

CacheControl = dict[str, Any]

# base64 alphabet check without decoding: bytes.translate deletes every valid character, so anything
# left over is invalid. It runs at memory speed and never builds a decoded buffer.
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _base64_raw(raw: msgspec.Raw) -> msgspec.Raw:
    """Validate base64 kept as the raw JSON string the client sent (quotes included).

    Images and PDFs are the largest thing a request carries; as a Python str a 5 MB image would be
    decoded, copied to bytes for the check, copied into the data URL and re-escaped into the upstream
    body. As raw JSON it is checked in one pass and copied once into the data URL."""
    buf = bytes(raw)
    rest = buf.translate(None, _B64_ALPHABET)
    pad = len(rest) - 2
    if (
        len(buf) >= 2 and buf[0] == 0x22 and buf[-1] == 0x22 and 0 <= pad <= 2
        and rest[1:-1] == b"=" * pad and buf.endswith(b"=" * pad + b'"') and (len(buf) - 2) % 4 == 0
    ):  # fmt: skip
        return raw
    # Rare shapes: a JSON escape such as \/ or line-wrapped (MIME) base64, or not a string at all.
    try:
        text = msgspec.json.decode(buf)
    except msgspec.DecodeError:
        text = None
    if not isinstance(text, str):
        raise ValueError("data: Expected `str`")
    text = "".join(text.split())
    _check_base64(text)
    return msgspec.Raw(msgspec.json.encode(text))


def _check_base64(data: str) -> None:
    try:
        raw = data.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("data: is not valid base64 (non-ASCII characters)") from None
    body = raw.rstrip(b"=")
    if len(raw) - len(body) > 2 or len(raw) % 4 != 0 or body.translate(None, _B64_ALPHABET):
        if b"\n" in raw or b"\r" in raw:
            # Line-wrapped base64 (MIME style) is still base64; the rare slow path tolerates it.
            try:
                binascii.a2b_base64(raw)
                return
            except binascii.Error:
                pass
        raise ValueError("data: is not valid base64")


# --- sources -----------------------------------------------------------------------------------

ImageMediaType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]


class Base64ImageSource(Struct, tag="base64", kw_only=True):
    media_type: ImageMediaType
    data: msgspec.Raw  # the JSON string as sent, quotes included (see _base64_raw)

    def __post_init__(self) -> None:
        self.data = _base64_raw(self.data)

    @property
    def base64(self) -> memoryview:
        """The base64 text, without copying it."""
        return memoryview(self.data)[1:-1]


class URLImageSource(Struct, tag="url", kw_only=True):
    url: str


class FileSource(Struct, tag="file", kw_only=True):
    file_id: str


class Base64PDFSource(Struct, tag="base64", kw_only=True):
    media_type: Literal["application/pdf"]
    data: msgspec.Raw  # as for images

    def __post_init__(self) -> None:
        self.data = _base64_raw(self.data)

    @property
    def base64(self) -> memoryview:
        return memoryview(self.data)[1:-1]


class PlainTextSource(Struct, tag="text", kw_only=True):
    media_type: Literal["text/plain"] = "text/plain"
    data: str


class URLPDFSource(Struct, tag="url", kw_only=True):
    url: str


# --- content blocks ----------------------------------------------------------------------------


class TextBlock(Struct, tag="text", kw_only=True):
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class ImageBlock(Struct, tag="image", kw_only=True):
    source: Base64ImageSource | URLImageSource | FileSource
    cache_control: CacheControl | None = None


class ContentSource(Struct, tag="content", kw_only=True):
    content: str | list[TextBlock | ImageBlock]


class DocumentBlock(Struct, tag="document", kw_only=True):
    source: Base64PDFSource | PlainTextSource | URLPDFSource | ContentSource | FileSource
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None
    cache_control: CacheControl | None = None


class SearchResultBlock(Struct, tag="search_result", kw_only=True):
    source: str
    title: str
    content: list[TextBlock]
    citations: dict[str, Any] | None = None
    cache_control: CacheControl | None = None


class ToolReferenceBlock(Struct, tag="tool_reference", kw_only=True):
    tool_name: str
    cache_control: CacheControl | None = None


ToolResultContent = TextBlock | ImageBlock | DocumentBlock | SearchResultBlock | ToolReferenceBlock


class ToolUseBlock(Struct, tag="tool_use", kw_only=True):
    id: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]+$")]
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


_result_blocks = msgspec.json.Decoder(list[ToolResultContent])
_as_str = msgspec.json.Decoder(str).decode
_encode = msgspec.json.Encoder().encode
_NULL = b"null"
_CONTENT_SCHEMA = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}, {"type": "null"}],
    "description": "a string, or an array of text, image, document, search_result and tool_reference blocks",
}


_QUOTE, _BRACKET = 0x22, 0x5B


def _first(raw: msgspec.Raw) -> int:
    """The first byte of a raw JSON value (no whitespace around it): its kind."""
    return memoryview(raw)[0] if len(raw) else 0


def _null() -> msgspec.Raw:
    return msgspec.Raw(_NULL)


class ToolResultBlock(Struct, tag="tool_result", kw_only=True, dict=True):
    """A tool's result. ``content`` is kept as the client's raw JSON (a string, an array of blocks,
    or ``null`` when absent): a tool result's text is most of a long conversation, and as a str it
    was converted from UTF-8 on decode and back to UTF-8 for the token estimate's key and the upstream
    body on every turn. A string result goes upstream as the same JSON literal; readers that need the
    text decode it (``text``), an array is decoded once (``blocks``), ``value`` is either.

    Validated as the str-typed schema would: a string must be valid UTF-8 (the raw JSON is not
    checked by msgspec; escapes and control characters are), anything else must decode as the
    array of blocks. Invalid input is reported by that schema (``_CheckedToolResultBlock``), so the
    error messages are those of the typed field."""

    tool_use_id: str
    content: Annotated[msgspec.Raw, Meta(extra_json_schema=_CONTENT_SCHEMA)] = msgspec.field(default_factory=_null)
    is_error: bool | None = None
    cache_control: CacheControl | None = None

    def __post_init__(self) -> None:
        raw = self.content
        first = _first(raw)
        if first == _QUOTE:
            try:
                str(raw, "utf-8")  # the check msgspec makes of a str; escapes are ASCII
            except UnicodeDecodeError:
                raise ValueError("content: invalid UTF-8") from None
        elif first == _BRACKET:
            try:
                self.blocks  # noqa: B018 - decoded (and validated) once, kept
            except msgspec.ValidationError as err:
                raise ValueError(f"content: {err}") from None
        elif memoryview(raw) != _NULL:
            raise ValueError("content: Expected `str | array | null`")

    @classmethod
    def of(
        cls, tool_use_id: str, content: str | list[ToolResultContent] | None = None, **fields: Any
    ) -> ToolResultBlock:
        """Built from Python values (``content`` as the str-typed schema had it)."""
        return cls(tool_use_id=tool_use_id, content=msgspec.Raw(_encode(content)), **fields)

    @property
    def text_raw(self) -> msgspec.Raw | None:
        """The JSON string literal as the client sent it (quotes included), if the content is a string."""
        raw = self.content
        return raw if _first(raw) == _QUOTE else None

    @property
    def text(self) -> str | None:
        """The content's text, if it is a string (decoded on each call)."""
        raw = self.text_raw
        return None if raw is None else _as_str(raw)

    @functools.cached_property
    def blocks(self) -> list[ToolResultContent] | None:
        """The content's blocks, if it is an array (decoded once)."""
        raw = self.content
        return _result_blocks.decode(raw) if _first(raw) == _BRACKET else None

    @property
    def value(self) -> str | list[ToolResultContent] | None:
        """The content as the str-typed schema decoded it: str, blocks, or None."""
        blocks = self.blocks
        return blocks if blocks is not None else self.text


class _CheckedToolResultBlock(Struct, tag="tool_result", kw_only=True):
    """``ToolResultBlock`` with ``content`` typed: only decoded to report what was wrong with a body."""

    tool_use_id: str
    content: str | list[ToolResultContent] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(Struct, tag="thinking", kw_only=True):
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(Struct, tag="redacted_thinking", kw_only=True):
    data: str


class ServerToolUseBlock(Struct, tag="server_tool_use", kw_only=True):
    id: str
    name: str
    input: Any = None


class MCPToolUseBlock(Struct, tag="mcp_tool_use", kw_only=True):
    id: str
    name: str
    server_name: str | None = None
    input: Any = None


class _ServerToolResult(Struct, kw_only=True):
    """Results of tools that ran on Anthropic's side; history only, degraded to text upstream."""

    tool_use_id: str
    content: Any = None


class WebSearchToolResultBlock(_ServerToolResult, tag="web_search_tool_result"):
    pass


class WebFetchToolResultBlock(_ServerToolResult, tag="web_fetch_tool_result"):
    pass


class CodeExecutionToolResultBlock(_ServerToolResult, tag="code_execution_tool_result"):
    pass


class BashCodeExecutionToolResultBlock(_ServerToolResult, tag="bash_code_execution_tool_result"):
    pass


class TextEditorCodeExecutionToolResultBlock(_ServerToolResult, tag="text_editor_code_execution_tool_result"):
    pass


class ToolSearchToolResultBlock(_ServerToolResult, tag="tool_search_tool_result"):
    pass


class MCPToolResultBlock(_ServerToolResult, tag="mcp_tool_result"):
    is_error: bool | None = None


class ContainerUploadBlock(Struct, tag="container_upload", kw_only=True):
    file_id: str


class MidConversationSystemBlock(Struct, tag="mid_conv_system", kw_only=True):
    content: str | list[TextBlock]
    cache_control: CacheControl | None = None


ContentBlock = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | SearchResultBlock
    | ToolReferenceBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | ServerToolUseBlock
    | MCPToolUseBlock
    | WebSearchToolResultBlock
    | WebFetchToolResultBlock
    | CodeExecutionToolResultBlock
    | BashCodeExecutionToolResultBlock
    | TextEditorCodeExecutionToolResultBlock
    | ToolSearchToolResultBlock
    | MCPToolResultBlock
    | ContainerUploadBlock
    | MidConversationSystemBlock
)

KNOWN_BLOCK_TYPES: frozenset[str] = frozenset(
    {
        "text", "image", "document", "search_result", "tool_reference", "tool_use", "tool_result",
        "thinking", "redacted_thinking", "server_tool_use", "mcp_tool_use", "web_search_tool_result",
        "web_fetch_tool_result", "code_execution_tool_result", "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result", "tool_search_tool_result", "mcp_tool_result",
        "container_upload", "mid_conv_system",
    }
)  # fmt: skip


class Message(Struct, kw_only=True):
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


# --- tools, choices, thinking ------------------------------------------------------------------


# A tool without an input_schema (an Anthropic-defined tool, or a custom one to be refused): valid JSON
# when encoded, and the same object in every such Tool (tested with ``is``).
NO_SCHEMA = msgspec.Raw(b"{}")


class Tool(Struct, kw_only=True):
    """A tool definition. ``type`` absent or ``custom`` is a client tool; anything else is an
    Anthropic-defined tool (web_search_20250305, bash_20250124, ...) which the translator handles."""

    name: str
    type: str | None = None
    description: str | None = None
    # Kept as raw JSON: it is forwarded unchanged (and counted), so decoding 60 KB of Claude Code's
    # schemas into dicts on every request would be wasted work. ``NO_SCHEMA`` when absent, told apart
    # by identity: an empty Raw would be written as no JSON at all (`"input_schema":,`) wherever a
    # Tool is encoded (the response cache's key, a thread's stored state). A factory, not a default
    # value: the JSON schema of /openapi.json cannot encode a Raw default.
    input_schema: msgspec.Raw = msgspec.field(default_factory=lambda: NO_SCHEMA)
    cache_control: CacheControl | None = None
    strict: bool | None = None
    # Tool search: not callable until a tool_reference loads it (translate/deferred_tools.py).
    defer_loading: bool | None = None
    # web_search_* server tool options (websearch/plan.py).
    max_uses: int | None = None
    allowed_domains: list[str] | None = None
    blocked_domains: list[str] | None = None
    user_location: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # msgspec checks UTF-8 only in what it decodes; raw JSON is copied as sent, so a stray byte
        # would reach the counter and the upstream. ASCII (the usual schema) needs no decode.
        raw = bytes(self.input_schema)
        if not raw.isascii():
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"input_schema: invalid UTF-8 byte at offset {err.start}") from None


class ToolChoiceAuto(Struct, tag="auto", kw_only=True):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(Struct, tag="any", kw_only=True):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(Struct, tag="tool", kw_only=True):
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(Struct, tag="none", kw_only=True):
    pass


ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class ThinkingEnabled(Struct, tag="enabled", kw_only=True):
    budget_tokens: Annotated[int, Meta(ge=0)]
    display: str | None = None


class ThinkingDisabled(Struct, tag="disabled", kw_only=True):
    pass


class ThinkingAdaptive(Struct, tag="adaptive", kw_only=True):
    display: str | None = None


ThinkingConfig = ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive


class OutputFormat(Struct, kw_only=True):
    type: Literal["json_schema"]
    schema: dict[str, Any]


class OutputConfig(Struct, kw_only=True):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: OutputFormat | None = None


class Metadata(Struct, kw_only=True):
    user_id: str | None = None


# --- OpenRouter / OpenAI parameters a client may add (the SDKs' extra_body) -----------------------

Quantization = Literal[
    "int4", "int8", "fp4", "mxfp4", "nvfp4", "fp6", "fp8", "mxfp8", "fp16", "bf16", "fp32", "unknown"
]


class ProviderPreferences(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """OpenRouter's `provider` object; strict because OpenRouter rejects unknown keys too."""

    order: list[str] | None = None
    allow_fallbacks: bool | None = None
    require_parameters: bool | None = None
    data_collection: Literal["allow", "deny"] | None = None
    zdr: bool | None = None
    enforce_distillable_text: bool | None = None
    only: list[str] | None = None
    ignore: list[str] | None = None
    quantizations: list[Quantization] | None = None
    sort: Literal["price", "throughput", "latency", "exacto"] | dict[str, Any] | None = None
    preferred_min_throughput: float | dict[str, Any] | None = None
    preferred_max_latency: float | dict[str, Any] | None = None
    max_price: dict[str, float | str] | None = None


class ResponseFormat(Struct, kw_only=True, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
UnitInterval = Annotated[float, Meta(ge=0.0, le=1.0)]


# --- requests ----------------------------------------------------------------------------------


class CountTokensRequest(Struct, kw_only=True):
    """The fields ``/v1/messages/count_tokens`` shares with ``/v1/messages``."""

    model: Annotated[str, Meta(min_length=1)]
    messages: Annotated[list[Message], Meta(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None
    cache_control: CacheControl | None = None
    mcp_servers: list[Any] | None = None
    context_management: Any = None
    thread: Any = None  # server-held conversation state: validated by anthropic_gateway.threads


class MessagesRequest(CountTokensRequest, kw_only=True):
    max_tokens: Annotated[int, Meta(ge=1)]
    stream: bool | None = None
    stop_sequences: list[str] | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    metadata: Metadata | None = None
    service_tier: str | None = None
    container: Any = None
    inference_geo: str | None = None
    speed: str | None = None
    # The older beta structured-output field; same shape as output_config.format.
    output_format: OutputFormat | None = None
    # OpenRouter extensions and OpenAI parameters (forwarded where the backend kind supports them).
    provider: ProviderPreferences | None = None
    models: list[str] | None = None
    transforms: list[str] | None = None
    min_p: UnitInterval | None = None
    top_a: UnitInterval | None = None
    repetition_penalty: Annotated[float, Meta(gt=0.0, le=2.0)] | None = None
    reasoning: dict[str, Any] | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    seed: int | None = None
    user: str | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100.0, le=100.0)]] | None = None
    response_format: ResponseFormat | None = None


EXTRA_PARAMETERS: tuple[str, ...] = (
    "provider", "models", "transforms", "min_p", "top_a", "repetition_penalty", "reasoning",
    "frequency_penalty", "presence_penalty", "seed", "user", "logit_bias", "response_format",
)  # fmt: skip


# --- decoding ----------------------------------------------------------------------------------


class SharedList(list[Any]):
    """A request's decoded tools or system blocks, served from a decoded-value cache (``DecodedCache``):
    its ``entry`` holds the objects that were decoded from the same bytes, shared by every request
    that sent them (each request gets its own list of them). ``entry.holds(value)`` says whether this
    list still has exactly those objects (nobody edits such a list in place today; a reader memoizing
    on the entry checks it anyway). The objects themselves are never edited by any reader."""

    __slots__ = ("entry",)

    entry: DecodedEntry


class DecodedEntry:
    """One value as decoded from its exact JSON. ``memo`` is for readers that derive something from
    the value alone (the token estimate's cache key): computed once per entry, not per request."""

    __slots__ = ("key", "memo", "raw", "start", "tail", "value")

    def __init__(self, raw: msgspec.Raw, value: Any, key: tuple[int, bytes] | None = None) -> None:
        self.raw = raw
        self.value: Any = tuple(value) if isinstance(value, list) else value
        self.memo: dict[str, Any] = {}
        self.key = key
        # Where these bytes were in the last body that carried them (``DecodedCache.find_in``): the
        # offset of their first byte, and the number of bytes after their last (-1: not known).
        self.start = self.tail = -1

    def holds(self, items: list[Any]) -> bool:
        mine = self.value
        return len(items) == len(mine) and all(a is b for a, b in zip(items, mine, strict=True))

    def get(self) -> Any:
        value = self.value
        if not isinstance(value, tuple):
            return value  # a str: immutable, shared as is
        out = SharedList(value)
        out.entry = self
        return out


class _Refused(Exception):
    pass


_NEAR = 16 << 10  # DecodedCache.note: how far from either end of a body its tools are looked for


class DecodedCache:
    """Decoded values of one field by the exact JSON the client sent (compared byte for byte, so a hit
    is the same bytes, decoded and validated before). Claude Code's first turn is 76 KB, of which 64 KB
    are its 24 tools and 6 KB its system prompt, the same on every turn and in every session of a
    version: decoding them (non-ASCII text to UCS-2 str), then encoding that to UTF-8 again for the
    estimate's key and hashing it was a third of the request's instructions, on every turn.

    Looked up by length and two short samples, not by a hash of the whole (SipHash of 64 KB is 16 µs):
    a sample match is only a candidate, the bytes decide; two values sharing a lookup key replace each
    other. Bounded in entries and in raw bytes (an entry costs about three times its JSON once
    decoded); a value longer than ``largest`` is decoded each time."""

    def __init__(self, decoder: msgspec.json.Decoder[Any], entries: int, total: int, largest: int) -> None:
        self._decoder = decoder
        self.entries, self.total, self.largest = entries, total, largest
        self._data: OrderedDict[tuple[int, bytes], DecodedEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _key(raw: msgspec.Raw) -> tuple[int, bytes]:
        view = memoryview(raw)
        n = len(view)
        mid = n // 2
        return n, bytes(view[mid : mid + 32]) + bytes(view[-32:])

    def get(self, raw: msgspec.Raw) -> Any:
        """The decoded value of ``raw``; ``_Refused`` if it does not decode (the caller decodes the
        whole body again for the error)."""
        key = self._key(raw)
        with self._lock:
            entry = self._data.get(key)
            if entry is not None and entry.raw == raw:
                self._data.move_to_end(key)
                return entry.get()
        copy = msgspec.Raw(bytes(raw))  # not the request's Raw: that is a view keeping the whole body alive
        try:
            value = self._decoder.decode(copy)
        except (msgspec.DecodeError, RecursionError):
            raise _Refused from None
        entry = DecodedEntry(copy, value, key)
        size = len(copy)
        if size > self.largest:
            return entry.get()
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= len(old.raw)
            self._data[key] = entry
            self._bytes += size
            while len(self._data) > self.entries or self._bytes > self.total:
                _, dropped = self._data.popitem(last=False)
                self._bytes -= len(dropped.raw)
        return entry.get()

    def find_in(self, body: bytes) -> tuple[DecodedEntry, int] | None:
        """An entry whose exact bytes are in ``body`` where they were in an earlier body (at the same
        offset from its start, or with as many bytes after them), and that offset; None if none is.
        Only a candidate for the placeholder decode (``_decode_spliced``), which proves or refuses it."""
        size = len(body)
        with self._lock:
            entries = list(self._data.values())
        for entry in reversed(entries):  # most recently used first
            raw = entry.raw
            n = len(raw)
            if n > size:
                continue
            start = entry.start
            if start >= 0 and start + n <= size and body.startswith(raw, start):
                entry.tail = size - start - n
                return entry, start
            tail = entry.tail
            if tail >= 0 and (start := size - tail - n) >= 0 and body.startswith(raw, start):
                entry.start = start
                return entry, start
        return None

    def note(self, body: bytes, entry: DecodedEntry) -> None:
        """Where ``entry``'s bytes, just decoded from ``body`` as its ``tools``, are in it, if they are
        near either end (Claude Code sends its tools just before a short tail, SDK bodies often near
        the start): a bounded search, so a body whose tools are elsewhere pays little for nothing."""
        raw, size = entry.raw, len(body)
        n = len(raw)
        pos = body.find(raw, max(0, size - n - _NEAR), size)
        if pos < 0:
            pos = body.find(raw, 0, min(size, n + _NEAR))
        if pos >= 0:
            entry.start, entry.tail = pos, size - pos - n

    def touch(self, entry: DecodedEntry) -> None:
        with self._lock:
            if entry.key is not None and self._data.get(entry.key) is entry:
                self._data.move_to_end(entry.key)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._data)


# A gateway sees few distinct tool lists and system prompts (a Claude Code version sends the same to
# every session, every turn); the system prompt differs by working directory, date and git status.
# Tool lists up to 1 MB are kept (an app with a hundred MCP tools sends ~260 KB of them, the same on
# every turn); 2 MB of them in all, about 5 MB with their decoded objects (tracemalloc: 666 KB for
# a 263 KB list).
tools_cache = DecodedCache(msgspec.json.Decoder(list[Tool]), 16, 2 << 20, 1 << 20)
system_cache = DecodedCache(msgspec.json.Decoder(str | list[TextBlock]), 64, 512 << 10, 64 << 10)


class _RawToolsMessagesRequest(MessagesRequest, kw_only=True):
    """The fast path's schema: ``system`` and ``tools`` kept raw, looked up in (or added to)
    ``system_cache`` and ``tools_cache``."""

    system: msgspec.Raw = msgspec.field(default_factory=_null)  # type: ignore[assignment]
    tools: msgspec.Raw = msgspec.field(default_factory=_null)  # type: ignore[assignment]


class _RawToolsCountTokensRequest(CountTokensRequest, kw_only=True):
    system: msgspec.Raw = msgspec.field(default_factory=_null)  # type: ignore[assignment]
    tools: msgspec.Raw = msgspec.field(default_factory=_null)  # type: ignore[assignment]


# The same schemas with tool results' content typed (`str | list[...] | None`), as it was decoded
# before it was kept raw: a body the raw schema refuses is decoded again with these, whose error
# names the field exactly as before (path, message, and which of several errors comes first).
_CheckedContentBlock = (
    TextBlock | ImageBlock | DocumentBlock | SearchResultBlock | ToolReferenceBlock | ToolUseBlock
    | _CheckedToolResultBlock | ThinkingBlock | RedactedThinkingBlock | ServerToolUseBlock | MCPToolUseBlock
    | WebSearchToolResultBlock | WebFetchToolResultBlock | CodeExecutionToolResultBlock
    | BashCodeExecutionToolResultBlock | TextEditorCodeExecutionToolResultBlock | ToolSearchToolResultBlock
    | MCPToolResultBlock | ContainerUploadBlock | MidConversationSystemBlock
)  # fmt: skip


class _CheckedMessage(Message, kw_only=True):
    content: str | list[_CheckedContentBlock]  # type: ignore[assignment]


class _CheckedCountTokensRequest(CountTokensRequest, kw_only=True):
    messages: Annotated[list[_CheckedMessage], Meta(min_length=1)]  # type: ignore[assignment]


class _CheckedMessagesRequest(MessagesRequest, kw_only=True):
    messages: Annotated[list[_CheckedMessage], Meta(min_length=1)]  # type: ignore[assignment]


_messages_decoder = msgspec.json.Decoder(MessagesRequest)
_count_decoder = msgspec.json.Decoder(CountTokensRequest)
_checked_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    MessagesRequest: msgspec.json.Decoder(_CheckedMessagesRequest),
    CountTokensRequest: msgspec.json.Decoder(_CheckedCountTokensRequest),
}

_PATH_RE = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING_RE = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def _dotted(path: str) -> str:
    # msgspec reports `$.messages[0].content[1]`; Anthropic reports `messages.0.content.1`.
    return re.sub(r"\[(\d+)\]", r".\1", path).lstrip(".")


def validation_message(err: msgspec.ValidationError) -> str:
    m = _PATH_RE.match(str(err))
    assert m is not None  # the pattern matches any string
    msg, path = shown(m.group("msg"), 300), shown(_dotted(m.group("path") or ""), 300)  # msgspec quotes values
    missing = _MISSING_RE.match(msg)
    if missing:
        field = missing.group("field")
        return f"{path}.{field}: Field required" if path else f"{field}: Field required"
    if msg.startswith(("data: ", "budget_tokens: ", "input_schema: ")):  # raised by our own __post_init__ checks
        field, _, rest = msg.partition(": ")
        return f"{path}.{field}: {rest}" if path else msg
    return f"{path}: {msg}" if path else msg


def _drop_unknown_blocks(obj: Any) -> bool:
    """Remove content blocks of types this gateway does not know; True if anything was removed."""
    if not isinstance(obj, dict):
        return False
    dropped = False
    messages = obj.get("messages")
    for msg in messages if isinstance(messages, list) else ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            continue
        kept = []
        for block in content:
            btype = block.get("type") if isinstance(block, dict) else None
            if isinstance(btype, str) and btype not in KNOWN_BLOCK_TYPES:
                log.debug("dropping content block of unknown type %r", btype)
                dropped = True
                continue
            if isinstance(block, dict) and btype == "tool_result" and isinstance(block.get("content"), list):
                inner = [b for b in block["content"] if not _unknown_block(b)]
                if len(inner) != len(block["content"]):
                    dropped = True
                    block["content"] = inner
            kept.append(block)
        msg["content"] = kept
    return dropped


def _unknown_block(block: Any) -> bool:
    kind = block.get("type") if isinstance(block, dict) else None
    return isinstance(kind, str) and kind not in KNOWN_BLOCK_TYPES


_TOO_DEEP = "Request body is nested too deeply"


def _decode(body: bytes, decoder: msgspec.json.Decoder[Any], schema: type[Any]) -> Any:
    try:
        return _decode_or_raise(body, decoder, schema)
    except RecursionError:
        raise InvalidRequestError(_TOO_DEEP) from None


def _decode_or_raise(body: bytes, decoder: msgspec.json.Decoder[Any], schema: type[Any]) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.DecodeError:
        pass
    checked = _checked_decoders[schema]
    try:
        checked.decode(body)
        first: msgspec.ValidationError | None = None  # refused only by the raw schema: cannot happen
    except msgspec.DecodeError as err:
        if not isinstance(err, msgspec.ValidationError):
            raise InvalidRequestError(f"Request body is not valid JSON: {err}") from None
        first = err
    # Slow path: maybe an unknown block type; drop those and try again.
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise InvalidRequestError(_message(first)) from None
    if _drop_unknown_blocks(obj):
        # Through JSON again rather than msgspec.convert, which cannot fill msgspec.Raw fields.
        again = msgspec.json.encode(obj)
        try:
            return decoder.decode(again)
        except msgspec.ValidationError:
            pass
        try:
            checked.decode(again)
        except msgspec.ValidationError as err:
            raise InvalidRequestError(validation_message(err)) from None
        raise InvalidRequestError(_message(None))
    raise InvalidRequestError(_message(first))


def _message(err: msgspec.ValidationError | None) -> str:
    return validation_message(err) if err is not None else "Request body does not match the Messages API schema"


_raw_tools_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    MessagesRequest: msgspec.json.Decoder(_RawToolsMessagesRequest),
    CountTokensRequest: msgspec.json.Decoder(_RawToolsCountTokensRequest),
}


def _decode_fast(body: bytes, decoder: msgspec.json.Decoder[Any], schema: type[Any]) -> Any:
    """A valid body with its system prompt and tools from ``system_cache`` and ``tools_cache``;
    anything the fast path refuses is decoded again as before (``_decode``), so an error's message
    and field path are exactly those of the typed schema. The result is an instance of the raw
    subclass of ``schema`` (its ``tools`` and a list ``system`` a ``SharedList``), which every reader
    treats as ``schema``."""
    raw_decoder = _raw_tools_decoders[schema]
    long = len(body) >= shared_history.SMALLEST
    found = tools_cache.find_in(body) if len(tools_cache) else None
    splice = (found[1], len(found[0].raw), TOOLS_PLACEHOLDER) if found is not None else None
    try:
        req: Any = shared_history.histories.decode(body, raw_decoder.decode, schema, splice) if long else None
        whole = req is None
        if whole:
            req = _decode_spliced(body, raw_decoder, splice) if splice is not None and not long else None
            if req is None:
                req = raw_decoder.decode(body)
        req.system = _cached(system_cache, req.system)
        if found is not None and _is_placeholder(req.tools):
            req.tools = found[0].get()
            tools_cache.touch(found[0])
        else:
            req.tools = tools = _cached(tools_cache, req.tools)
            if isinstance(tools, SharedList) and (found is None or found[0] is not tools.entry):
                tools_cache.note(body, tools.entry)  # where they are, for the next body
    except (msgspec.DecodeError, RecursionError, _Refused):
        return _decode(body, decoder, schema)
    if long and whole:
        shared_history.histories.remember(body, req, schema)
    return req


# A cached tool list found in a body (``DecodedCache.find_in``) is not scanned again: the body is
# decoded with those bytes replaced by this JSON string (a per-process random nonce, which no client
# knows). JSON is read left to right and the list is a complete JSON value, so if the decoded
# ``tools`` is the placeholder, the replaced bytes were the top-level ``tools`` value (a later
# duplicate ``tools`` key, which wins, would not be it; text inside a string cannot hold the list's
# unescaped quotes), and the body with the list put back decodes to the same request with the
# list's bytes in that place, which decoded (and validated) to the entry's tools. Anything else, or
# a cut body that does not decode, is decoded as before, so errors and field paths are the whole
# body's.
TOOLS_NONCE = secrets.token_hex(16)
TOOLS_PLACEHOLDER = b'"' + TOOLS_NONCE.encode() + b'"'


def _is_placeholder(raw: Any) -> bool:
    return isinstance(raw, msgspec.Raw) and len(raw) == len(TOOLS_PLACEHOLDER) and bytes(raw) == TOOLS_PLACEHOLDER


def _decode_spliced(body: bytes, decoder: msgspec.json.Decoder[Any], splice: tuple[int, int, bytes]) -> Any:
    """``body`` decoded with ``splice`` (offset, length, placeholder) applied, or None if that does not
    decode to a request whose ``tools`` is the placeholder (then ``body`` is decoded as it is)."""
    at, length, placeholder = splice
    try:
        req = decoder.decode(b"".join((body[:at], placeholder, body[at + length :])))
    except (msgspec.DecodeError, RecursionError):
        return None
    return req if _is_placeholder(req.tools) else None


def _cached(cache: DecodedCache, raw: msgspec.Raw) -> Any:
    if len(raw) == 4 and bytes(raw) == _NULL:
        return None
    return cache.get(raw)


def decode_messages_request(body: bytes) -> MessagesRequest:
    """Validate a ``POST /v1/messages`` body. Raises InvalidRequestError naming the field."""
    req: MessagesRequest = _decode_fast(body, _messages_decoder, MessagesRequest)
    return req


def decode_count_tokens_request(body: bytes) -> CountTokensRequest:
    req: CountTokensRequest = _decode_fast(body, _count_decoder, CountTokensRequest)
    return req
