"""Which tokenizer and which chat-format overheads apply to an upstream model id.

Overheads are those of the chat format the model is served with, as documented by its vendor:

- every message: ``MESSAGE_OVERHEAD`` (3) + the tokens of its role name - OpenAI's cookbook rule for
  ``<|start|>{role}<|message|>...<|end|>``; the system prompt is one message, every tool result
  its own ``tool`` message, as the gateway sends them;
- every request: ``REPLY_PRIMING`` (3) for ``<|start|>assistant<|message|>``;
- every tool call in history: ``TOOL_CALL_OVERHEAD`` (3) + name + arguments JSON;
- every tool definition: ``TOOL_DEF_OVERHEAD`` (7, the cookbook's ``func_init``) + the tokens of the
  compact JSON object ``{"name":...,"description":...,"parameters":<input_schema as sent>}`` - the
  form in which Claude's tool prompt lists tools (JSON-escaped description included); OpenAI renders
  tools more tersely, so for GPT models this errs high, the safe side for context accounting;
- once when tools are present: ``tools_preamble`` - OpenAI models: 12 (the cookbook's ``func_end``);
  Claude models: Anthropic's documented tool-use system prompt, 346 tokens with ``tool_choice`` auto or
  none, 313 with any or tool (Claude 4.x / Sonnet 3.7 rows of the tool-use pricing table);
- Anthropic-defined client tools (bash, text editor, computer, memory) carry no schema in the
  request; they count Anthropic's documented extra input tokens for each (``ANTHROPIC_TOOL_TOKENS``).

Claude's tokenizer (Claude 3 and later) is not published; ``o200k_base`` is the closest offline
vocabulary and is used for Claude, for OpenAI's 4o/4.1/4.5/5/o-series, GPT-OSS and every unknown
model. ``cl100k_base`` is exact for GPT-4 / GPT-3.5 and the ada-002 / 3 embedding models.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

MESSAGE_OVERHEAD = 3
REPLY_PRIMING = 3
TOOL_CALL_OVERHEAD = 3
TOOL_DEF_OVERHEAD = 7
OPENAI_TOOLS_PREAMBLE = 12
CLAUDE_TOOLS_PREAMBLE_AUTO = 346
CLAUDE_TOOLS_PREAMBLE_FORCED = 313
# Input tokens Anthropic documents for its schema-less client tools, by type prefix.
ANTHROPIC_TOOL_TOKENS: dict[str, int] = {
    "bash_": 245,
    "text_editor_": 700,
    "computer_": 735,
}
ANTHROPIC_TOOL_DEFAULT_TOKENS = 300


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    encoding: str
    claude: bool

    def tools_preamble(self, forced: bool) -> int:
        if not self.claude:
            return OPENAI_TOOLS_PREAMBLE
        return CLAUDE_TOOLS_PREAMBLE_FORCED if forced else CLAUDE_TOOLS_PREAMBLE_AUTO


CLAUDE = Family("claude", "o200k_base", claude=True)
OPENAI_O200K = Family("openai-o200k", "o200k_base", claude=False)
OPENAI_CL100K = Family("openai-cl100k", "cl100k_base", claude=False)
DEFAULT = Family("default", "o200k_base", claude=False)

_CL100K_RE = re.compile(r"^(gpt-4(?![o.\d])|gpt-4-|gpt-3\.5|gpt-35|text-embedding-(ada-002|3))")
_O200K_RE = re.compile(r"^(gpt-4o|gpt-4\.\d|gpt-[5-9]|chatgpt-|o\d(\b|-)|gpt-oss|codex)")


@functools.lru_cache(maxsize=1024)  # called per request with a handful of distinct model ids
def family_for_model(model: str) -> Family:
    """``model`` is the upstream id (``anthropic/claude-sonnet-4.5``, ``openai/gpt-4o``, ``llama3``)."""
    lowered = model.lower()
    name = lowered.rsplit("/", 1)[-1]
    if "claude" in name or lowered.startswith("anthropic/"):
        return CLAUDE
    if _O200K_RE.match(name):
        return OPENAI_O200K
    if _CL100K_RE.match(name):
        return OPENAI_CL100K
    return DEFAULT


def anthropic_tool_tokens(tool_type: str) -> int:
    for prefix, tokens in ANTHROPIC_TOOL_TOKENS.items():
        if tool_type.startswith(prefix):
            return tokens
    return ANTHROPIC_TOOL_DEFAULT_TOKENS
