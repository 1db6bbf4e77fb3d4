"""Behaviour that only applies when the backend kind is ``openrouter``: genuine Claude signatures,
envelopes kept away from Claude targets, ``cache_control`` kept on parts, PDF ``file`` parts."""

from __future__ import annotations

import json

import anthropic

from e2e import text_of
from fake_upstream import FakeUpstream, Reply, StreamItem, finish_chunk, reasoning_chunk, text_chunk

CLAUDE_TARGET = "anthropic/claude-sonnet-4.5"
OTHER_TARGET = "qwen/qwen3-235b-a22b"
CLAUDE_FMT = "anthropic-claude-v1"
PDF_B64 = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK"

CLAUDE_THINKING: list[StreamItem] = [
    reasoning_chunk(
        "Let me think.",
        [{"type": "reasoning.text", "text": "Let me think.", "format": CLAUDE_FMT, "index": 0}],
    ),
    reasoning_chunk(
        None,
        [{"type": "reasoning.text", "signature": "EqQBgenuineClaudeSig", "format": CLAUDE_FMT, "index": 0}],
    ),
    text_chunk("Answer."),
    finish_chunk("stop"),
]


def test_genuine_claude_signature_round_trips(
    openrouter_client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.stream(CLAUDE_THINKING))
    with openrouter_client.messages.stream(
        model=CLAUDE_TARGET, max_tokens=100, messages=[{"role": "user", "content": "Q?"}]
    ) as stream:
        msg = stream.get_final_message()
    assert [b.type for b in msg.content] == ["thinking", "text"]
    thinking = msg.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking == "Let me think."
    assert thinking.signature == "EqQBgenuineClaudeSig"  # returned unchanged

    upstream.expect(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    openrouter_client.messages.create(
        model=CLAUDE_TARGET,
        max_tokens=100,
        messages=[
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": msg.content},
            {"role": "user", "content": "More?"},
        ],
    )
    assistant = upstream.last_body["messages"][1]
    assert assistant["role"] == "assistant"
    assert text_of(assistant["content"]) == "Answer."
    assert assistant["reasoning_details"] == [
        {
            "type": "reasoning.text",
            "text": "Let me think.",
            "signature": "EqQBgenuineClaudeSig",
            "format": CLAUDE_FMT,
            "index": 0,
        }
    ]


def test_envelope_thinking_is_never_sent_to_a_claude_target(
    openrouter_client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(
        Reply.auto([reasoning_chunk("Plain reasoning."), text_chunk("Hi."), finish_chunk("stop")])
    )
    msg = openrouter_client.messages.create(
        model=OTHER_TARGET, max_tokens=100, messages=[{"role": "user", "content": "Q?"}]
    )
    thinking = msg.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "Plain reasoning."
    assert thinking.signature.strip() != ""

    upstream.expect(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    openrouter_client.messages.create(
        model=CLAUDE_TARGET,
        max_tokens=100,
        messages=[
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": msg.content},
            {"role": "user", "content": "More?"},
        ],
    )
    body = upstream.last_body
    assert body["model"] == CLAUDE_TARGET
    assistant = body["messages"][1]
    assert text_of(assistant["content"]) == "Hi."
    assert thinking.signature not in json.dumps(body)
    assert "reasoning_details" not in assistant
    assert "Plain reasoning." not in json.dumps(body)


def test_cache_control_is_kept_on_parts(
    openrouter_client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    openrouter_client.messages.create(
        model=CLAUDE_TARGET,
        max_tokens=100,
        system=[
            {"type": "text", "text": "Identity."},
            {"type": "text", "text": "Long prompt.", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Context."},
                    {"type": "text", "text": "Question?", "cache_control": {"type": "ephemeral"}},
                ],
            }
        ],
    )
    system, user = upstream.last_body["messages"]
    assert system == {
        "role": "system",
        "content": [
            {"type": "text", "text": "Identity."},
            {"type": "text", "text": "Long prompt.", "cache_control": {"type": "ephemeral"}},
        ],
    }
    assert user == {
        "role": "user",
        "content": [
            {"type": "text", "text": "Context."},
            {"type": "text", "text": "Question?", "cache_control": {"type": "ephemeral"}},
        ],
    }


def test_pdf_document_becomes_a_file_part(
    openrouter_client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.auto([text_chunk("A PDF."), finish_chunk("stop")]))
    openrouter_client.messages.create(
        model=OTHER_TARGET,
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64},
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            }
        ],
    )
    [user] = upstream.last_body["messages"]
    assert user["content"] == [
        {
            "type": "file",
            "file": {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{PDF_B64}"},
        },
        {"type": "text", "text": "Summarise."},
    ]
