"""A fake OpenRouter ``GET /models`` answer, shaped as openrouter-api-and-mapping.md §6.1 documents it."""

from __future__ import annotations

from typing import Any

SONNET = "anthropic/claude-sonnet-4.5"
DEEPSEEK = "deepseek/deepseek-chat"


def model_entry(mid: str, *, prompt: str, completion: str, context: int, max_out: int | None,
                params: list[str], inputs: list[str], cache_read: str | None = None,
                cache_write: str | None = None) -> dict[str, Any]:  # fmt: skip
    pricing = {"prompt": prompt, "completion": completion, "request": "0", "image": "0", "web_search": "0",
               "internal_reasoning": "0"}  # fmt: skip
    if cache_read is not None:
        pricing["input_cache_read"] = cache_read
    if cache_write is not None:
        pricing["input_cache_write"] = cache_write
    return {
        "id": mid, "canonical_slug": mid + "-20250929", "name": mid.split("/")[1], "created": 1759161676,
        "description": "A model.", "context_length": context,
        "architecture": {"modality": "+".join(inputs) + "->text", "input_modalities": inputs,
                         "output_modalities": ["text"], "tokenizer": "Other", "instruct_type": None},
        "pricing": pricing,
        "top_provider": {"context_length": context, "max_completion_tokens": max_out, "is_moderated": False},
        "per_request_limits": None, "supported_parameters": params, "default_parameters": {},
    }  # fmt: skip


def models_answer() -> dict[str, Any]:
    data = [
        model_entry(SONNET, prompt="0.000003", completion="0.000015", context=1_000_000, max_out=64_000,
                    params=["include_reasoning", "max_tokens", "reasoning", "stop", "temperature", "tool_choice",
                            "tools", "top_k", "top_p"],
                    inputs=["text", "image", "file"], cache_read="0.0000003", cache_write="0.00000375"),
        model_entry(DEEPSEEK, prompt="0.0000003", completion="0.00000085", context=32_768, max_out=8_192,
                    params=["max_tokens", "temperature", "tool_choice", "tools"], inputs=["text"]),
        {"id": "openrouter/auto", "name": "Auto Router", "context_length": 2_000_000,
         "pricing": {"prompt": "-1", "completion": "-1"}, "architecture": {"input_modalities": ["text", "image"]}},
    ]  # fmt: skip
    return {"data": data, "total_count": len(data), "links": {"next": None}}
