"""Message Batches tests: the real gateway process, the scripted upstream, the official SDK.

The scripted upstream answers each batch request by what its last user message says:
``ok:TEXT`` → a completion saying TEXT; ``fail`` → an upstream 400; ``slow:SECONDS`` → a completion
after that many seconds; ``limit`` → a 429 with Retry-After: 1 the first time, then a completion.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import anthropic
from aiohttp import web

from fake_upstream import (
    FakeUpstream,
    JsonReply,
    RecordedRequest,
    Reply,
    aggregate,
    error_body,
    finish_chunk,
    text_chunk,
    usage_chunk,
)

MODEL = "claude-sonnet-5"  # the sonnet tier: test/sonnet


@dataclass(frozen=True)
class SlowJson(JsonReply):
    delay: float = 0.0

    async def serve(self, request: web.Request, fake: FakeUpstream) -> web.StreamResponse:
        await asyncio.sleep(self.delay)
        return await super().serve(request, fake)


def said(text: str) -> dict[str, Any]:
    return aggregate([text_chunk(text), finish_chunk("stop"), usage_chunk(7, 3)])


def script(upstream: FakeUpstream) -> None:
    limited: set[str] = set()

    def reply(req: RecordedRequest) -> JsonReply:
        text = req.body["messages"][-1]["content"]
        if text == "fail":
            return Reply.json(error_body(400, "upstream refuses this one"), status=400)
        if text.startswith("slow:"):
            return SlowJson(said("slow done"), delay=float(text.split(":")[1]))
        if text.startswith("limit") and text not in limited:
            limited.add(text)
            return Reply.json(error_body(429, "slow down"), status=429, headers={"Retry-After": "1"})
        return Reply.json(said(text.removeprefix("ok:")))

    upstream.always(Reply.dynamic(reply))


def item(custom_id: str, text: str, **params: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "params": {"model": MODEL, "max_tokens": 50,
                                               "messages": [{"role": "user", "content": text}], **params}}


def wait_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not end within {timeout}s: {batch}")


def results(client: anthropic.Anthropic, batch_id: str) -> dict[str, Any]:
    return {r.custom_id: r.result for r in client.messages.batches.results(batch_id)}
