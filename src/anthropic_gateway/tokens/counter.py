"""Count the input tokens of an Anthropic request as the upstream model will see it (pure, no I/O).

The request is rendered the way the gateway sends it upstream - the system prompt as one system
message, each tool result as its own ``tool`` message, tool calls as name + arguments JSON - and each
piece is tokenized with the family's tokenizer; the chat-format overheads are in ``families.py``,
images and PDFs in ``media.py``.

Caching: the system prompt, the tool list and every message are counted once per tokenizer and kept
in a bounded LRU keyed by the length and hash of their canonical encoding (msgspec's MessagePack of the
validated Struct, so key order and whitespace of the client's body do not matter; ``input_schema`` is
hashed as the raw bytes the client sent, and counted in compact form). A conversation re-sends its history on
every turn, so a warm call tokenizes only the newest messages.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import assert_never

import msgspec
import orjson

from anthropic_gateway.schemas import (
    Base64ImageSource,
    Base64PDFSource,
    BashCodeExecutionToolResultBlock,
    CodeExecutionToolResultBlock,
    ContainerUploadBlock,
    ContentBlock,
    ContentSource,
    CountTokensRequest,
    DocumentBlock,
    FileSource,
    ImageBlock,
    MCPToolResultBlock,
    MCPToolUseBlock,
    Message,
    MessagesRequest,
    MidConversationSystemBlock,
    PlainTextSource,
    RedactedThinkingBlock,
    SearchResultBlock,
    ServerToolUseBlock,
    SharedList,
    TextBlock,
    TextEditorCodeExecutionToolResultBlock,
    ThinkingBlock,
    Tool,
    ToolChoice,
    ToolChoiceAny,
    ToolChoiceTool,
    ToolReferenceBlock,
    ToolResultBlock,
    ToolSearchToolResultBlock,
    ToolUseBlock,
    URLImageSource,
    URLPDFSource,
    WebFetchToolResultBlock,
    WebSearchToolResultBlock,
)
from anthropic_gateway.shared_history import SharedHistory
from anthropic_gateway.tokens import media
from anthropic_gateway.tokens.families import (
    MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    TOOL_CALL_OVERHEAD,
    TOOL_DEF_OVERHEAD,
    Family,
    anthropic_tool_tokens,
    family_for_model,
)
from anthropic_gateway.tokens.vocab import Tokenizer, get_tokenizer

CACHE_SIZE = 2048

_SERVER_RESULTS = (
    WebSearchToolResultBlock | WebFetchToolResultBlock | CodeExecutionToolResultBlock
    | BashCodeExecutionToolResultBlock | TextEditorCodeExecutionToolResultBlock
    | ToolSearchToolResultBlock | MCPToolResultBlock
)  # fmt: skip


class _LRU:
    """A small thread-safe LRU of counts; the route may call the counter from worker threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[tuple[str, str, tuple[int, int]], int] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_count(self, key: tuple[str, str, tuple[int, int]], count: Callable[[], int]) -> int:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
                return value
        # Counted outside the lock: two threads may count the same thing once each, which is harmless.
        value = count()
        with self._lock:
            self._data[key] = value
            if len(self._data) > self._size:
                self._data.popitem(last=False)
        return value

    def get_many(self, keys: list[tuple[str, str, tuple[int, int]]]) -> list[int | None]:
        """The cached counts of ``keys`` (None where missing), looked up under one lock: a long
        history's messages are hundreds of keys per request."""
        data = self._data
        with self._lock:
            found = [data.get(key) for key in keys]
            for key, value in zip(keys, found, strict=True):
                if value is not None:
                    data.move_to_end(key)
        return found

    def put(self, key: tuple[str, str, tuple[int, int]], value: int) -> None:
        with self._lock:
            self._data[key] = value
            if len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


_cache = _LRU(CACHE_SIZE)
# MessagePack, not JSON: a key is only hashed, and MessagePack copies a string's UTF-8 where JSON
# scans every byte for characters to escape (half the keys' encoding time on a 1 MB history, a
# third on Claude Code's first turn). Injective for a given schema like the JSON was: strings carry
# their length, and a Raw field (the client's JSON, e.g. input_schema) is one complete JSON value.
# MessagePack has no integers past 64 bits (JSON does): such a value is keyed by its JSON, with a
# negative length so the two encodings never share a key.
_encode_key = msgspec.msgpack.Encoder().encode
_encode_json = msgspec.json.Encoder().encode


def _digest(obj: object) -> tuple[int, int]:
    # Python's own bytes hash (SipHash, keyed per process, so not predictable from outside) with the
    # length: a fifth of BLAKE2b's cost on Claude Code's 64 KB tool list, and a wrong count is the
    # worst a collision could do.
    try:
        data = _encode_key(obj)
    except OverflowError:
        data = _encode_json(obj)
        return -1 - len(data), hash(data)
    return len(data), hash(data)


def _shared_digest(value: list[Tool] | list[TextBlock] | str) -> tuple[int, int]:
    """The key of a tool list or system prompt, computed once per decoded value when it came from a
    decoded-value cache (schemas.SharedList: the same objects, which nobody edits), else each time."""
    if not isinstance(value, SharedList) or not value.entry.holds(value):
        return _digest(value)
    entry = value.entry
    digest: tuple[int, int] | None = entry.memo.get("tokens")
    if digest is None:
        digest = entry.memo["tokens"] = _digest(value)
    return digest


def _message_digests(messages: list[Message]) -> list[tuple[int, int]]:
    """Each message's key; those of a remembered history (shared_history.SharedHistory: the same
    objects, which nobody edits) computed once per message and kept on its entry, by index."""
    if not isinstance(messages, SharedHistory) or not messages.entry.holds(messages, messages.shared):
        return [_digest(message) for message in messages]
    memo, shared = messages.entry.memo, messages.shared
    out: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if i < shared:
            digest = memo[i]
            if digest is None:
                digest = memo[i] = _digest(message)
        else:
            digest = _digest(message)
        out.append(digest)
    return out


_PIECE = 32_768


def _pieces(text: str) -> Iterator[str]:
    start = 0
    while start < len(text):
        end = min(start + _PIECE, len(text))
        if end < len(text):
            # Cut just after the last space or newline of the piece's tail, if it has one.
            cut = max(text.rfind(" ", end - 256, end), text.rfind("\n", end - 256, end))
            if cut > start:
                end = cut + 1
        yield text[start:end]
        start = end


def _json_text(value: object) -> str:
    """JSON of a client-supplied value for counting; values orjson refuses (integers over 64 bits,
    nesting over 255 levels) go through msgspec, then str()."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        try:
            return msgspec.json.encode(value).decode()
        except (TypeError, ValueError, RecursionError):
            return str(value)[:1_000_000]


def clear_cache() -> None:
    _cache.clear()


def count_request_tokens(req: CountTokensRequest, model: str) -> int:
    """Estimated input tokens of ``req`` when sent to the upstream model ``model``."""
    family = family_for_model(model)
    counter = _Counter(get_tokenizer(family.encoding))
    enc_name = family.encoding
    total = REPLY_PRIMING
    system = req.system
    if system:
        total += _cache.get_or_count(("system", enc_name, _shared_digest(system)), lambda: counter.system(system))
    messages = req.messages
    keys = [("message", enc_name, digest) for digest in _message_digests(messages)]
    for message, key, cached in zip(messages, keys, _cache.get_many(keys), strict=True):
        if cached is None:  # counted outside the lock, like get_or_count
            cached = counter.message(message)
            _cache.put(key, cached)
        total += cached
    forced = isinstance(req.tool_choice, ToolChoiceAny | ToolChoiceTool)
    tools = req.tools
    if tools:
        total += family.tools_preamble(forced)
        total += _cache.get_or_count(("tools", enc_name, _shared_digest(tools)), lambda: counter.tools(tools))
    total += counter.tool_choice(req.tool_choice)
    total += _output_format_tokens(req, counter)
    return total


def count_text_tokens(text: str, model: str) -> int:
    """Tokens of a bare string with the tokenizer of ``model``'s family (no chat overhead)."""
    return _Counter(get_tokenizer(family_for_model(model).encoding)).text(text)


def tool_definition_json(tool: Tool) -> bytes:
    """A custom tool as the model reads it: one JSON object of name, description and schema.

    Claude's tool prompt lists tools as such JSON objects; OpenAI's renders them more tersely, so
    for GPT models this errs high. The schema is counted in compact form: upstreams re-render
    schemas into their prompt, so the client's own JSON whitespace is not something the model reads
    (and the count must not depend on how a client formats its body).
    """
    parts = [b'{"name":', orjson.dumps(tool.name)]
    if tool.description:
        parts += [b',"description":', orjson.dumps(tool.description)]
    raw = bytes(tool.input_schema)
    schema = msgspec.json.encode(msgspec.json.decode(raw)) if raw else b"{}"
    parts += [b',"parameters":', schema, b"}"]
    return b"".join(parts)


def _output_format_tokens(req: CountTokensRequest, counter: _Counter) -> int:
    fmt = req.output_config.format if req.output_config is not None else None
    if fmt is None and isinstance(req, MessagesRequest):
        fmt = req.output_format
    if fmt is None:
        return 0
    # Structured output reaches the model as its JSON schema, like a tool definition.
    return TOOL_DEF_OVERHEAD + counter.text(_json_text(fmt.schema))


class _Counter:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self._count = tokenizer.count
        self._whole = tokenizer.whole

    def text(self, text: str | None) -> int:
        if not text:
            return 0
        if self._whole or len(text) <= _PIECE:
            return self._count(text)
        # With tiktoken, long texts are counted in pieces cut at whitespace: its core overflows its
        # stack on very long runs (a million spaces panicked it), and the split changes a count by a
        # token or two at most. The C counter (whole) has neither problem and counts them exactly.
        total = 0
        for piece in _pieces(text):
            total += self._count(piece)
        return total

    def _message_overhead(self, role: str) -> int:
        return MESSAGE_OVERHEAD + self.text(role)

    def system(self, system: str | list[TextBlock]) -> int:
        # The gateway sends the system blocks as one message, joined by blank lines.
        joined = system if isinstance(system, str) else "\n\n".join(b.text for b in system if b.text.strip())
        return self._message_overhead("system") + self.text(joined)

    def message(self, message: Message) -> int:
        content = message.content
        if isinstance(content, str):
            return self._message_overhead(message.role) + self.text(content)
        total = 0
        own = False  # whether anything stays in a message of this role, after tool results split off
        for block in content:
            if isinstance(block, ToolResultBlock):
                total += self._message_overhead("tool") + self.tool_result(block)
            elif isinstance(block, MidConversationSystemBlock):
                total += self._message_overhead("system") + self._system_block(block)
            else:
                own = True
                total += self.block(block)
        if own or not content:
            total += self._message_overhead(message.role)
        return total

    def _system_block(self, block: MidConversationSystemBlock) -> int:
        if isinstance(block.content, str):
            return self.text(block.content)
        return sum(self.text(b.text) for b in block.content)

    def tool_result(self, block: ToolResultBlock) -> int:
        content = block.value  # the text decoded from the raw JSON only here, when the count is not cached
        if content is None:
            return 0
        if isinstance(content, str):
            return self.text(content)
        return sum(self.block(b) for b in content)

    def block(self, block: ContentBlock) -> int:
        if isinstance(block, TextBlock):
            return self.text(block.text)
        if isinstance(block, ImageBlock):
            return self.image(block)
        if isinstance(block, DocumentBlock):
            return self.document(block)
        if isinstance(block, SearchResultBlock):
            return (
                self.text(block.source)
                + self.text(block.title)
                + sum(self.text(b.text) for b in block.content)
            )
        if isinstance(block, ToolReferenceBlock):
            return self.text(block.tool_name)
        if isinstance(block, ToolUseBlock | ServerToolUseBlock | MCPToolUseBlock):
            return TOOL_CALL_OVERHEAD + self.text(block.name) + self.text(_json_text(block.input))
        if isinstance(block, ToolResultBlock):
            return self.tool_result(block)
        if isinstance(block, ThinkingBlock):
            return self.text(block.thinking)
        if isinstance(block, RedactedThinkingBlock):
            # Encrypted: its plain size is unknown. Estimate a token per 4 bytes of decoded payload.
            return len(block.data) * 3 // 16
        if isinstance(block, _SERVER_RESULTS):
            return self.text(block.tool_use_id) + self.text(_json_text(block.content))
        if isinstance(block, ContainerUploadBlock):
            return TOOL_CALL_OVERHEAD + self.text(block.file_id)
        if isinstance(block, MidConversationSystemBlock):
            return self._system_block(block)
        assert_never(block)

    def image(self, block: ImageBlock) -> int:
        source = block.source
        if isinstance(source, Base64ImageSource):
            return media.base64_image_tokens(source.base64)
        if isinstance(source, URLImageSource | FileSource):
            return media.IMAGE_FALLBACK_TOKENS
        assert_never(source)

    def document(self, block: DocumentBlock) -> int:
        total = self.text(block.title) + self.text(block.context)
        source = block.source
        if isinstance(source, Base64PDFSource):
            return total + media.base64_pdf_tokens(source.base64)
        if isinstance(source, PlainTextSource):
            return total + self.text(source.data)
        if isinstance(source, URLPDFSource | FileSource):
            return total + media.UNKNOWN_DOCUMENT_TOKENS
        if isinstance(source, ContentSource):
            if isinstance(source.content, str):
                return total + self.text(source.content)
            return total + sum(self.block(b) for b in source.content)
        assert_never(source)

    def tools(self, tools: list[Tool]) -> int:
        total = 0
        for tool in tools:
            total += TOOL_DEF_OVERHEAD
            if tool.type not in (None, "custom"):
                total += self.text(tool.name) + anthropic_tool_tokens(tool.type)
                continue
            total += self.text(tool_definition_json(tool).decode("utf-8", "replace"))
        return total

    def tool_choice(self, choice: ToolChoice | None) -> int:
        if isinstance(choice, ToolChoiceTool):
            return TOOL_CALL_OVERHEAD + self.text(choice.name)
        return 0


__all__ = ["Family", "clear_cache", "count_request_tokens", "count_text_tokens"]
