"""Anthropic messages → OpenAI chat messages (pure): roles, content blocks, tool results, reasoning.

The leading system message collects `system` (without Claude Code's attribution block) and, by
default, the mid-conversation system messages that come before the first assistant turn; later ones
(per-turn text such as Claude Code's `<total_tokens>`) stay in the conversation as user text, so the
leading system prompt, the start of every cached prefix, is the same on every turn. A system message's
`cache_control` stays on the conversation: on the block before it.
Tool results become `tool` messages directly after the assistant turn, in the order of its tool
calls; attachments inside results move to a following user message; orphans on either side are
repaired rather than forwarded dangling (most upstreams 400 on them).
"""

from __future__ import annotations

import logging
from typing import Any, assert_never

import msgspec

from anthropic_gateway.backends import prompt_cache_style
from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.routing import Route
from anthropic_gateway.schemas import (
    Base64ImageSource,
    Base64PDFSource,
    BashCodeExecutionToolResultBlock,
    CodeExecutionToolResultBlock,
    ContainerUploadBlock,
    ContentBlock,
    ContentSource,
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
    TextBlock,
    TextEditorCodeExecutionToolResultBlock,
    ThinkingBlock,
    ToolReferenceBlock,
    ToolResultBlock,
    ToolSearchToolResultBlock,
    ToolUseBlock,
    URLImageSource,
    URLPDFSource,
    WebFetchToolResultBlock,
    WebSearchToolResultBlock,
)
from anthropic_gateway.translate.common import (
    CLAUDE_FORMAT,
    ENVELOPE_PREFIX,
    open_envelope,
    upstream_tool_id,
    upstream_tool_name,
)
from anthropic_gateway.translate.context import RequestContext
from anthropic_gateway.translate.prompt_cache import Marks, system_without_attribution
from anthropic_gateway.websearch.blocks import replay_text

log = logging.getLogger(__name__)

_encode_json = msgspec.json.Encoder().encode
_decode_str = msgspec.json.Decoder(str).decode


def json_text(value: Any) -> str:
    """A client's JSON value as JSON text: msgspec, because it keeps integers past 64 bits (valid
    JSON, which a client may send in a tool's input) where orjson refuses them."""
    return _encode_json(value).decode()

Part = dict[str, Any]
OAIMessage = dict[str, Any]

MISSING_RESULT = "[no result: the tool call was interrupted before it returned]"
EMPTY_RESULT = "[empty result]"


# The leading system message's text, joined from the same texts on every turn: the same str each
# time, so its UTF-8 (filled by the upstream body's encode: 6 KB of non-ASCII text in Claude Code's
# prompt, ~140k instructions) is made once. Keyed by the texts themselves (equal, not similar);
# bounded in entries and in length. A memo of a pure function: translation stays pure.
_JOINED: dict[tuple[str, ...], str] = {}
_JOINED_ENTRIES = 8
_JOINED_LONGEST = 32 << 10


def _joined(texts: tuple[str, ...]) -> str:
    if len(texts) == 1:
        return texts[0]
    text = _JOINED.get(texts)
    if text is None:
        text = "\n\n".join(texts)
        if len(text) <= _JOINED_LONGEST:
            if len(_JOINED) >= _JOINED_ENTRIES:
                _JOINED.clear()
            _JOINED[texts] = text
    return text


class MessageConverter:
    def __init__(self, route: Route, ctx: RequestContext) -> None:
        kind = route.backend.kind
        self.ctx = ctx
        configured = route.config.prompt_cache if route.config is not None else "auto"
        self.marks = Marks(prompt_cache_style(kind, route.upstream_model, configured))
        self.id_max = kind.tool_id_max_len
        self.history_field = kind.reasoning_history
        self.merge = kind.merge_same_role
        self.system_in_place = route.backend.system_in_place
        self.claude = route.target_is_claude
        # System messages kept in the conversation that arrive while tool calls await their results
        # (with their cache_control): they follow the tool messages, which must come directly after
        # the assistant turn that made the calls.
        self.held_system: list[tuple[OAIMessage, Any]] = []
        self.seen_assistant = False

    def tool_name(self, name: str) -> str:
        mapped = upstream_tool_name(name)
        if mapped != name:
            self.ctx.tool_names[mapped] = name
        return mapped

    def tool_id(self, tool_id: str) -> str:
        return upstream_tool_id(tool_id, self.id_max)

    def text_part(self, text: str, cache_control: Any) -> Part:
        part: Part = {"type": "text", "text": text}
        self.marks.put(part, cache_control)
        return part

    # The leading system message collects `system` and, by default, the opening's system messages:
    # many local chat templates reject a system message anywhere but first.
    def messages(self, req: MessagesRequest) -> list[OAIMessage]:
        system_parts: list[Part] = []
        system = system_without_attribution(req.system)
        if isinstance(system, str):
            if system:
                system_parts.append({"type": "text", "text": system})
        elif system:
            system_parts.extend(self.text_part(b.text, b.cache_control) for b in system if b.text.strip())
        out: list[OAIMessage] = []
        pending: list[str] = []  # tool_use ids of the last assistant turn still awaiting results
        for i, msg in enumerate(req.messages):
            if msg.role == "system":
                mark = _last_cache_control(msg.content)
                self._system_message(_system_text(msg.content), mark, system_parts, out, hold=bool(pending))
                continue
            if msg.role == "assistant":
                self._answer_pending(pending, out)
                pending = self._assistant(msg, out)
                self.seen_assistant = True
            elif msg.role == "user":
                pending = self._user(msg, i, pending, system_parts, out)
            else:
                assert_never(msg.role)
        if pending and req.messages[-1].role != "assistant":
            self._answer_pending(pending, out)
        self._release_system(out)
        if system_parts:
            out.insert(0, {"role": "system", "content": self._system_content(system_parts)})
        return out

    def _system_content(self, parts: list[Part]) -> str | list[Part]:
        if any("cache_control" in p for p in parts):
            return parts
        return _joined(tuple(p["text"] for p in parts))

    def _system_message(
        self, text: str, mark: Any, system_parts: list[Part], out: list[OAIMessage], *, hold: bool
    ) -> None:
        """Hoisted into the leading system message while still in the opening (before the first
        assistant turn); later, kept in place: as a system message (`system_messages = "keep"`) or
        as user text. Its breakpoint goes on the block before it, where the cached prefix ends."""
        if not text.strip():
            return
        if not self.system_in_place and not self.seen_assistant:
            if not out or not self.marks.mark_last(out[-1], mark):
                system_parts.append(self.text_part(text, mark))  # nothing before it: marks the system
            else:
                system_parts.append({"type": "text", "text": text})
            return
        message = {"role": "system" if self.system_in_place else "user", "content": text}
        if hold:
            self.held_system.append((message, mark))
        else:
            self._place(message, mark, out)

    def _place(self, message: OAIMessage, mark: Any, out: list[OAIMessage]) -> None:
        if out:
            self.marks.mark_last(out[-1], mark)
        if message["role"] == "user":
            self._append_user(message["content"], out)
        else:
            out.append(message)

    def _release_system(self, out: list[OAIMessage]) -> None:
        if not self.held_system:
            return
        for message, mark in self.held_system:
            self._place(message, mark, out)
        self.held_system.clear()

    def _answer_pending(self, pending: list[str], out: list[OAIMessage]) -> None:
        if not pending and not self.held_system:
            return
        for tid in pending:
            out.append({"role": "tool", "tool_call_id": tid, "content": MISSING_RESULT})
        pending.clear()
        self._release_system(out)

    # -- assistant

    def _assistant(self, msg: Message, out: list[OAIMessage]) -> list[str]:
        if isinstance(msg.content, str):
            if msg.content.strip():
                out.append({"role": "assistant", "content": msg.content})
            return []
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        reasoning: _Reasoning | None = None  # made for the turns that have some (one object less per turn)
        for block in msg.content:
            if isinstance(block, TextBlock):
                if block.text.strip():
                    texts.append(block.text)
            elif isinstance(block, ToolUseBlock):
                calls.append({
                    "id": self.tool_id(block.id),
                    "type": "function",
                    "function": {"name": self.tool_name(block.name), "arguments": json_text(block.input)},
                })  # fmt: skip
            elif isinstance(block, ThinkingBlock):
                reasoning = reasoning or _Reasoning()
                reasoning.add_thinking(block, self.claude)
            elif isinstance(block, RedactedThinkingBlock):
                if self.claude:
                    reasoning = reasoning or _Reasoning()
                    reasoning.details.append(
                        {"type": "reasoning.encrypted", "data": block.data, "format": CLAUDE_FORMAT}
                    )
            else:
                text = _history_text(block)
                if text:
                    texts.append(text + "\n")  # its own line: the next block's text follows directly
        message: OAIMessage = {"role": "assistant", "content": "".join(texts) if texts else None}
        if calls:
            message["tool_calls"] = calls
        if reasoning is not None:
            reasoning.apply(message, self.history_field)
        if message["content"] is None and not calls:
            return []  # nothing the upstream could take ("assistant content must contain a part")
        out.append(message)
        return [c["id"] for c in calls]

    # -- user

    def _user(
        self, msg: Message, index: int, pending: list[str], system_parts: list[Part], out: list[OAIMessage]
    ) -> list[str]:
        if isinstance(msg.content, str):
            self._answer_pending(pending, out)
            if msg.content.strip():
                self._append_user(msg.content, out)
            return []
        results: dict[str, ToolResultBlock] = {}
        parts: list[Part] = []
        for j, block in enumerate(msg.content):
            if isinstance(block, ToolResultBlock):
                tid = self.tool_id(block.tool_use_id)
                if tid in pending and tid not in results:
                    results[tid] = block
                else:  # its tool_use is not in the previous assistant turn: keep the content as text
                    text, extra = self._result_content(block)
                    text = _as_str(text)
                    parts.append({"type": "text", "text": f"[result of tool call {block.tool_use_id}]\n{text}"})
                    parts.extend(extra)
            elif isinstance(block, MidConversationSystemBlock):
                mark = block.cache_control or _last_cache_control(block.content)
                self._system_message(_system_text(block.content), mark, system_parts, out, hold=bool(pending))
            else:
                parts.extend(self._user_parts(block, f"messages.{index}.content.{j}"))
        follow_up: list[Part] = []
        for tid in pending:
            result = results.get(tid)
            if result is None:
                out.append({"role": "tool", "tool_call_id": tid, "content": MISSING_RESULT})
                continue
            text, extra = self._result_content(result)
            tool_msg: OAIMessage = {"role": "tool", "tool_call_id": tid, "content": text}
            self.marks.put(tool_msg, result.cache_control)
            out.append(tool_msg)
            if extra:
                follow_up.append({"type": "text", "text": f"Attachments returned by tool call {result.tool_use_id}:"})
                follow_up.extend(extra)
        self._release_system(out)
        parts = follow_up + parts
        if parts:
            self._append_user(parts, out)
        return []

    def _append_user(self, content: str | list[Part], out: list[OAIMessage]) -> None:
        if isinstance(content, list) and len(content) == 1 and content[0]["type"] == "text" and len(content[0]) == 2:
            content = content[0]["text"]
        if self.merge and out and out[-1]["role"] == "user":
            prev = out[-1]["content"]
            if isinstance(prev, str) and isinstance(content, str):
                out[-1]["content"] = prev + "\n\n" + content
            else:
                out[-1]["content"] = _as_parts(prev) + _as_parts(content)
            return
        out.append({"role": "user", "content": content})

    def _user_parts(self, block: ContentBlock, path: str) -> list[Part]:
        if isinstance(block, TextBlock):
            return [self.text_part(block.text, block.cache_control)] if block.text.strip() else []
        if isinstance(block, ImageBlock):
            return [self._image(block, path)]
        if isinstance(block, DocumentBlock):
            return self._document(block, path)
        if isinstance(block, SearchResultBlock):
            return [self.text_part(_search_result_text(block), block.cache_control)]
        if isinstance(block, ToolReferenceBlock):
            return [{"type": "text", "text": block.tool_name}]
        text = _history_text(block)
        return [{"type": "text", "text": text}] if text else []

    def _image(self, block: ImageBlock, path: str) -> Part:
        src = block.source
        url: str | msgspec.Raw
        if isinstance(src, Base64ImageSource):
            url = _data_url(src.media_type, src.data)
        elif isinstance(src, URLImageSource):
            url = src.url
        elif isinstance(src, FileSource):
            raise InvalidRequestError(f"{path}.source: file sources need Anthropic's Files API; send the image as base64 or url")
        else:
            assert_never(src)
        part: Part = {"type": "image_url", "image_url": {"url": url}}
        self.marks.put(part, block.cache_control)
        return part

    def _document(self, block: DocumentBlock, path: str) -> list[Part]:
        src = block.source
        header = "\n".join(x for x in (block.title, block.context) if x)
        if isinstance(src, Base64PDFSource | URLPDFSource):
            data = _data_url("application/pdf", src.data) if isinstance(src, Base64PDFSource) else src.url
            part: Part = {"type": "file", "file": {"filename": block.title or "document.pdf", "file_data": data}}
            self.marks.put(part, block.cache_control)
            return [part]
        if isinstance(src, PlainTextSource):
            return [self.text_part(f"{header}\n\n{src.data}" if header else src.data, block.cache_control)]
        if isinstance(src, ContentSource):
            if isinstance(src.content, str):
                return [self.text_part(src.content, block.cache_control)]
            parts: list[Part] = []
            for k, inner in enumerate(src.content):
                parts.extend(self._user_parts(inner, f"{path}.source.content.{k}"))
            return parts
        if isinstance(src, FileSource):
            raise InvalidRequestError(f"{path}.source: file sources need Anthropic's Files API; send the document as base64, text or url")
        assert_never(src)

    def _result_content(self, block: ToolResultBlock) -> tuple[str | msgspec.Raw, list[Part]]:
        """tool_result → (text for the tool message, attachments moved to a following user message).
        A string result is the client's JSON literal, unless it needs changing (empty, an error)."""
        raw = block.text_raw
        if raw is not None and not block.is_error and len(raw) > 2:
            return raw, []  # never decoded: the same JSON string reaches the upstream
        texts: list[str] = []
        attachments: list[Part] = []
        content = block.value
        if isinstance(content, str):
            texts.append(content)
        elif content:
            for inner in content:
                if isinstance(inner, TextBlock):
                    texts.append(inner.text)
                elif isinstance(inner, SearchResultBlock):
                    texts.append(_search_result_text(inner))
                elif isinstance(inner, ToolReferenceBlock):
                    texts.append(inner.tool_name)
                elif isinstance(inner, ImageBlock):
                    attachments.append(self._image(inner, "tool_result.content"))
                elif isinstance(inner, DocumentBlock):
                    for part in self._document(inner, "tool_result.content"):
                        (texts.append(part["text"]) if part["type"] == "text" else attachments.append(part))
                else:
                    assert_never(inner)
        text = "\n".join(t for t in texts if t) or ("" if attachments else EMPTY_RESULT)
        if attachments:
            note = f"[{len(attachments)} attachment(s) follow in the next message]"
            text = f"{text}\n{note}" if text else note
        if block.is_error:
            text = "Error: " + text
        return text, attachments


class _Reasoning:
    """Earlier reasoning of one assistant turn, restored for the upstream that produced it."""

    def __init__(self) -> None:
        self.details: list[dict[str, Any]] = []
        self.text: list[str] = []

    def add_thinking(self, block: ThinkingBlock, claude: bool) -> None:
        sig = block.signature
        ours = sig.startswith(ENVELOPE_PREFIX)
        payload = open_envelope(sig) if ours else None
        if claude:
            if payload is not None and isinstance(payload.get("s"), str) and isinstance(payload.get("x"), str):
                sig, text, ours = payload["s"], payload["x"], False  # its text was omitted on the way out
            else:
                text = block.thinking
            if sig and not ours:  # a genuine Claude signature: replayed unchanged
                self.details.append({
                    "type": "reasoning.text", "text": text, "signature": sig, "format": CLAUDE_FORMAT,
                })  # fmt: skip
            return  # our other envelopes (or unsigned text) would fail Claude's signature check
        if payload is not None and isinstance(payload.get("d"), list):
            self.details.extend(payload["d"])
        if block.thinking:
            self.text.append(block.thinking)

    def apply(self, message: OAIMessage, history_field: str | None) -> None:
        if history_field is None:
            return
        for i, d in enumerate(self.details):
            d.setdefault("index", i)
        if history_field == "reasoning_details":
            if self.details:
                message["reasoning_details"] = self.details
            elif self.text:
                message["reasoning"] = "".join(self.text)
        elif self.text:
            message[history_field] = "".join(self.text)


def _data_url(media_type: str, data: msgspec.Raw) -> msgspec.Raw:
    """`data:` URL as raw JSON, built with one copy of the base64 (see schemas._base64_raw)."""
    return msgspec.Raw(b"".join((b'"data:', media_type.encode(), b";base64,", memoryview(data)[1:])))


def _as_str(text: str | msgspec.Raw) -> str:
    return text if isinstance(text, str) else _decode_str(text)


def _as_parts(content: str | list[Part]) -> list[Part]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _last_cache_control(content: str | list[ContentBlock] | list[TextBlock]) -> Any:
    """A system message's breakpoint: the one on its last marked block."""
    if isinstance(content, str):
        return None
    marks = [b.cache_control for b in content if isinstance(b, TextBlock) and b.cache_control is not None]
    return marks[-1] if marks else None


def _system_text(content: str | list[ContentBlock] | list[TextBlock]) -> str:
    if isinstance(content, str):
        return content
    return "\n\n".join(b.text for b in content if isinstance(b, TextBlock) and b.text.strip())


def _search_result_text(block: SearchResultBlock) -> str:
    body = "\n".join(b.text for b in block.content)
    return f"[{block.source}] {block.title}\n{body}"


def _history_text(block: ContentBlock) -> str:
    """Blocks an OpenAI-compatible upstream has no place for, rendered as text so the model keeps
    the context (server-tool calls and results, MCP calls); empty for blocks with nothing to say."""
    if isinstance(block, ServerToolUseBlock | MCPToolUseBlock):
        return f"[{block.name} called with {json_text(block.input)}]"
    if isinstance(block, WebSearchToolResultBlock):
        return replay_text(block.content)
    if isinstance(
        block,
        WebFetchToolResultBlock | CodeExecutionToolResultBlock | BashCodeExecutionToolResultBlock
        | TextEditorCodeExecutionToolResultBlock | ToolSearchToolResultBlock | MCPToolResultBlock,
    ):
        return f"[{block.__struct_config__.tag} for {block.tool_use_id}]\n{_plain(block.content)}"
    if isinstance(block, ContainerUploadBlock):
        return f"[file {block.file_id} uploaded to the code-execution container]"
    return ""


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [str(v["text"]) for v in value if isinstance(v, dict) and isinstance(v.get("text"), str)]
        if texts:
            return "\n".join(texts)
    return json_text(value)
