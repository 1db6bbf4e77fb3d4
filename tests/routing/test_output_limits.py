"""max_tokens bounds (issue 16 #8): above the largest known output limit → Anthropic's 400; otherwise
clamped to the target's limit, from the configuration or from what a model catalogue feeds."""

from __future__ import annotations

import pytest

from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.output_limits import CLAUDE_MAX_OUTPUT_TOKENS, OutputLimits
from anthropic_gateway.translate.policy import prepare_request
from routing.helpers import request_of, router_of

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 100_000, "messages": [{"role": "user", "content": "hi"}]}


def test_the_ceiling_is_claudes_largest_output_unless_a_known_model_allows_more() -> None:
    assert OutputLimits().ceiling == CLAUDE_MAX_OUTPUT_TOKENS == 128_000
    assert OutputLimits([None, 8192]).ceiling == 128_000
    assert OutputLimits([262_144]).ceiling == 262_144
    limits = OutputLimits()
    limits.feed({"qwen/qwen3-coder": 262_144, "bad": 0})
    assert limits.ceiling == 262_144 and limits.of("bad") is None


@pytest.mark.parametrize("max_tokens", [128_001, 10**100])
def test_above_the_ceiling_is_anthropics_error(max_tokens: int) -> None:
    with pytest.raises(InvalidRequestError) as info:
        OutputLimits().check(max_tokens, "claude-sonnet-4-5")
    shown = str(max_tokens) if max_tokens < 10**40 else f"{str(max_tokens)[:40]}... (101 characters)"
    assert info.value.message == (
        f"max_tokens: {shown} > 128000, which is the maximum allowed number of output tokens for claude-sonnet-4-5"
    )
    OutputLimits().check(128_000, "claude-sonnet-4-5")


def test_a_fed_limit_clamps_the_target_and_replaces_a_cached_route() -> None:
    router = router_of()
    before, _ = prepare_request(request_of(BODY), router.resolve("claude-sonnet-4-5"), stream=False)
    assert before["max_tokens"] == 100_000
    router.feed_output_limits({"tier/sonnet": 64_000})
    after, _ = prepare_request(request_of(BODY), router.resolve("claude-sonnet-4-5"), stream=False)
    assert after["max_tokens"] == 64_000


def test_the_configured_limit_wins_over_a_fed_one() -> None:
    router = router_of({"small": {"model": "vendor/small", "max_output_tokens": 8192}})
    router.feed_output_limits({"vendor/small": 32_000})
    assert router.resolve("small").max_output_tokens == 8192
    assert router.output_limits.ceiling == 128_000
