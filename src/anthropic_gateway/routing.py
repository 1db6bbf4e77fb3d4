"""The one place that resolves a client's model name to a backend and an upstream model id.

Rules: a name containing '/' passes through unchanged (OpenRouter ids); a ``claude-*`` name maps by
family (opus / sonnet / haiku, matched as substrings so names Claude Code invents later still map;
any other claude name maps to the sonnet tier); anything else passes through too, so local backends'
plain names (``llama3``) work. The client's name is what the response echoes.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from anthropic_gateway.backends import KINDS, BackendKind
from anthropic_gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    base_url: str
    chat_url: str
    key: SecretStr | None
    kind: BackendKind
    system_in_place: bool


@dataclass(frozen=True, slots=True)
class Route:
    client_model: str
    upstream_model: str
    backend: Backend

    @property
    def target_is_claude(self) -> bool:
        m = self.upstream_model.lower()
        return m.startswith("anthropic/") or "claude" in m


class Router:
    def __init__(self, settings: Settings) -> None:
        self.default = Backend(
            name="default",
            base_url=settings.upstream_url,
            chat_url=settings.upstream_url + "/chat/completions",
            key=settings.upstream_key,
            kind=KINDS[settings.resolved_backend_kind()],
            system_in_place=settings.system_messages == "keep",
        )
        self.tiers = {
            "opus": settings.opus_model,
            "sonnet": settings.sonnet_model,
            "haiku": settings.haiku_model,
        }
        self._cache: dict[str, Route] = {}

    def resolve(self, model: str) -> Route:
        route = self._cache.get(model)
        if route is None:
            route = Route(model, self._upstream_model(model), self.default)
            if len(self._cache) < 4096:  # bounded: clients choose these strings
                self._cache[model] = route
        return route

    def _upstream_model(self, model: str) -> str:
        if "/" in model:
            return model
        lowered = model.lower()
        if lowered.startswith("claude"):
            for family, target in self.tiers.items():
                if family in lowered:
                    return target
            return self.tiers["sonnet"]
        return model
